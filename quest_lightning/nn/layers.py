"""``QuantConv1d``, ``QuantConv2d`` and ``QuantLinear``: drop-in ``nn.Conv1d`` / ``nn.Conv2d`` / ``nn.Linear`` with MINT
weight quantization.

Each layer owns one learnable scale :math:`\\alpha` and keeps the integer codes of its last forward pass in
``codes`` (an ``int8`` tensor refreshed on every forward; not checkpointed, since it is derived from the weights).
With ``enabled=False`` it is an ordinary full-precision layer (still recordable, so that the
first, analog-input layer and the readout are counted in the energy accounting).

All accept single-step input (``[B, ...]``) and multi-step input with a leading time axis (``[T, B, ...]``), which is
folded into the batch for the convolution or matrix product. An input repeated over time as a stride-0 view (direct
coding) is computed once and the output expanded. Each declares which one it takes in ``step_mode`` (``"s"`` or
``"m"``), the attribute SpikingJelly's layer wrappers carry and its op counters read: given to the constructor it is
fixed and the input is checked against it; left ``None`` it follows the layout of each input.

Both share one code path (:class:`QuantLayerMixin`): the quantization options (:class:`QuantOptions`), the forward
pass and the recording; each class only says how its weight meets the input.

The scale :math:`\\alpha` is kept at or above :func:`~quest_lightning.functional.quantize.alpha_floor` (a small
fraction of the weights' largest magnitude), so it is always positive: see :meth:`QuantLayerMixin.project_alpha`.

With ``record=True`` a layer records what it sees, exactly and without a host synchronisation (see
:meth:`QuantLayerMixin.record_input`): the input summed per position over every row (``input_counts``, float64),
the number of input elements that are neither 0 nor 1 (``nonbinary_inputs``, int64, on the device), and, as
Python ints from the shapes, the rows (time steps × samples), the calls and the time steps. When recording is off,
nothing is stored.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar, Literal, TypedDict

import torch
import torch.nn.functional as F
from spikingjelly.activation_based.base import StepModule
from torch import Tensor, nn

from quest_lightning.functional.grid import check_bits, check_quant_bits, num_levels, qmax
from quest_lightning.functional.hysteresis import Margin, hysteresis_codes, hysteresis_quantize
from quest_lightning.functional.quantize import (
    AlphaInit,
    Transform,
    alpha_grad_scale,
    check_alpha_init,
    check_transform,
    initial_alpha,
    mint_codes,
    mint_quantize,
)
from quest_lightning.nn.scale import keep_scale_positive, project_scale_, track_scale

if TYPE_CHECKING:
    from typing_extensions import Unpack


InputKind = Literal["auto", "spikes", "analog"]
INPUT_KINDS: tuple[str, ...] = ("auto", "spikes", "analog")


class QuantOptions(TypedDict, total=False):
    """The quantization keywords of :class:`QuantConv2d` and :class:`QuantLinear` (defaults in brackets).

    Attributes:
        bits: weight bit width :math:`b` from 2 to 8 (1, a grid with only the zero level, only with
            ``enabled=False``); the grid has :math:`2^b - 1` levels [2].
        transform: ``"tanh"`` (MINT) or ``"identity"`` before dividing by :math:`\\alpha` ["tanh"].
        enabled: quantize the weights; ``False`` gives a full-precision layer [True].
        use_alpha_grad_scale: scale the gradient of :math:`\\alpha` by :math:`1/\\sqrt{N_W Q_b}` (LSQ) [True].
        alpha_init: :math:`\\alpha_0`, ``"mint"`` (:math:`2\\overline{|W|}/\\sqrt{Q_b}`, MINT's) or ``"range"`` (the
            99.9th percentile of :math:`|T(W)|`); see :func:`~quest_lightning.functional.quantize.initial_alpha`
            ["mint"].
        input_kind: what the layer's input is, for the operation counts: ``"auto"`` (decided from what was recorded:
            analog as soon as one input element is neither 0 nor 1), ``"spikes"`` or ``"analog"`` ["auto"].
    """

    bits: int
    transform: Transform
    enabled: bool
    use_alpha_grad_scale: bool
    alpha_init: AlphaInit
    input_kind: InputKind


def _is_repeated_over_time(x: Tensor, feature_dims: int) -> bool:
    """A ``[T, B, ...]`` input that is one ``[B, ...]`` tensor repeated (a stride-0 view, as direct coding makes)."""
    return x.dim() == feature_dims + 2 and x.shape[0] > 1 and x.stride(0) == 0


class QuantLayerMixin(StepModule):
    """State and behaviour shared by the quantized layers (``weight`` comes from the ``nn`` base class).

    A SpikingJelly ``StepModule``, so ``functional.set_step_mode(net, mode)`` reaches it.

    A subclass sets :attr:`feature_dims` (the number of trailing feature dimensions of one sample) and implements
    :meth:`_check_input` and :meth:`_apply_weight`; the forward pass, the recording and the ``repr`` are here.
    """

    weight: nn.Parameter
    feature_dims: ClassVar[int]
    weight_perturbation: Callable[[Tensor, Tensor], Tensor] | None = None
    """Optional ``hook(w_q, codes) -> w`` applied after quantization (device non-idealities); ``None``: off."""
    hysteresis: Margin | None = None
    """Optional write-aware hysteresis margin (:mod:`quest_lightning.functional.hysteresis`; set it with
    :func:`quest_lightning.energy.aware.set_hysteresis`): a code changes only when the latent weight is past the
    boundary by the margin, and the codes held between passes are the ``held_codes`` buffer; ``None``: off."""
    _step_mode: str | None = None  # declared step mode; None: follow each input
    _input_step_mode: str = "s"  # the layout of the last input

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

    def _init_quant(
        self,
        *,
        bits: int = 2,
        transform: Transform = "tanh",
        enabled: bool = True,
        use_alpha_grad_scale: bool = True,
        alpha_init: AlphaInit = "mint",
        input_kind: InputKind = "auto",
        **unknown: object,
    ) -> None:
        if unknown:
            raise TypeError(
                f"{type(self).__name__} got unknown keyword(s) {sorted(unknown)}: the quantization options are "
                f"{sorted(QuantOptions.__annotations__)}. A memory device is checked on the built model with "
                "quest_lightning.devices.check_model(model, device)."
            )
        self.bits = check_bits(bits)
        self.transform = check_transform(transform)
        self.use_alpha_grad_scale = bool(use_alpha_grad_scale)
        self.alpha_init = check_alpha_init(alpha_init)
        self.alpha = nn.Parameter(initial_alpha(self.weight, bits, transform, alpha_init).to(self.weight.dtype))
        self.enabled = bool(enabled)
        keep_scale_positive(self)
        # Plain tensor attributes, not registered buffers: they are derived per forward pass and must be neither
        # checkpointed nor broadcast between DDP ranks (each rank records its own inputs).
        self.codes: Tensor = torch.zeros_like(self.weight, dtype=torch.int8)
        self.record = False
        self.input_kind = input_kind
        self.input_counts: Tensor = torch.zeros(0, dtype=torch.float64)
        self.nonbinary_inputs: Tensor = torch.zeros((), dtype=torch.int64)
        self.recorded_rows = 0
        self.recorded_calls = 0
        self.recorded_steps = 0

    @property
    def enabled(self) -> bool:
        """Whether the weights are quantized. A full-precision layer's :math:`\\alpha` takes no gradient (so DDP
        finds no unused parameter)."""
        return self._enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        if value:
            base = super().extra_repr()  # type: ignore[misc]
            check_quant_bits(self.bits, what=f"{type(self).__name__}({base}) with quantized weights")
        self._enabled = bool(value)
        self.alpha.requires_grad_(self._enabled)

    @property
    def num_levels(self) -> int:
        """Number of weight levels, :math:`2^b - 1`."""
        return num_levels(self.bits)

    @property
    def qmax(self) -> int:
        """Largest code :math:`Q_b`."""
        return qmax(self.bits)

    @property
    def step_size(self) -> Tensor:
        """Grid step :math:`\\alpha / Q_b` (the weight of code 1)."""
        self.project_alpha()
        return self.alpha.detach() / max(self.qmax, 1)

    def reset_alpha(self) -> None:
        """Re-initialise :math:`\\alpha` from the current weights, by the layer's ``alpha_init`` method."""
        with torch.no_grad():
            self.alpha.copy_(initial_alpha(self.weight, self.bits, self.transform, self.alpha_init))
        self.project_alpha()

    def project_alpha(self) -> None:
        """Raise :math:`\\alpha` to its floor in place: :math:`\\alpha \\leftarrow \\max(\\alpha,
        \\alpha_{\\min}(W))` (:func:`~quest_lightning.functional.quantize.alpha_floor`), on the device, with no host
        synchronisation.

        This keeps the scale strictly positive by construction, so that the codes always have the signs of the
        quantized weights. It runs before every use of :math:`\\alpha` in this layer (the forward pass,
        :meth:`current_codes`, :attr:`step_size`), after every ``torch.optim`` step that updated it, and after
        ``load_state_dict``. For a healthy :math:`\\alpha` it changes nothing, so forward values and gradients are
        those of the plain MINT quantizer; a value pushed below the floor (an Adam step with weight decay, or set by
        hand) is projected back onto it, and the gradient keeps reaching :math:`\\alpha` (projected gradient
        descent). The write bypasses autograd's version counter: within one forward pass it can only write the value
        already there, so a single-step loop that calls the layer ``T`` times in one graph stays differentiable.
        """
        track_scale(self)
        project_scale_(self.alpha, self.weight, self.transform)

    def quantized_weight(self) -> Tensor:
        """The weight used in the forward pass (the shape of ``weight``): the single place where it is made.

        Quantized, it is :math:`W_q = \\hat w\\,\\alpha/Q_b` (MINT, through
        :func:`~quest_lightning.functional.quantize.mint_quantize`, with the LSQ gradient scale when
        ``use_alpha_grad_scale``), and ``codes`` is refreshed to :math:`\\hat w`; with ``enabled=False`` it is
        ``weight`` itself and ``codes`` is left alone.
        """
        if not self.enabled:
            return self.weight
        self.project_alpha()
        scale = alpha_grad_scale(self.weight.numel(), self.bits) if self.use_alpha_grad_scale else None
        if self.hysteresis is None:
            w_q, codes = mint_quantize(self.weight, self.alpha, self.bits, self.transform, scale)
        else:
            held = getattr(self, "held_codes", None)
            w_q, codes = hysteresis_quantize(
                self.weight, self.alpha, self.bits, self.transform, scale, held, self.hysteresis
            )
            self.held_codes = codes
        self.codes = codes
        if self.weight_perturbation is not None:
            w_q = self.weight_perturbation(w_q, codes)
        return w_q

    def current_codes(self) -> Tensor:
        """Integer codes of the weights as they are now (for example just after an optimizer step)."""
        self.project_alpha()
        if self.hysteresis is not None:
            held = getattr(self, "held_codes", None)
            return hysteresis_codes(self.weight, self.alpha, self.bits, self.transform, held, self.hysteresis)
        return mint_codes(self.weight, self.alpha.detach(), self.bits, self.transform)

    @property
    def input_kind(self) -> InputKind:
        """What the input is, for the operation counts: ``"auto"`` (decided from what was recorded, see
        :func:`~quest_lightning.nn.inspect.input_kind_of`), ``"spikes"`` or ``"analog"`` (a user's override)."""
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
        * ``nonbinary_inputs +=`` the number of elements of ``x`` that are neither 0 nor 1 (int64, on the device).

        So, for one batch: ``samples = recorded_rows / recorded_steps`` and ``T = recorded_steps``, for a multi-step
        call on ``[T, B, ...]`` (``T·B`` rows, ``T`` steps) and for a single-step loop of ``T`` calls on ``[B, ...]``
        (``T·B`` rows, ``T`` steps) alike. This holds when every time step of a sample meets the weight as one row,
        as in a conv (one image per row) or a linear layer on ``[T, B, F]``; a linear layer applied to ``N`` vectors
        per sample (``[T, B, N, F]``) counts ``N`` rows per sample. An input repeated over time as a stride-0 view
        (direct coding) is counted once and multiplied by ``T``.
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
        flat = x.reshape(-1, *features)
        sums = flat.sum(0, dtype=torch.float64)
        nonbinary = torch.logical_and(flat != 0, flat != 1).sum()
        if repeats != 1:
            sums, nonbinary = sums * repeats, nonbinary * repeats
        self.input_counts += sums
        self.nonbinary_inputs += nonbinary
        self.recorded_rows += rows
        self.recorded_calls += 1
        self.recorded_steps += steps

    def forward(self, x: Tensor) -> Tensor:
        """``[B, ...]`` or ``[T, B, ...]`` input through the (quantized) weight; records ``x`` if asked.

        An input repeated over time as a stride-0 view is computed once and the output expanded.
        """
        self._check_input(x)
        self._check_step_mode(x)
        w = self.quantized_weight()
        if self.record:
            self.record_input(x)
        if _is_repeated_over_time(x, self.feature_dims):
            y = self._apply_weight(x[0], w)
            return y.unsqueeze(0).expand(x.shape[0], *y.shape)
        return self._apply_weight(x, w)

    def _check_input(self, x: Tensor) -> None:
        raise NotImplementedError

    def _apply_weight(self, x: Tensor, w: Tensor) -> Tensor:
        raise NotImplementedError

    def reset_recording(self) -> None:
        """Zero every record (``input_counts``, ``nonbinary_inputs``, ``recorded_rows``, ``recorded_calls``,
        ``recorded_steps``)."""
        self.input_counts.zero_()
        self.nonbinary_inputs.zero_()
        self.recorded_rows = self.recorded_calls = self.recorded_steps = 0

    def extra_repr(self) -> str:
        step = "" if self._step_mode is None else f", step_mode={self._step_mode!r}"
        return super().extra_repr() + f", bits={self.bits}, transform={self.transform!r}, enabled={self.enabled}" + step


class _QuantConvMixin(QuantLayerMixin):
    """The convolutions' input check and time folding; ``sample_layout`` names one sample's dimensions."""

    sample_layout: ClassVar[str]
    _conv_forward: Callable[[Tensor, Tensor, Tensor | None], Tensor]

    def _check_input(self, x: Tensor) -> None:
        if x.dim() not in (self.feature_dims + 1, self.feature_dims + 2):
            raise ValueError(
                f"{type(self).__name__} expects [B, {self.sample_layout}] or [T, B, {self.sample_layout}] input, got "
                f"shape {tuple(x.shape)}."
            )

    def _apply_weight(self, x: Tensor, w: Tensor) -> Tensor:
        if x.dim() == self.feature_dims + 1:
            return self._conv_forward(x, w, self.bias)
        return self._conv_forward(x.flatten(0, 1), w, self.bias).unflatten(0, x.shape[:2])


class QuantConv1d(_QuantConvMixin, nn.Conv1d):
    """A ``nn.Conv1d`` whose weights live on a ``bits``-bit MINT grid.

    Input ``[B, C, L]`` or ``[T, B, C, L]`` (time folded into the batch); output likewise.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias, padding_mode, device, dtype:
            as ``nn.Conv1d`` (``bias`` defaults to ``False``: a bias is not stored on the device).
        step_mode: ``"s"``, ``"m"`` or ``None`` (follow each input); see :attr:`QuantLayerMixin.step_mode`.
        **quant: ``bits``, ``transform``, ``enabled``, ``use_alpha_grad_scale``, ``alpha_init``, ``input_kind``
            (see :class:`QuantOptions`).

    Raises:
        ValueError: bad ``bits`` (``bits=1`` with quantization on), ``transform``, ``alpha_init``, ``input_kind`` or
            ``step_mode``; in the forward pass, an input that is not 3-D or 4-D.
    """

    feature_dims = 2
    sample_layout = "C, L"

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int],
        stride: int | tuple[int] = 1,
        padding: int | tuple[int] | str = 0,
        dilation: int | tuple[int] = 1,
        groups: int = 1,
        bias: bool = False,
        padding_mode: str = "zeros",
        device=None,
        dtype=None,
        step_mode: str | None = None,
        **quant: Unpack[QuantOptions],
    ) -> None:
        super().__init__(
            in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias, padding_mode, device, dtype
        )
        self._init_quant(**quant)
        self.step_mode = step_mode


class QuantConv2d(_QuantConvMixin, nn.Conv2d):
    """A ``nn.Conv2d`` whose weights live on a ``bits``-bit MINT grid.

    Input ``[B, C, H, W]`` or ``[T, B, C, H, W]`` (time folded into the batch); output likewise.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias, padding_mode, device, dtype:
            as ``nn.Conv2d`` (``bias`` defaults to ``False``: a bias is not stored on the device).
        step_mode: ``"s"``, ``"m"`` or ``None`` (follow each input); see :attr:`QuantLayerMixin.step_mode`.
        **quant: ``bits``, ``transform``, ``enabled``, ``use_alpha_grad_scale``, ``alpha_init``, ``input_kind``
            (see :class:`QuantOptions`).

    Raises:
        ValueError: bad ``bits`` (``bits=1`` with quantization on), ``transform``, ``alpha_init``, ``input_kind`` or
            ``step_mode``; in the forward pass, an input that is not 4-D or 5-D.
    """

    feature_dims = 3
    sample_layout = "C, H, W"

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = False,
        padding_mode: str = "zeros",
        device=None,
        dtype=None,
        step_mode: str | None = None,
        **quant: Unpack[QuantOptions],
    ) -> None:
        super().__init__(
            in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias, padding_mode, device, dtype
        )
        self._init_quant(**quant)
        self.step_mode = step_mode


class QuantLinear(QuantLayerMixin, nn.Linear):
    """A ``nn.Linear`` whose weights live on a ``bits``-bit MINT grid; any number of leading dimensions.

    Args:
        in_features, out_features, bias, device, dtype: as ``nn.Linear`` (``bias`` defaults to ``False``).
        step_mode: ``"s"``, ``"m"`` or ``None`` (follow each input); a linear layer takes any leading dimensions in
            either mode, so this is a declaration only.
        **quant: ``bits``, ``transform``, ``enabled``, ``use_alpha_grad_scale``, ``alpha_init``, ``input_kind``
            (see :class:`QuantOptions`).

    Raises:
        ValueError: bad ``bits`` (``bits=1`` with quantization on), ``transform``, ``alpha_init`` or ``input_kind``;
            in the forward pass, an input whose last size is not ``in_features``.
    """

    feature_dims = 1

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = False,
        device=None,
        dtype=None,
        step_mode: str | None = None,
        **quant: Unpack[QuantOptions],
    ) -> None:
        super().__init__(in_features, out_features, bias, device, dtype)
        self._init_quant(**quant)
        self.step_mode = step_mode

    def _check_input(self, x: Tensor) -> None:
        if x.shape[-1] != self.in_features:
            raise ValueError(f"QuantLinear expects [..., {self.in_features}] input, got shape {tuple(x.shape)}.")

    def _apply_weight(self, x: Tensor, w: Tensor) -> Tensor:
        return F.linear(x, w, self.bias)


QuantLayer = QuantConv1d | QuantConv2d | QuantLinear
