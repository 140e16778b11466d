"""``QuantConv1d``, ``QuantConv2d`` and ``QuantLinear``: drop-in ``nn.Conv1d`` / ``nn.Conv2d`` / ``nn.Linear`` with MINT
weight quantization.

Each layer owns one learnable scale :math:`\\alpha` and keeps the integer codes of its last forward pass in
``codes`` (an ``int8`` tensor refreshed on every forward; not checkpointed, since it is derived from the weights).
With ``enabled=False`` it is an ordinary full-precision layer (still recordable, so that the
first, analog-input layer and the readout are counted in the energy accounting).

All accept single-step input (``[B, ...]``) and multi-step input with a leading time axis (``[T, B, ...]``), which is
folded into the batch for the convolution or matrix product. An input repeated over time as a stride-0 view (direct
coding) is computed once and the output expanded.

They share one code path (:class:`QuantLayerMixin`): the quantization options (:class:`QuantOptions`), the weight
quantizer and the forward pass, with the integer product for spike input
(:meth:`QuantLayerMixin.takes_integer_product`); each class only says how its weight meets the input. What a layer
sees, its input's layout (``step_mode``), kind (``input_kind``) and record (``record=True``), is the input side it
inherits from :class:`~quest_lightning.nn.layer_input.LayerInputMixin`.

The scale :math:`\\alpha` is kept at or above :func:`~quest_lightning.functional.quantize.alpha_floor` (a small
fraction of the weights' largest magnitude), so it is always positive: see :meth:`QuantLayerMixin.project_alpha`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar, TypedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from quest_lightning.functional.grid import check_bits, check_quant_bits, num_levels, qmax
from quest_lightning.functional.hysteresis import Margin, hysteresis_codes, hysteresis_quantize
from quest_lightning.functional.intmm import (
    guarded_step,
    integer_products_supported,
    spike_conv,
    spike_linear,
    spikes_int8,
)
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
from quest_lightning.nn.layer_input import InputKind, LayerInputMixin, _is_repeated_over_time
from quest_lightning.nn.scale import keep_scale_positive, project_scale_, track_scale

if TYPE_CHECKING:
    from typing_extensions import Unpack


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
        input_kind: what the layer's input is: ``"auto"`` (for the operation counts, decided from what was recorded:
            analog as soon as one input element is neither 0 nor 1), ``"spikes"`` (0/1 spikes, a promise: counted as
            spikes, and the forward product taken in exact integers where it can be, see
            :meth:`QuantLayerMixin.takes_integer_product`) or ``"analog"`` ["auto"].
    """

    bits: int
    transform: Transform
    enabled: bool
    use_alpha_grad_scale: bool
    alpha_init: AlphaInit
    input_kind: InputKind


class QuantLayerMixin(LayerInputMixin):
    """State and behaviour shared by the quantized layers (``weight`` comes from the ``nn`` base class).

    A SpikingJelly ``StepModule`` through :class:`~quest_lightning.nn.layer_input.LayerInputMixin` (the input's layout,
    kind and record), so ``functional.set_step_mode(net, mode)`` reaches it.

    A subclass sets :attr:`feature_dims` (the number of trailing feature dimensions of one sample) and implements
    :meth:`_check_input`, :meth:`_apply_weight` and :meth:`_apply_codes`; the quantizer, the forward pass and the
    ``repr`` are here.
    """

    weight: nn.Parameter
    weight_perturbation: Callable[[Tensor, Tensor], Tensor] | None = None
    """Optional ``hook(w_q, codes) -> w`` applied after quantization (device non-idealities); ``None``: off. While
    it is set the forward product is the float one (the weights are off the grid)."""
    integer_products: bool = True
    """Take the forward product of 0/1 spikes and the integer codes in integer arithmetic where it applies (exact,
    see :mod:`quest_lightning.functional.intmm` and :meth:`takes_integer_product`); ``False``: always the float
    product."""
    hysteresis: Margin | None = None
    """Optional write-aware hysteresis margin (:mod:`quest_lightning.functional.hysteresis`; set it with
    :func:`quest_lightning.energy.aware.set_hysteresis`): a code changes only when the latent weight is past the
    boundary by the margin, and the codes held between passes are the ``held_codes`` buffer; ``None``: off."""

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
        # A plain tensor attribute, not a registered buffer: derived per forward pass, it must be neither checkpointed
        # nor broadcast between DDP ranks.
        self.codes: Tensor = torch.zeros_like(self.weight, dtype=torch.int8)
        self._init_recording(input_kind)

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
        ``weight`` itself and ``codes`` is left alone. Every quantizer here must keep :math:`W_q` equal to ``codes``
        times ``alpha / Q_b`` element by element (only ``weight_perturbation`` may leave the grid): the integer
        product (:meth:`takes_integer_product`) computes with the codes and that step.
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

    def forward(self, x: Tensor) -> Tensor:
        """``[B, ...]`` or ``[T, B, ...]`` input through the (quantized) weight; records ``x`` if asked.

        Spike input meets the integer codes in an exact integer product where :meth:`takes_integer_product` allows
        it, and the weight :math:`W_q` in a float product otherwise. An input repeated over time as a stride-0 view is
        computed once and the output expanded.
        """
        self._check_input(x)
        self._check_step_mode(x)
        w = self.quantized_weight()
        repeated = _is_repeated_over_time(x, self.feature_dims)
        x_once = x[0] if repeated else x
        if self.record:
            self.record_input(x)
        if self.takes_integer_product(x_once, w):
            xi, valid = spikes_int8(x_once)
            y = self._apply_codes(x_once, xi, w, guarded_step(self.alpha.detach() / self.qmax, valid))
        else:
            y = self._apply_weight(x_once, w)
        return y.unsqueeze(0).expand(x.shape[0], *y.shape) if repeated else y

    def takes_integer_product(self, x: Tensor, w: Tensor) -> bool:
        """Whether this call's product is taken in integers (decided from what the layer knows, reading no tensor).

        That needs :attr:`integer_products`, quantized weights that the forward pass uses unchanged (``w`` is
        :math:`\\hat w\\,\\alpha/Q_b`: no ``weight_perturbation``), an input declared to be spikes
        (``input_kind="spikes"``, which :class:`~quest_lightning.nn.vgg.SpikingVGG` sets where a neuron feeds the
        layer), a layer the integer kernels cover (a linear layer, or a zero-padded ungrouped convolution), and what
        :func:`~quest_lightning.functional.intmm.integer_products_supported` asks (the CPU, float32, no autocast, no
        overflow). The declaration is checked on the device, exactly: an input that is not 0/1 makes every output of
        the call NaN (:func:`~quest_lightning.functional.intmm.guarded_step`), never a silently wrong number.
        """
        if not (self.integer_products and self.enabled and self.weight_perturbation is None):
            return False
        if self.input_kind != "spikes" or not self._integer_kernel_covers():
            return False
        return integer_products_supported(x, w, self.qmax, self.weight[0].numel())

    def _integer_kernel_covers(self) -> bool:
        return True

    def _check_input(self, x: Tensor) -> None:
        raise NotImplementedError

    def _apply_weight(self, x: Tensor, w: Tensor) -> Tensor:
        raise NotImplementedError

    def _apply_codes(self, x: Tensor, xi: Tensor, w: Tensor, step: Tensor) -> Tensor:
        """The product of 0/1 ``x`` (``xi`` its ``int8`` copy) in integers, scaled by ``step``; gradients reach ``w``
        as in :meth:`_apply_weight`."""
        raise NotImplementedError

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

    def _integer_kernel_covers(self) -> bool:
        return self.groups == 1 and self.padding_mode == "zeros" and not isinstance(self.padding, str)

    def _apply_codes(self, x: Tensor, xi: Tensor, w: Tensor, step: Tensor) -> Tensor:
        conv = (self.stride, self.padding, self.dilation)
        if x.dim() == self.feature_dims + 1:
            return spike_conv(x, xi, w, self.codes, step, self.bias, *conv)
        y = spike_conv(x.flatten(0, 1), xi.flatten(0, 1), w, self.codes, step, self.bias, *conv)
        return y.unflatten(0, x.shape[:2])


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

    def _apply_codes(self, x: Tensor, xi: Tensor, w: Tensor, step: Tensor) -> Tensor:
        return spike_linear(x, xi, w, self.codes, step, self.bias)


QuantLayer = QuantConv1d | QuantConv2d | QuantLinear
