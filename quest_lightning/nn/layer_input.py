"""What a synaptic layer sees: the layout of its input, what the input is, and the exact record of it.

:class:`LayerInputMixin` is the input side of :class:`~quest_lightning.nn.layers.QuantLayerMixin` (the quantized
layers inherit it); it holds no weight and no quantizer.

* **Layout.** A layer accepts single-step input (``[B, ...]``) and multi-step input with a leading time axis
  (``[T, B, ...]``). It declares which one it takes in ``step_mode`` (``"s"`` or ``"m"``), the attribute
  SpikingJelly's layer wrappers carry and its op counters read: given to the constructor it is fixed and the input is
  checked against it; left ``None`` it follows the layout of each input (:meth:`LayerInputMixin.is_multi_step`). An
  input repeated over time as a stride-0 view (direct coding) is recognised as such, so that it is computed and
  counted once.
* **Kind.** ``input_kind`` says what the input is: ``"auto"`` (decided from the record), or the declarations
  ``"spikes"`` and ``"analog"`` (:data:`INPUT_KINDS`).
* **Record.** With ``record=True`` a layer records what it sees, exactly and without a host synchronisation (see
  :meth:`LayerInputMixin.record_input`): the input summed per position over every row (``input_counts``, float64),
  the number of input elements that are neither 0 nor 1 (``nonbinary_inputs``, int64, on the device), the number of
  non-zero input elements per position (``nonzero_counts``, float64; kept apart only for a layer not declared
  ``input_kind="spikes"``, see :meth:`LayerInputMixin.nonzero_input_counts`) and, as Python ints from the shapes, the
  rows (time steps × samples), the calls and the time steps. When recording is off, nothing is stored.
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import torch
from spikingjelly.activation_based.base import StepModule
from torch import Tensor

__all__ = ["INPUT_KINDS", "InputKind", "LayerInputMixin"]

_SUM_BLOCK = 1 << 18
"""Elements per row block of :meth:`LayerInputMixin.record_input`'s float64 sums."""

InputKind = Literal["auto", "spikes", "analog"]
INPUT_KINDS: tuple[str, ...] = ("auto", "spikes", "analog")


def _is_repeated_over_time(x: Tensor, feature_dims: int) -> bool:
    """A ``[T, B, ...]`` input that is one ``[B, ...]`` tensor repeated (a stride-0 view, as direct coding makes)."""
    return x.dim() == feature_dims + 2 and x.shape[0] > 1 and x.stride(0) == 0


class LayerInputMixin(StepModule):
    """The input side of a synaptic layer: its layout (``step_mode``), its kind (``input_kind``) and its record.

    A SpikingJelly ``StepModule``, so ``functional.set_step_mode(net, mode)`` reaches it. A subclass sets
    :attr:`feature_dims` (the number of trailing feature dimensions of one sample) and calls
    :meth:`_init_recording` in its constructor.
    """

    feature_dims: ClassVar[int]
    _step_mode: str | None = None  # declared step mode; None: follow each input
    _input_step_mode: str = "s"  # the layout of the last input

    def _init_recording(self, input_kind: InputKind = "auto") -> None:
        """Recording off, the kind ``input_kind`` and empty records."""
        # Plain tensor attributes, not registered buffers: they must be neither checkpointed nor broadcast between
        # DDP ranks (each rank records its own inputs).
        self.record = False
        self.input_kind = input_kind
        self.input_counts: Tensor = torch.zeros(0, dtype=torch.float64)
        self.nonbinary_inputs: Tensor = torch.zeros((), dtype=torch.int64)
        self.nonzero_counts: Tensor = torch.zeros(0, dtype=torch.float64)
        self.recorded_rows = 0
        self.recorded_calls = 0
        self.recorded_steps = 0

    @property
    def step_mode(self) -> str:
        """``"s"`` (input ``[B, ...]``) or ``"m"`` (input ``[T, B, ...]``), as SpikingJelly's ``layer.*`` declare it:
        the declared mode, or, when none was declared, the layout of the last input."""
        return self._step_mode or self._input_step_mode

    @step_mode.setter
    def step_mode(self, value: str | None) -> None:
        if value not in ("s", "m", None):
            raise ValueError(
                f"step_mode={value!r} is unknown: use 's' (input [B, ...]), 'm' (input [T, B, ...]) or None "
                "(follow each input)."
            )
        self._step_mode = value

    def _check_step_mode(self, x: Tensor) -> None:
        """Check ``x`` against the declared step mode, or note its layout when none is declared."""
        multi = x.dim() >= self.feature_dims + 2
        if self._step_mode is None:
            mode = "m" if multi else "s"
            if mode != self._input_step_mode:
                self._input_step_mode = mode
        elif (self._step_mode == "m") != multi and self.feature_dims > 1:
            want = "[T, B, ...]" if self._step_mode == "m" else "[B, ...]"
            raise ValueError(
                f"{type(self).__name__} has step_mode={self._step_mode!r} and expects {want} input, got shape "
                f"{tuple(x.shape)}; set step_mode (or functional.set_step_mode) to match the input."
            )

    @property
    def input_kind(self) -> InputKind:
        """What the input is: ``"auto"`` (for the operation counts, decided from what was recorded, see
        :func:`~quest_lightning.nn.inspect.input_kind_of`), ``"spikes"`` or ``"analog"`` (a declaration that
        overrides the record). ``"spikes"`` also lets a quantized layer's forward product be taken in integers
        (:meth:`~quest_lightning.nn.layers.QuantLayerMixin.takes_integer_product`): declare it only where the input
        is 0/1 by construction (after a spiking neuron and max pooling, not after average pooling or dropout), since
        a quantized layer's integer product of an input that is not 0/1 is NaN."""
        return self._input_kind

    @input_kind.setter
    def input_kind(self, value: InputKind) -> None:
        if value not in INPUT_KINDS:
            raise ValueError(
                f"input_kind={value!r} is unknown: use 'auto' (analog when a recorded input element is neither 0 nor "
                "1), 'spikes' or 'analog'."
            )
        self._input_kind = value

    def is_multi_step(self, x: Tensor) -> bool:
        """Whether ``x`` is one multi-step call (``[T, B, ...]``, time-major) rather than one time step.

        The layer's ``step_mode`` decides when it has one (``"m"``: multi-step, ``"s"``: single-step, as in
        SpikingJelly); otherwise the rank does: two or more leading dimensions before the :attr:`feature_dims`
        feature dimensions (``[T, B, C, H, W]`` for a conv, ``[T, B, F]`` for a linear layer) is multi-step, and the
        first one is time. A batch-major ``[B, T, ...]`` tensor must be made time-major before the layer (for
        example ``x.transpose(0, 1)``, a view).
        """
        if self._step_mode is not None:  # declared; otherwise the step_mode property follows the input's rank
            return self._step_mode == "m"
        return x.dim() - self.feature_dims >= 2

    def record_input(self, x: Tensor) -> None:
        """Add one call's input ``x`` to the records: exact in any dtype or autocast, with no host synchronisation.

        For a call on ``x`` with leading shape ``L = x.shape[:x.dim() - feature_dims]``:

        * ``recorded_rows += prod(L)``: every vector the weight meets, time steps × samples (a Python int);
        * ``recorded_calls += 1``;
        * ``recorded_steps += L[0]`` for a multi-step call (the time axis, see :meth:`is_multi_step`), ``+= 1`` for a
          single-step call;
        * ``input_counts += x`` summed over the leading dimensions per feature position, accumulated in float64
          (the spike count per position for spike input, exact up to :math:`2^{53}`; the sum of values for analog
          input), whatever the dtype of ``x`` (a bf16 sum would round counts above 256);
        * ``nonbinary_inputs +=`` the number of elements of ``x`` that are neither 0 nor 1 (int64, on the device);
        * ``nonzero_counts +=`` the number of non-zero elements of ``x`` per feature position (float64, exact up to
          :math:`2^{53}`; what NeuroBench's ``Effective_MACs`` binarize), unless the layer is declared
          ``input_kind="spikes"``: a spike's non-zero count is its sum, so such a layer pays nothing more (see
          :meth:`nonzero_input_counts`). A spike-declared call after calls that kept ``nonzero_counts`` adds its
          sums to them, and the first call that keeps them starts from the sums of the spike-declared calls before.

        So, for one batch: ``samples = recorded_rows / recorded_steps`` and ``T = recorded_steps``, for a multi-step
        call on ``[T, B, ...]`` (``T·B`` rows, ``T`` steps) and for a single-step loop of ``T`` calls on ``[B, ...]``
        (``T·B`` rows, ``T`` steps) alike. This holds when every time step of a sample meets the weight as one row,
        as in a conv (one image per row) or a linear layer on ``[T, B, F]``; a linear layer applied to ``N`` vectors
        per sample (``[T, B, N, F]``) counts ``N`` rows per sample. An input repeated over time as a stride-0 view
        (direct coding) is counted once and multiplied by ``T``.

        The float64 sums go through row blocks of about :data:`_SUM_BLOCK` elements, each converted to float64 in
        cache (one ``sum(dtype=float64)`` over the whole input reduces several times slower on the CPU); the
        non-binary and the non-zero elements are counted with ``count_nonzero`` (a boolean ``sum`` is several times
        slower there).
        """
        x = x.detach()
        lead = x.dim() - self.feature_dims
        rows = math.prod(x.shape[:lead])
        steps = (x.shape[0] if lead >= 1 else 1) if self.is_multi_step(x) else 1
        repeats = 1
        if _is_repeated_over_time(x, self.feature_dims):
            repeats, x = x.shape[0], x[0]
            lead -= 1
        features = x.shape[lead:]
        if self.input_counts.shape != features or self.input_counts.device != x.device:
            self.input_counts = torch.zeros(features, dtype=torch.float64, device=x.device)
            self.nonbinary_inputs = torch.zeros((), dtype=torch.int64, device=x.device)
            self.nonzero_counts = torch.zeros(0, dtype=torch.float64, device=x.device)
        spikes = self.input_kind == "spikes"
        kept = self.nonzero_counts.shape == features
        if not spikes and not kept:  # the calls recorded so far were declared spikes: their sums count them
            self.nonzero_counts, kept = self.input_counts.clone(), True
        flat = x.reshape(-1, *features)
        sums = torch.zeros(features, dtype=torch.float64, device=x.device)
        nonzero = None if spikes else torch.zeros(features, dtype=torch.float64, device=x.device)
        for block in flat.split(max(1, _SUM_BLOCK // max(math.prod(features), 1))):
            sums += block.to(torch.float64).sum(0)
            if nonzero is not None:
                nonzero += torch.count_nonzero(block, dim=0)
        nonbinary = torch.count_nonzero(torch.logical_and(flat != 0, flat != 1))
        if repeats != 1:
            sums, nonbinary = sums * repeats, nonbinary * repeats
            nonzero = None if nonzero is None else nonzero * repeats
        self.input_counts += sums
        self.nonbinary_inputs += nonbinary
        if kept:
            self.nonzero_counts += sums if nonzero is None else nonzero
        self.recorded_rows += rows
        self.recorded_calls += 1
        self.recorded_steps += steps

    def nonzero_input_counts(self) -> Tensor:
        """How many recorded input elements were non-zero, per feature position (float64, ``[C, H, W]``,
        ``[C, L]`` or ``[F]``; empty before the first recorded call): ``nonzero_counts`` where the layer kept them,
        else ``input_counts`` (a layer declared ``input_kind="spikes"``, whose inputs are 0 or 1: a position's
        non-zero inputs are its spikes). No host synchronisation."""
        kept = self.nonzero_counts.shape == self.input_counts.shape
        return self.nonzero_counts if kept and self.nonzero_counts.numel() else self.input_counts

    def reset_recording(self) -> None:
        """Zero every record (``input_counts``, ``nonbinary_inputs``, ``nonzero_counts``, ``recorded_rows``,
        ``recorded_calls``, ``recorded_steps``)."""
        self.input_counts.zero_()
        self.nonbinary_inputs.zero_()
        self.nonzero_counts.zero_()
        self.recorded_rows = self.recorded_calls = self.recorded_steps = 0
