"""The MINT quantizer: a symmetric, narrow-range integer grid with one learnable scale.

For ``b`` bits the grid has :math:`Q_b = 2^{b-1} - 1` positive levels and :math:`2^b - 1` levels in all:

.. math::

    \\hat w = \\operatorname{round}\\big(\\operatorname{clip}(T(W)/\\alpha, -1, 1)\\, Q_b\\big)
    \\in \\{-Q_b, \\dots, Q_b\\}, \\qquad W_q = \\hat w\\, \\alpha / Q_b,

where :math:`T` is ``tanh`` (MINT) or the identity. Gradients pass straight through ``round`` only; ``clip`` and
``tanh`` keep their true gradients, and :math:`\\alpha` receives the LSQ-like gradient
:math:`\\hat w/Q_b - (T(W)/\\alpha)\\,\\mathbb 1[|T(W)| < \\alpha]`, optionally scaled by
:math:`1/\\sqrt{N_W Q_b}`.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

from quest_lightning.functional.grid import qmax

Transform = Literal["tanh", "identity"]
TRANSFORMS: tuple[str, ...] = ("tanh", "identity")


def check_transform(transform: str) -> str:
    """Validate a pre-quantization transform name."""
    if transform not in TRANSFORMS:
        raise ValueError(f"transform={transform!r} is unknown: use one of {TRANSFORMS}.")
    return transform


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
    """MINT/LSQ initial scale :math:`\\alpha_0 = 2\\,\\overline{|W|} / \\sqrt{Q_b}` (a scalar tensor)."""
    q = max(qmax(bits), 1)
    alpha = 2.0 * weight.detach().abs().mean() / math.sqrt(q)
    return alpha.clamp_min(1e-8)


def alpha_grad_scale(numel: int, bits: int) -> float:
    """LSQ gradient scale :math:`1/\\sqrt{N_W Q_b}` for a scale shared by ``numel`` values."""
    return 1.0 / math.sqrt(max(numel, 1) * max(qmax(bits), 1))


def _prepare(
    x: Tensor, alpha: Tensor, bits: int, transform: str, grad_scale: float | None
) -> tuple[Tensor, Tensor, int]:
    q = qmax(bits)
    if grad_scale is not None:
        alpha = scale_grad(alpha, grad_scale)
    t = torch.tanh(x) if check_transform(transform) == "tanh" else x
    return torch.clamp(t / alpha, -1.0, 1.0) * q, alpha, q


class _MintQuantize(torch.autograd.Function):
    r"""The MINT quantizer as one autograd node: the same forward values as the composed ops, and the same gradients.

    It saves only the ``int8`` codes (the transform is recomputed in the backward pass), and on the CPU it works
    through large tensors in cache-sized chunks, so the element-wise passes cost about one trip through memory.

    With :math:`u = T(x)/\alpha`, :math:`m = \mathbb 1[|u| \le 1]` and :math:`r = \hat w`:
    :math:`\partial L/\partial x = g\,m\,T'(x)` and
    :math:`\partial L/\partial\alpha = s\,(\sum g\,r/Q - \sum g\,m\,u)` (``s`` the LSQ scale, or 1).
    """

    @staticmethod
    def forward(ctx, x: Tensor, alpha: Tensor, q: int, tanh: bool, grad_scale: float | None):
        out = torch.empty_like(x)
        codes = _quantize_chunks(x, alpha, q, tanh, out)
        ctx.save_for_backward(x, alpha, codes)
        ctx.q, ctx.tanh, ctx.grad_scale = q, tanh, grad_scale
        ctx.mark_non_differentiable(codes)
        return out, codes

    @staticmethod
    def backward(ctx, grad: Tensor, _codes_grad: Tensor | None):
        x, alpha, codes = ctx.saved_tensors
        want_x, want_alpha = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_x = torch.empty_like(x) if want_x else None
        dot_r = torch.zeros((), dtype=torch.float64, device=x.device)
        dot_u = torch.zeros((), dtype=torch.float64, device=x.device)
        grad_chunks = _chunks(grad.contiguous())
        out_chunks = _chunks(grad_x) if want_x else [None] * len(grad_chunks)
        for xs, gs, cs, gx in zip(_chunks(x), grad_chunks, _chunks(codes), out_chunks, strict=True):
            t = torch.tanh(xs) if ctx.tanh else xs
            u = t / alpha
            g_in = gs * (u.abs() <= 1.0)
            if gx is not None:
                torch.mul(g_in, 1.0 - t * t, out=gx) if ctx.tanh else gx.copy_(g_in)
            if want_alpha:
                dot_r += torch.dot(gs, cs.to(gs.dtype))
                dot_u += torch.dot(g_in, u)
        grad_alpha = None
        if want_alpha:
            grad_alpha = dot_r / ctx.q - dot_u
            if ctx.grad_scale is not None:
                grad_alpha = grad_alpha * ctx.grad_scale
            grad_alpha = grad_alpha.to(alpha.dtype).reshape(alpha.shape)
        return grad_x, grad_alpha, None, None, None


_CHUNK = 1 << 18  # elements per chunk on the CPU: the element-wise passes of one chunk stay in cache


def _quantize_chunks(x: Tensor, alpha: Tensor, q: int, tanh: bool, out: Tensor | None = None) -> Tensor:
    """``int8`` codes of ``x`` (and, into ``out``, the fake-quantized values), chunk by chunk."""
    codes = torch.empty_like(x, dtype=torch.int8)
    outs = _chunks(out) if out is not None else [None] * len(_chunks(codes))
    for xs, cs, os in zip(_chunks(x), _chunks(codes), outs, strict=True):
        t = torch.tanh(xs) if tanh else xs
        r = torch.clamp(t / alpha, -1.0, 1.0).mul_(q).round_()
        cs.copy_(r)
        if os is not None:
            torch.mul(r, alpha / q, out=os)
    return codes


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
        return _quantize_chunks(x.detach(), alpha.detach(), q, check_transform(transform) == "tanh")
