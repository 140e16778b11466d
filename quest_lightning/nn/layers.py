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

With ``record=True`` a layer adds its input summed over every row (time steps and samples) to ``input_counts``,
and the number of rows to ``recorded_rows``. For spiking inputs that is the spike count per input position, which
is all the AOR meter needs. When recording is off, nothing is stored.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar, TypedDict

import torch
import torch.nn.functional as F
from spikingjelly.activation_based.base import StepModule
from torch import Tensor, nn

from quest_lightning.functional.grid import check_bits, num_levels, qmax
from quest_lightning.functional.quantize import (
    Transform,
    alpha_grad_scale,
    check_transform,
    init_alpha,
    mint_codes,
    mint_quantize,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack


class QuantOptions(TypedDict, total=False):
    """The quantization keywords of :class:`QuantConv2d` and :class:`QuantLinear` (defaults in brackets).

    Attributes:
        bits: weight bit width :math:`b` from 1 to 8; the grid has :math:`2^b - 1` levels [2].
        transform: ``"tanh"`` (MINT) or ``"identity"`` before dividing by :math:`\\alpha` ["tanh"].
        enabled: quantize the weights; ``False`` gives a full-precision layer [True].
        use_alpha_grad_scale: scale the gradient of :math:`\\alpha` by :math:`1/\\sqrt{N_W Q_b}` (LSQ) [True].
    """

    bits: int
    transform: Transform
    enabled: bool
    use_alpha_grad_scale: bool


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
        self.alpha = nn.Parameter(init_alpha(self.weight, bits).to(self.weight.dtype))
        self.enabled = bool(enabled)
        # Plain tensor attributes, not registered buffers: they are derived per forward pass and must be neither
        # checkpointed nor broadcast between DDP ranks (each rank records its own inputs).
        self.codes: Tensor = torch.zeros_like(self.weight, dtype=torch.int8)
        self.record = False
        self.input_counts: Tensor = torch.zeros(0, dtype=torch.float64)
        self.recorded_rows: Tensor = torch.zeros((), dtype=torch.int64)

    @property
    def enabled(self) -> bool:
        """Whether the weights are quantized. A full-precision layer's :math:`\\alpha` takes no gradient (so DDP
        finds no unused parameter)."""
        return self._enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
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
        return self.alpha.detach() / max(self.qmax, 1)

    def reset_alpha(self) -> None:
        """Re-initialise :math:`\\alpha` from the current weights (:math:`2\\overline{|W|}/\\sqrt{Q_b}`)."""
        with torch.no_grad():
            self.alpha.copy_(init_alpha(self.weight, self.bits))

    def quantized_weight(self) -> Tensor:
        """The weight used in the forward pass (the shape of ``weight``): the single place where it is made.

        Quantized, it is :math:`W_q = \\hat w\\,\\alpha/Q_b` (MINT, through
        :func:`~quest_lightning.functional.quantize.mint_quantize`, with the LSQ gradient scale when
        ``use_alpha_grad_scale``), and ``codes`` is refreshed to :math:`\\hat w`; with ``enabled=False`` it is
        ``weight`` itself and ``codes`` is left alone.
        """
        if not self.enabled:
            return self.weight
        scale = alpha_grad_scale(self.weight.numel(), self.bits) if self.use_alpha_grad_scale else None
        w_q, codes = mint_quantize(self.weight, self.alpha, self.bits, self.transform, scale)
        self.codes = codes
        return w_q

    def current_codes(self) -> Tensor:
        """Integer codes of the weights as they are now (for example just after an optimizer step)."""
        return mint_codes(self.weight, self.alpha.detach(), self.bits, self.transform)

    def _record(self, x: Tensor) -> None:
        feature_dims = self.feature_dims
        x = x.detach()
        repeats = 1
        if _is_repeated_over_time(x, feature_dims):
            repeats, x = x.shape[0], x[0]
        rows = x.flatten(0, x.dim() - feature_dims - 1)
        if self.input_counts.shape != rows.shape[1:] or self.input_counts.device != x.device:
            self.input_counts = torch.zeros(rows.shape[1:], dtype=torch.float64, device=x.device)
            self.recorded_rows = torch.zeros((), dtype=torch.int64, device=x.device)
        # a float32 sum is exact for 0/1 spikes up to 2**24 rows; the running total is float64
        self.input_counts += rows.sum(0) * repeats
        self.recorded_rows += rows.shape[0] * repeats

    def forward(self, x: Tensor) -> Tensor:
        """``[B, ...]`` or ``[T, B, ...]`` input through the (quantized) weight; records ``x`` if asked.

        An input repeated over time as a stride-0 view is computed once and the output expanded.
        """
        self._check_input(x)
        self._check_step_mode(x)
        w = self.quantized_weight()
        if self.record:
            self._record(x)
        if _is_repeated_over_time(x, self.feature_dims):
            y = self._apply_weight(x[0], w)
            return y.unsqueeze(0).expand(x.shape[0], *y.shape)
        return self._apply_weight(x, w)

    def _check_input(self, x: Tensor) -> None:
        raise NotImplementedError

    def _apply_weight(self, x: Tensor, w: Tensor) -> Tensor:
        raise NotImplementedError

    def reset_recording(self) -> None:
        """Zero ``input_counts`` and ``recorded_rows``."""
        self.input_counts.zero_()
        self.recorded_rows.zero_()

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
        **quant: ``bits``, ``transform``, ``enabled``, ``use_alpha_grad_scale`` (see :class:`QuantOptions`).

    Raises:
        ValueError: bad ``bits``, ``transform`` or ``step_mode``; in the forward pass, an input that is not 3-D or
            4-D.
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
        **quant: ``bits``, ``transform``, ``enabled``, ``use_alpha_grad_scale`` (see :class:`QuantOptions`).

    Raises:
        ValueError: bad ``bits``, ``transform`` or ``step_mode``; in the forward pass, an input that is not 4-D or
            5-D.
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
        **quant: ``bits``, ``transform``, ``enabled``, ``use_alpha_grad_scale`` (see :class:`QuantOptions`).

    Raises:
        ValueError: bad ``bits`` or ``transform``; in the forward pass, an input whose last size is not
            ``in_features``.
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
