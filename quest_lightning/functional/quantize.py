"""The MINT quantizer: a symmetric, narrow-range integer grid with one learnable scale.

For ``b`` bits the grid has :math:`Q_b = 2^{b-1} - 1` positive levels and :math:`2^b - 1` levels in all:

.. math::

    \\hat w = \\operatorname{round}\\big(\\operatorname{clip}(T(W)/\\alpha, -1, 1)\\, Q_b\\big)
    \\in \\{-Q_b, \\dots, Q_b\\}, \\qquad W_q = \\hat w\\, \\alpha / Q_b,

where :math:`T` is ``tanh`` (MINT) or the identity. Gradients pass straight through ``round`` only; ``clip`` and
``tanh`` keep their true gradients, and :math:`\\alpha` receives the LSQ-like gradient
:math:`\\hat w/Q_b - (T(W)/\\alpha)\\,\\mathbb 1[|T(W)| < \\alpha]`, optionally scaled by
:math:`1/\\sqrt{N_W Q_b}`.

The scale is a clip *range*, and it must stay positive: with :math:`\\alpha < 0` the codes take the opposite sign to
the weights the forward pass uses, and with :math:`\\alpha = 0` a zero weight becomes NaN. :func:`alpha_floor` gives
the smallest scale a layer accepts, relative to its weights, and :func:`initial_alpha` the two initialisations
(MINT's, the default, and a range-based one).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

from quest_lightning.functional.grid import qmax

Transform = Literal["tanh", "identity"]
TRANSFORMS: tuple[str, ...] = ("tanh", "identity")
AlphaInit = Literal["mint", "range"]
ALPHA_INITS: tuple[str, ...] = ("mint", "range")
RANGE_PERCENTILE = 99.9
"""The percentile of :math:`|T(W)|` that the range-based initialisation takes as :math:`\\alpha_0`."""
ALPHA_FLOOR_RATIO = 1e-4
"""The floor of :math:`\\alpha` relative to the weights' largest magnitude after the transform (see
:func:`alpha_floor`)."""


def check_transform(transform: str) -> str:
    """Validate a pre-quantization transform name."""
    if transform not in TRANSFORMS:
        raise ValueError(f"transform={transform!r} is unknown: use one of {TRANSFORMS}.")
    return transform


def check_alpha_init(method: str) -> str:
    """Validate the name of an :math:`\\alpha` initialisation (``"mint"`` or ``"range"``)."""
    if method not in ALPHA_INITS:
        raise ValueError(
            f"alpha_init={method!r} is unknown: use 'mint' (MINT's 2*mean|W|/sqrt(Q_b), the default) or 'range' "
            f"(the {RANGE_PERCENTILE}th percentile of |T(W)|)."
        )
    return method


def _transform(x: Tensor, transform: str) -> Tensor:
    return torch.tanh(x) if check_transform(transform) == "tanh" else x


def round_ste(x: Tensor) -> Tensor:
    """Round to nearest with a straight-through gradient.

    >>> x = torch.tensor([0.4, 1.6], requires_grad=True)
    >>> y = round_ste(x); y.sum().backward()
    >>> y.tolist(), x.grad.tolist()
    ([0.0, 2.0], [1.0, 1.0])
    """
    return x + (torch.round(x) - x).detach()


def scale_grad(x: Tensor, scale: float) -> Tensor:
    """Identity in the forward pass (bit-exact); multiplies the gradient by ``scale`` in the backward pass (LSQ)."""
    if scale == 1.0:
        return x
    # x + (y - y) is exactly x, unlike the usual (x - y).detach() + y, which can be off by an ulp
    y = x * scale
    return x.detach() + (y - y.detach())


def init_alpha(weight: Tensor, bits: int) -> Tensor:
    """MINT/LSQ initial scale :math:`\\alpha_0 = 2\\,\\overline{|W|} / \\sqrt{Q_b}` (a scalar tensor).

    This is LSQ's initial *step* (Esser et al. 2020) applied to MINT's clip *range*: at 3, 4 and 8 bits it clips
    about 42%, 62% and 91% of uniformly initialised weights. It is the default for fidelity to MINT; see
    :func:`init_alpha_range` for a range-based alternative.
    """
    q = max(qmax(bits), 1)
    alpha = 2.0 * weight.detach().abs().mean() / math.sqrt(q)
    return alpha.clamp_min(1e-8)


def init_alpha_range(weight: Tensor, transform: Transform = "tanh", percentile: float = RANGE_PERCENTILE) -> Tensor:
    """Range-based initial scale: the ``percentile``-th percentile of :math:`|T(W)|` (a scalar tensor).

    .. math::

        \\alpha_0 = |T(W)|_{(k)}, \\qquad k = \\lceil p\\,N_W / 100 \\rceil,

    the nearest-rank percentile (:math:`|T(W)|_{(k)}` is the :math:`k`-th smallest). The grid then spans the weights
    instead of clipping most of them, whatever the bit width: ``percentile=100`` is max calibration, and a high
    percentile below 100 ignores a few outliers. This is the percentile calibration of post-training quantization
    (Wu et al. 2020, "Integer Quantization for Deep Learning Inference: Principles and Empirical Evaluation",
    arXiv 2004.09602, section 4.2) applied to MINT's clip range; LSQ+ (Bhalgat et al. 2020) also starts its scale
    from the weights' range rather than their mean.

    Args:
        weight: the weights :math:`W`, any shape.
        transform: ``"tanh"`` or ``"identity"``, the layer's :math:`T`.
        percentile: :math:`p \\in (0, 100]`.

    Raises:
        ValueError: ``percentile`` outside (0, 100], or an unknown transform.

    >>> w = torch.linspace(-1.0, 1.0, 2001)
    >>> round(init_alpha_range(w, "identity", 99.9).item(), 3), init_alpha_range(w, "identity", 100.0).item()
    (0.999, 1.0)
    """
    if isinstance(percentile, bool) or not isinstance(percentile, int | float) or not 0.0 < percentile <= 100.0:
        raise ValueError(f"percentile={percentile!r} must lie in (0, 100]; 100 takes the largest |T(W)|.")
    magnitudes = _transform(weight.detach(), transform).abs().flatten()
    if magnitudes.numel() == 0:
        return torch.ones((), dtype=weight.dtype, device=weight.device)
    k = min(max(math.ceil(percentile * magnitudes.numel() / 100.0), 1), magnitudes.numel())
    return magnitudes.kthvalue(k).values.clamp_min(1e-8)


def initial_alpha(weight: Tensor, bits: int, transform: Transform = "tanh", method: AlphaInit = "mint") -> Tensor:
    """:math:`\\alpha_0` by ``method``: ``"mint"`` (:func:`init_alpha`) or ``"range"`` (:func:`init_alpha_range`).

    Raises:
        ValueError: an unknown ``method`` or ``transform``.
    """
    if check_alpha_init(method) == "range":
        return init_alpha_range(weight, transform)
    check_transform(transform)
    return init_alpha(weight, bits)


def alpha_floor(weight: Tensor, transform: Transform = "tanh") -> Tensor:
    """The smallest scale a layer accepts, relative to its weights (a scalar tensor, no host sync):

    .. math::

        \\alpha_{\\min} = r\\,\\max\\big(T(\\max|W|),\\ \\epsilon\\big),

    with :math:`r` = :data:`ALPHA_FLOOR_RATIO` and :math:`\\epsilon` the machine epsilon of the weights' dtype (so
    that all-zero weights still get a positive floor). A healthy :math:`\\alpha` lies far above it (MINT's 8-bit
    initial :math:`\\alpha` is about :math:`0.09\\max|W|` for uniformly initialised weights); at the floor every
    weight is clipped, but the codes keep the weights' signs and nothing is divided by zero. :math:`T` is monotone and
    odd, so :math:`\\max|T(W)| = T(\\max|W|)`.

    >>> round(alpha_floor(torch.tensor([-2.0, 0.5]), "identity").item(), 8)
    0.0002
    """
    w = weight.detach()
    if w.numel():
        lo, hi = torch.aminmax(w)  # one read pass and no temporary: max|W| = max(-min W, max W), exactly
        top = _transform(torch.maximum(hi, -lo), transform)
    else:
        top = w.new_zeros(())
    return top.clamp_min(torch.finfo(w.dtype).eps) * ALPHA_FLOOR_RATIO


def alpha_grad_scale(numel: int, bits: int) -> float:
    """LSQ gradient scale :math:`1/\\sqrt{N_W Q_b}` for a scale shared by ``numel`` values."""
    return 1.0 / math.sqrt(max(numel, 1) * max(qmax(bits), 1))


def _prepare(
    x: Tensor, alpha: Tensor, bits: int, transform: str, grad_scale: float | None
) -> tuple[Tensor, Tensor, int]:
    q = qmax(bits)
    if grad_scale is not None:
        alpha = scale_grad(alpha, grad_scale)
    return torch.clamp(_transform(x, transform) / alpha, -1.0, 1.0) * q, alpha, q


def mint_kernel(x: Tensor, alpha: Tensor, q: int, tanh: bool, out: Tensor | None = None) -> Tensor:
    """The MINT forward pass without autograd: the ``int8`` codes of ``x`` and, into ``out``, the values.

    .. math::

        \\hat w = \\operatorname{round}\\big(\\operatorname{clip}(T(x)/\\alpha, -1, 1)\\, Q\\big), \\qquad
        x_q = \\hat w\\,\\alpha / Q.

    On the CPU it works through large tensors in cache-sized chunks, so the element-wise passes cost about one trip
    through memory. This and :func:`mint_kernel_vjp` are the quantizer's only arithmetic: the autograd node of
    :func:`mint_quantize` and the fused neuron scan both call them.

    Args:
        x: the tensor to quantize, any shape.
        alpha: the scale :math:`\\alpha` (a scalar tensor).
        q: the largest code :math:`Q \\ge 1`.
        tanh: apply :math:`T = \\tanh` first (else the identity).
        out: if given, a tensor the shape of ``x`` that receives :math:`x_q`.

    Returns:
        The codes, ``int8``, the shape of ``x`` (in the standard contiguous layout).
    """
    codes = torch.empty_like(x, dtype=torch.int8, memory_format=torch.contiguous_format)
    outs = _chunks(out) if out is not None else [None] * len(_chunks(codes))
    for xs, cs, os in zip(_chunks(x), _chunks(codes), outs, strict=True):
        # the ops of clamp(T(x) / alpha, -1, 1) * q, rounded, each in place on one chunk-sized temporary
        r = torch.tanh(xs).div_(alpha) if tanh else xs / alpha
        r.clamp_(-1.0, 1.0).mul_(q).round_()
        cs.copy_(r)
        if os is not None:
            torch.mul(r, alpha / q, out=os)
    return codes


def mint_kernel_vjp(
    grad: Tensor, x: Tensor, alpha: Tensor, codes: Tensor, q: int, tanh: bool, *, want_x: bool = True
) -> tuple[Tensor | None, Tensor]:
    r"""The MINT backward pass (straight through ``round`` only) for the forward of :func:`mint_kernel`.

    With :math:`u = T(x)/\alpha`, :math:`m = \mathbb 1[|u| \le 1]` and :math:`r = \hat w` (the codes):

    .. math::

        \frac{\partial L}{\partial x} = g\,m\,T'(x), \qquad
        \frac{\partial L}{\partial \alpha} = \sum g\,r/Q - \sum g\,m\,u,

    the second before the LSQ scale (see :func:`lsq_alpha_grad`). Source: MINT (Yin et al. 2024) and LSQ (Esser et al.
    2020), with ``clip`` and ``tanh`` keeping their true gradients.

    Args:
        grad: :math:`g = \partial L/\partial x_q`, the shape of ``x``.
        x, alpha, codes, q, tanh: the forward pass's input, scale, codes, largest code and transform.
        want_x: compute :math:`\partial L/\partial x` (else ``None`` is returned for it).

    Returns:
        ``(dL/dx or None, dL/dalpha)``: the first the shape of ``x``, the second a float64 scalar.
    """
    grad_x = torch.empty_like(x, memory_format=torch.contiguous_format) if want_x else None
    dot_r = torch.zeros((), dtype=torch.float64, device=x.device)
    dot_u = torch.zeros((), dtype=torch.float64, device=x.device)
    grad_chunks = _chunks(grad.contiguous())
    out_chunks = _chunks(grad_x) if grad_x is not None else [None] * len(grad_chunks)
    # |u| <= 1 as one fused op: clamp's pass-through test with the bounds moved one float outward, so that the
    # strict comparisons of hardtanh_backward include -1 and 1 exactly as |u| <= 1 does
    below, above = _outside_unit(x.dtype)
    for xs, gs, cs, gx in zip(_chunks(x), grad_chunks, _chunks(codes), out_chunks, strict=True):
        t = torch.tanh(xs) if tanh else xs
        u = t / alpha
        g_in = torch.ops.aten.hardtanh_backward(gs, u, below, above)  # g m
        if gx is not None:
            gx.copy_(torch.ops.aten.tanh_backward(g_in, t) if tanh else g_in)  # g m (1 - t^2), as tanh's autograd
        dot_r += torch.dot(gs, cs.to(gs.dtype))
        dot_u += torch.dot(g_in, u)
    return grad_x, dot_r / q - dot_u


def _outside_unit(dtype: torch.dtype) -> tuple[float, float]:
    """The floats of ``dtype`` next to -1 and 1 outward: :math:`-1 - \\epsilon_-` and :math:`1 + \\epsilon`."""
    one = torch.ones((), dtype=dtype)
    return float(torch.nextafter(-one, -2 * one)), float(torch.nextafter(one, 2 * one))


def lsq_alpha_grad(grad_alpha: Tensor, grad_scale: float | None, alpha: Tensor) -> Tensor:
    """:math:`\\partial L/\\partial\\alpha` times the LSQ scale (if any), in ``alpha``'s dtype and shape."""
    if grad_scale is not None:
        grad_alpha = grad_alpha * grad_scale
    return grad_alpha.to(alpha.dtype).reshape(alpha.shape)


class _MintQuantize(torch.autograd.Function):
    """The MINT quantizer as one autograd node over :func:`mint_kernel` and :func:`mint_kernel_vjp`: the same forward
    values as the composed ops of :func:`mint_quantize_reference`, and the same gradients. It saves only the ``int8``
    codes besides its inputs (the transform is recomputed in the backward pass)."""

    @staticmethod
    def forward(ctx, x: Tensor, alpha: Tensor, q: int, tanh: bool, grad_scale: float | None):
        out = torch.empty_like(x, memory_format=torch.contiguous_format)
        codes = mint_kernel(x, alpha, q, tanh, out)
        _MintQuantize.keep_for_backward(ctx, x, alpha, codes, q, tanh, grad_scale)
        return out, codes

    @staticmethod
    def keep_for_backward(ctx, x: Tensor, alpha: Tensor, codes: Tensor, q: int, tanh: bool, grad_scale) -> None:
        """What :meth:`backward` reads: the inputs, the codes (no gradient) and the grid options."""
        ctx.save_for_backward(x, alpha, codes)
        ctx.q, ctx.tanh, ctx.grad_scale = q, tanh, grad_scale
        ctx.mark_non_differentiable(codes)

    @staticmethod
    def backward(ctx, grad: Tensor, _codes_grad: Tensor | None):
        x, alpha, codes = ctx.saved_tensors
        grad_x, grad_alpha = mint_kernel_vjp(grad, x, alpha, codes, ctx.q, ctx.tanh, want_x=ctx.needs_input_grad[0])
        grad_alpha = lsq_alpha_grad(grad_alpha, ctx.grad_scale, alpha) if ctx.needs_input_grad[1] else None
        return grad_x, grad_alpha, None, None, None


_CHUNK = 1 << 18  # elements per chunk on the CPU: the element-wise passes of one chunk stay in cache


def _chunks(t: Tensor) -> list[Tensor]:
    """Flat views of ``t`` in cache-sized chunks on the CPU (one chunk on other devices, where kernels are fused)."""
    flat = t.view(-1) if t.is_contiguous() else t.reshape(-1)
    if t.device.type != "cpu" or flat.numel() <= _CHUNK:
        return [flat]
    return list(flat.split(_CHUNK))


def mint_quantize(
    x: Tensor,
    alpha: Tensor,
    bits: int,
    transform: Transform = "tanh",
    grad_scale: float | None = None,
) -> tuple[Tensor, Tensor]:
    """Fake-quantize ``x`` on the MINT grid and return ``(x_q, codes)``.

    Args:
        x: the tensor to quantize (weights or membrane potentials).
        alpha: the positive scale :math:`\\alpha` (a scalar tensor, usually a learnable parameter).
        bits: grid width ``b`` (1 to 8); the grid has :math:`2^b - 1` levels.
        transform: ``"tanh"`` (MINT) or ``"identity"`` applied before dividing by ``alpha``.
        grad_scale: if given, the gradient reaching ``alpha`` is multiplied by it (LSQ; see :func:`alpha_grad_scale`).

    Returns:
        ``x_q`` with the dtype of ``x``, equal to ``codes * alpha / Q_b`` and differentiable through the STE, and the
        integer ``codes`` in :math:`[-Q_b, Q_b]` as ``int8`` (no gradient).

    >>> xq, codes = mint_quantize(torch.tensor([-0.3, 0.02, 0.2]), torch.tensor(0.1), 2, "identity")
    >>> codes.tolist(), [round(v, 3) for v in xq.tolist()]
    ([-1, 0, 1], [-0.1, 0.0, 0.1])
    """
    q = qmax(bits)
    tanh = check_transform(transform) == "tanh"
    if q == 0:
        return torch.zeros_like(x), torch.zeros_like(x, dtype=torch.int8)
    return _MintQuantize.apply(x, alpha, q, tanh, grad_scale)


def mint_quantize_reference(
    x: Tensor,
    alpha: Tensor,
    bits: int,
    transform: Transform = "tanh",
    grad_scale: float | None = None,
) -> tuple[Tensor, Tensor]:
    """:func:`mint_quantize` composed from differentiable ops (round through :func:`round_ste`): the reference the
    fused autograd node is tested against."""
    scaled, alpha, q = _prepare(x, alpha, bits, transform, grad_scale)
    rounded = round_ste(scaled)
    codes = rounded.detach().to(torch.int8)
    if q == 0:
        return torch.zeros_like(x), codes
    return rounded * (alpha / q), codes


def mint_codes(x: Tensor, alpha: Tensor, bits: int, transform: Transform = "tanh") -> Tensor:
    """The integer codes of ``x`` on the MINT grid, as ``int8``, without building a graph."""
    with torch.no_grad():
        q = qmax(bits)
        if q == 0:
            return torch.zeros_like(x, dtype=torch.int8)
        return mint_kernel(x.detach(), alpha.detach(), q, check_transform(transform) == "tanh")
