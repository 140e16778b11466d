"""``QuantConv2d`` and ``QuantLinear``: drop-in ``nn.Conv2d`` / ``nn.Linear`` with MINT weight quantization.

Each layer owns one learnable scale :math:`\\alpha` and keeps the integer codes of its last forward pass in
``codes`` (an ``int8`` tensor refreshed on every forward; not checkpointed, since it is derived from the weights).
With ``enabled=False`` it is an ordinary full-precision layer (still recordable, so that the
first, analog-input layer and the readout are counted in the energy accounting).

Both accept single-step input (``[B, ...]``) and multi-step input with a leading time axis (``[T, B, ...]``), which is
folded into the batch for the convolution or matrix product. An input repeated over time as a stride-0 view (direct
coding) is computed once and the output expanded.

With ``record=True`` a layer adds its input summed over every row (time steps and samples) to ``input_counts``,
and the number of rows to ``recorded_rows``. For spiking inputs that is the spike count per input position, which
is all the AOR meter needs. When recording is off, nothing is stored.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from quest_lightning.devices.capability import DeviceCapability, check_bits_fit
from quest_lightning.functional.grid import check_bits, num_levels, qmax
from quest_lightning.functional.quantize import (
    Transform,
    alpha_grad_scale,
    check_transform,
    init_alpha,
    mint_codes,
    mint_quantize,
)


def _is_repeated_over_time(x: Tensor, feature_dims: int) -> bool:
    """A ``[T, B, ...]`` input that is one ``[B, ...]`` tensor repeated (a stride-0 view, as direct coding makes)."""
    return x.dim() == feature_dims + 2 and x.shape[0] > 1 and x.stride(0) == 0


class QuantLayerMixin:
    """State and behaviour shared by the quantized layers (``weight`` comes from the ``nn`` base class)."""

    weight: nn.Parameter
    weight_perturbation: Callable[[Tensor, Tensor], Tensor] | None = None
    """Optional ``hook(w_q, codes) -> w`` applied after quantization (device non-idealities); ``None``: off."""

    def _init_quant(
        self,
        bits: int,
        transform: Transform,
        enabled: bool,
        use_alpha_grad_scale: bool,
        device_spec: DeviceCapability | None,
    ) -> None:
        self.bits = check_bits(bits)
        self.transform = check_transform(transform)
        self.use_alpha_grad_scale = bool(use_alpha_grad_scale)
        self.device_spec = device_spec
        if device_spec is not None and enabled:
            check_bits_fit(device_spec, bits)
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
        """The weight used in the forward pass; refreshes ``codes`` when quantization is enabled."""
        if not self.enabled:
            return self.weight
        scale = alpha_grad_scale(self.weight.numel(), self.bits) if self.use_alpha_grad_scale else None
        w_q, codes = mint_quantize(self.weight, self.alpha, self.bits, self.transform, scale)
        self.codes = codes
        if self.weight_perturbation is not None:
            w_q = self.weight_perturbation(w_q, codes)
        return w_q

    def current_codes(self) -> Tensor:
        """Integer codes of the weights as they are now (for example just after an optimizer step)."""
        return mint_codes(self.weight, self.alpha.detach(), self.bits, self.transform)

    def _record(self, x: Tensor, feature_dims: int) -> None:
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

    def _forward_steps(self, x: Tensor, feature_dims: int, op) -> Tensor:
        """Record ``x`` if asked, then ``op(x)``; an input repeated over time is computed once and expanded."""
        if self.record:
            self._record(x, feature_dims)
        if _is_repeated_over_time(x, feature_dims):
            y = op(x[0])
            return y.unsqueeze(0).expand(x.shape[0], *y.shape)
        return op(x)

    def reset_recording(self) -> None:
        """Zero ``input_counts`` and ``recorded_rows``."""
        self.input_counts.zero_()
        self.recorded_rows.zero_()

    def _quant_repr(self) -> str:
        return f", bits={self.bits}, transform={self.transform!r}, enabled={self.enabled}"


class QuantConv2d(QuantLayerMixin, nn.Conv2d):
    """A ``nn.Conv2d`` whose weights live on a ``bits``-bit MINT grid.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias, padding_mode: as ``nn.Conv2d``
            (``bias`` defaults to ``False``: a bias is not stored on the device).
        bits: weight bit width (1 to 8); :math:`2^b - 1` levels.
        transform: ``"tanh"`` (MINT) or ``"identity"``.
        enabled: quantize the weights; ``False`` gives a full-precision layer.
        use_alpha_grad_scale: scale the gradient of :math:`\\alpha` by :math:`1/\\sqrt{N_W Q_b}` (LSQ).
        device_spec: the memory device that will hold the weights; checked to have enough states.
    """

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
        *,
        bits: int = 2,
        transform: Transform = "tanh",
        enabled: bool = True,
        use_alpha_grad_scale: bool = True,
        device_spec: DeviceCapability | None = None,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__(
            in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias, padding_mode, device, dtype
        )
        self._init_quant(bits, transform, enabled, use_alpha_grad_scale, device_spec)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() not in (4, 5):
            raise ValueError(f"QuantConv2d expects [B, C, H, W] or [T, B, C, H, W] input, got shape {tuple(x.shape)}.")
        w = self.quantized_weight()

        def conv(v: Tensor) -> Tensor:
            if v.dim() == 4:
                return self._conv_forward(v, w, self.bias)
            return self._conv_forward(v.flatten(0, 1), w, self.bias).unflatten(0, v.shape[:2])

        return self._forward_steps(x, 3, conv)

    def extra_repr(self) -> str:
        return super().extra_repr() + self._quant_repr()


class QuantLinear(QuantLayerMixin, nn.Linear):
    """A ``nn.Linear`` whose weights live on a ``bits``-bit MINT grid; any number of leading dimensions.

    Args:
        in_features, out_features, bias: as ``nn.Linear`` (``bias`` defaults to ``False``).
        bits, transform, enabled, use_alpha_grad_scale, device_spec: as :class:`QuantConv2d`.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = False,
        *,
        bits: int = 2,
        transform: Transform = "tanh",
        enabled: bool = True,
        use_alpha_grad_scale: bool = True,
        device_spec: DeviceCapability | None = None,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__(in_features, out_features, bias, device, dtype)
        self._init_quant(bits, transform, enabled, use_alpha_grad_scale, device_spec)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.in_features:
            raise ValueError(f"QuantLinear expects [..., {self.in_features}] input, got shape {tuple(x.shape)}.")
        w = self.quantized_weight()
        return self._forward_steps(x, 1, lambda v: F.linear(v, w, self.bias))

    def extra_repr(self) -> str:
        return super().extra_repr() + self._quant_repr()


QuantLayer = QuantConv2d | QuantLinear
