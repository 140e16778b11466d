"""What every quantized neuron shares: one :class:`~quest_lightning.functional.neuron.NeuronParams`, MINT membrane
quantization on a layer's grid, the step and the scan, and optional spike-count recording. A back-end's adapter only
translates its library's configuration into these (see :mod:`quest_lightning.nn.neurons.registry`)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
from torch import Tensor, nn

from quest_lightning.functional.grid import check_quant_bits
from quest_lightning.functional.integer import IntegerNeuronProgram, integer_neuron_program
from quest_lightning.functional.neuron import MembraneQuant, NeuronParams, neuron_step
from quest_lightning.functional.quantize import alpha_grad_scale
from quest_lightning.functional.scan import neuron_scan
from quest_lightning.functional.surrogate import SpikeFn, fires_at_threshold
from quest_lightning.nn.layers import QuantLayerMixin

_FLOAT32_EXACT = 1 << 24  # every integer up to 2**24 is a float32


def spike_total(spikes: Tensor) -> Tensor:
    """The number of spikes in a 0/1 spike tensor, as a float64 scalar on its device (no host synchronisation).

    Summed in ``float32`` over chunks of at most :math:`2^{24}` elements, each converted to ``float64`` once: a sum of
    at most :math:`2^{24}` zeros and ones never leaves the integers ``float32`` holds, whatever the order of the
    additions, so the total is exact (a ``float64`` sum over the whole tensor converts every element and is tens of
    times slower on the CPU). Spikes are 0/1 by the contract of a spike function (a Heaviside step forward).
    """
    flat = spikes.detach().reshape(-1)
    total = torch.zeros((), dtype=torch.float64, device=flat.device)
    for chunk in flat.split(_FLOAT32_EXACT):
        total += chunk.sum(dtype=torch.float32)
    return total


class _Param:
    """A neuron attribute that reads one field of the neuron's ``params``; setting it replaces ``params`` with a
    validated copy (``NeuronParams`` is frozen). A field the module holds as a tensor (learnable or per neuron) is
    changed through that tensor instead."""

    def __init__(self, field: str, doc: str) -> None:
        self.field, self.__doc__ = field, doc

    def __get__(self, neuron: QuantNeuron | None, owner: type) -> Any:
        return self if neuron is None else getattr(neuron.params, self.field)

    def __set__(self, neuron: QuantNeuron, value: Any) -> None:
        if self.field in neuron._tensor_fields():
            raise AttributeError(
                f"{type(neuron).__name__}.{self.field} is held as a tensor (learnable or per neuron); change that "
                "tensor in place (for example with torch.no_grad(): neuron.<name>.fill_(value))."
            )
        neuron.params = replace(neuron._params, **{self.field: value})


class QuantNeuron(nn.Module):
    """Base class of the neuron adapters: a thin shell over :func:`~quest_lightning.functional.neuron.neuron_step`
    and :func:`~quest_lightning.functional.scan.neuron_scan`.

    The membrane is quantized on the grid of the layer given to :meth:`share_scale_with` (same :math:`\\alpha`, and
    ``mem_bits`` or the layer's bits). Without such a layer, or when that layer's quantization is disabled, the
    neuron is full precision.

    Recording (``record=True``) accumulates ``spike_count`` (all spikes), ``recorded_rows`` (time steps × samples)
    and ``neurons`` (neurons per sample), for the spike-rate meter.

    Attributes:
        params: the step's parameters; ``decay``, ``threshold``, ``reset_mode``, ``detach_reset`` and
            ``soft_reset_amount`` read (and, when set, replace) its fields. A subclass that holds a field as a tensor
            (a learnable :math:`\\beta`, say) returns it from :meth:`_tensor_fields`, and ``params`` carries the
            current tensor.
        spike_fn: the surrogate spike function.
        mem_bits: membrane bit width, or ``None`` for the layer's bits.
    """

    decay = _Param("decay", "Leak factor :math:`\\lambda` (1 for IF).")
    threshold = _Param("threshold", "Firing threshold :math:`\\theta`.")
    reset_mode = _Param("reset", "``'hard'``, ``'soft'`` or ``'none'``.")
    detach_reset = _Param("detach_reset", "Whether the gradient through the reset is stopped.")
    soft_reset_amount = _Param("soft_reset_amount", "What a soft reset subtracts (``None``: the threshold).")

    def _init_neuron(self, *, spike_fn: SpikeFn, params: NeuronParams, mem_bits: int | None = None) -> None:
        self.spike_fn = spike_fn
        self._params = params
        self.mem_bits = None if mem_bits is None else check_quant_bits(mem_bits, name="mem_bits", what="the membrane")
        self._scale_source: list[QuantLayerMixin] = []  # a list keeps the layer out of this module's children
        self.record = False
        self.spike_count: Tensor | None = None
        self.recorded_rows = 0
        self.neurons = 0

    @property
    def params(self) -> NeuronParams:
        """The step's :class:`~quest_lightning.functional.neuron.NeuronParams`, with the current value of every
        field the module holds as a tensor."""
        tensors = self._tensor_fields()
        return replace(self._params, **tensors) if tensors else self._params

    @params.setter
    def params(self, params: NeuronParams) -> None:
        if not isinstance(params, NeuronParams):
            raise TypeError(f"params must be a NeuronParams, got {type(params).__name__}.")
        self._params = params

    def _tensor_fields(self) -> dict[str, Tensor]:
        """The ``params`` fields this module holds as tensors, by field name (none in the base class)."""
        return {}

    @property
    def leaky(self) -> bool:
        """Whether the membrane decays between steps (:math:`\\lambda < 1`)."""
        return self.params.leaky

    @property
    def called_per_step(self) -> bool:
        """Whether a network calls this neuron module once per time step on ``[B, ...]`` (a SpikingJelly neuron with
        ``step_mode="s"``, snnTorch's ``Leaky``) rather than once on the whole ``[T, B, ...]`` sequence (a multi-step
        neuron: SpikingJelly's ``step_mode="m"``, a registered back-end's)."""
        return getattr(self, "step_mode", "m") == "s"

    def share_scale_with(self, layer: QuantLayerMixin) -> QuantNeuron:
        """Quantize the membrane with ``layer``'s :math:`\\alpha` and grid (MINT's shared scale). Returns ``self``.

        Raises:
            TypeError: ``layer`` is not a ``QuantConv2d`` or ``QuantLinear``.
        """
        if not isinstance(layer, QuantLayerMixin):
            raise TypeError(f"share_scale_with expects a QuantConv2d or QuantLinear, got {type(layer).__name__}.")
        self._scale_source = [layer]
        return self

    @property
    def scale_source(self) -> QuantLayerMixin | None:
        """The layer whose scale the membrane shares, if any."""
        return self._scale_source[0] if self._scale_source else None

    @property
    def membrane_bits(self) -> int | None:
        """The membrane's bit width :math:`b_u` when it is quantized (``mem_bits`` or the layer's bits), else
        ``mem_bits`` (``None`` when not set)."""
        layer = self.scale_source
        if layer is None or not layer.enabled:
            return self.mem_bits
        return self.mem_bits or layer.bits

    def membrane_quantizer(self) -> MembraneQuant | None:
        """The membrane quantizer for the current forward pass, or ``None`` when the neuron is full precision."""
        layer = self.scale_source
        if layer is None or not layer.enabled:
            return None
        bits = self.mem_bits or layer.bits
        scale = alpha_grad_scale(layer.weight.numel(), bits) if layer.use_alpha_grad_scale else None
        return MembraneQuant(layer.alpha, bits, layer.transform, scale)

    def integer_program(self) -> IntegerNeuronProgram:
        """This neuron compiled for integer-only inference with the scale it shares
        (:func:`~quest_lightning.functional.integer.integer_neuron_program`).

        Raises:
            ValueError: no enabled layer shares its scale, ``mem_bits`` differs from the layer's bits, a parameter
                is a tensor (learnable or per neuron), or the neuron is leaky or has no reset.
        """
        if self._tensor_fields():
            raise ValueError(
                f"{type(self).__name__} holds {sorted(self._tensor_fields())} as tensors (learnable or per neuron); "
                "the integer path needs plain numbers: freeze them to scalars before compiling to integers."
            )
        layer = self.scale_source
        if layer is None or not layer.enabled:
            raise ValueError(
                f"{type(self).__name__} has no quantized membrane: call share_scale_with(layer) with a quantized "
                "QuantConv2d/QuantLinear before compiling it to integers."
            )
        if self.mem_bits not in (None, layer.bits):
            raise ValueError(
                f"mem_bits={self.mem_bits} differs from the layer's bits={layer.bits}: the integer path needs the "
                "membrane and the weights on one grid; leave mem_bits=None."
            )
        return integer_neuron_program(
            float(layer.alpha.detach()),
            layer.bits,
            self.params,
            transform=layer.transform,
            fire_at_threshold=fires_at_threshold(self.spike_fn),
        )

    def step(self, x: Tensor, u: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """One functional step on ``x`` (``[B, ...]``) from state ``u``: ``(spikes, pre-reset membrane, carried
        state)``, each the shape of ``x``."""
        s, h, u = neuron_step(x, u, self.spike_fn, self.params, self.membrane_quantizer())
        if self.record:
            self._record(s, s.shape[0])
        return s, h, u

    def multi_step(self, x_seq: Tensor, return_membrane: str = "none") -> tuple[Tensor, Tensor | None, Tensor]:
        """Scan ``x_seq`` (``[T, B, ...]``) from a zero state: ``(spikes [T, B, ...], membranes or None, final
        state)``; ``return_membrane`` is ``"none"``, ``"pre"`` (:math:`H_t`) or ``"post"`` (:math:`U_t`).

        Raises:
            ValueError: ``x_seq`` has fewer than 2 dimensions.
        """
        if x_seq.dim() < 2:
            raise ValueError(f"multi-step input must be [T, B, ...], got shape {tuple(x_seq.shape)}.")
        return self._scan(x_seq, None, return_membrane)

    def _scan(self, x_seq: Tensor, u0: Tensor | None, return_membrane: str) -> tuple[Tensor, Tensor | None, Tensor]:
        quant = self.membrane_quantizer()
        s, m, u = neuron_scan(x_seq, self.spike_fn, self.params, quant, u0=u0, return_membrane=return_membrane)
        if self.record:
            self._record(s, x_seq.shape[0] * x_seq.shape[1])
        return s, m, u

    def _record(self, spikes: Tensor, rows: int) -> None:
        total = spike_total(spikes)
        self.spike_count = total if self.spike_count is None else self.spike_count + total
        self.recorded_rows += rows
        self.neurons = spikes.numel() // rows

    def reset_recording(self) -> None:
        """Forget the recorded spike counts."""
        self.spike_count = None
        self.recorded_rows = 0

    def _neuron_repr(self) -> str:
        quant = "shared-scale" if self.scale_source is not None else "off"
        return (
            f"decay={self.decay}, threshold={self.threshold}, reset={self.reset_mode!r}, "
            f"detach_reset={self.detach_reset}, membrane_quant={quant}"
        )
