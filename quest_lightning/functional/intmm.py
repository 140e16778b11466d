r"""Exact integer products of 0/1 spikes with integer weight codes: the forward pass of a quantized layer whose input
is spikes, in ``int8 × int8 → int32`` arithmetic, scaled once by the grid step.

A quantized layer's weights are :math:`W_q = \hat w\,\Delta` with integer codes :math:`\hat w \in [-Q_b, Q_b]` and
the grid step :math:`\Delta = \alpha/Q_b` (a float32 number). When its input :math:`s` is 0/1 spikes, each output is

.. math::

    y_j = \Delta \sum_i \hat w_{ji}\, s_i = \Delta\, N_j, \qquad N_j \in \mathbb Z,

so the product is an integer sum :math:`N_j`, computed exactly by ``torch._int_mm`` (``int8`` operands, ``int32``
accumulator), and scaled once: :math:`y_j = \operatorname{fl}(N_j \Delta)`, the real value rounded once to float32.
A float32 matrix product of the same operands rounds every partial sum instead, so the two can differ in the last
bits; this path is the exact one, equal to the float64 product rounded to float32 (with :math:`|N_j| < 2^{24}`,
:math:`N_j` is a float32 number and :math:`N_j\Delta` needs at most 48 bits, so float64 holds it exactly).

A convolution becomes one integer matrix product per chunk of samples through an ``int8`` unfolded input (im2col).

Only the forward product is integer. The backward products take float gradients and stay float, exactly the
products the float layer's autograd takes (:math:`\partial L/\partial s = g\,W_q`, :math:`\partial L/\partial W_q =
g^\top s` for a linear layer; ``aten.convolution_backward`` for a convolution), so the straight-through gradients of
the quantizer (MINT, LSQ) are unchanged.

:func:`spikes_int8` gives the ``int8`` copy of a spike tensor and tells, exactly and without a host synchronisation,
whether it is 0/1; :func:`guarded_step` turns a failed test into NaN outputs. :func:`integer_products_supported` says
where the integer path runs: on the CPU, in float32, outside autocast.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor
from torch.utils._python_dispatch import is_in_torch_dispatch_mode

_INT_VIEW = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
_EXACT_SUM = 1 << 24
"""Integer sums below this are float32 numbers: the bound on :math:`Q_b \\cdot K` (codes × fan-in) for the path."""
_COLS_BYTES = 1 << 21
"""The size of one chunk of the unfolded ``int8`` input of a convolution (2 MB: it stays in cache; 1 to 2 MB measured
best, 4 to 16 MB up to a fifth slower)."""


def integer_products_supported(x: Tensor, weight: Tensor, qmax: int, fan_in: int) -> bool:
    """Whether the integer product can serve a layer with this input and weight.

    It needs ``torch._int_mm`` on the CPU (measured there; other devices keep the float product), float32 input and
    weight outside autocast (under autocast the float path computes in the autocast dtype),
    :math:`Q_b \\cdot K < 2^{24}` for a fan-in :math:`K`, so that every integer sum converts to float32 exactly, and
    no active Python dispatch or function mode, compilation or tracing: there the layer shows its tools the float
    ``mm``/``convolution`` they count and trace (SpikingJelly's op counters count synaptic operations on them).
    """
    return (
        hasattr(torch, "_int_mm")
        and x.device.type == "cpu"
        and weight.device.type == "cpu"
        and x.dtype == weight.dtype == torch.float32
        and not torch.is_autocast_enabled("cpu")
        and qmax * fan_in < _EXACT_SUM
        and not is_in_torch_dispatch_mode()
        and not torch._C._is_torch_function_mode_enabled()
        and not torch.compiler.is_compiling()
        and not torch.jit.is_tracing()
    )


def spikes_int8(x: Tensor) -> tuple[Tensor, Tensor]:
    """``x`` as ``int8``, and whether every element of ``x`` is exactly 0 or 1 (a boolean scalar tensor on the
    device): exact, with no host synchronisation.

    The test: :math:`\\min x \\ge 0` and :math:`\\max x \\le 1` (a NaN fails it), and, for values in
    :math:`[0, 1]`, the conversion to ``int8`` keeps 1 and truncates every other value to 0, so ``x`` is 0/1 exactly
    when it has as many elements with a non-zero bit pattern as the conversion has ones (a value in :math:`(0, 1)`,
    or ``-0.0``, is non-zero in its bits but 0 as an integer). Three read passes, no temporary.

    >>> xi, ok = spikes_int8(torch.tensor([0.0, 1.0, 1.0]))
    >>> xi.tolist(), bool(ok), bool(spikes_int8(torch.tensor([0.0, 0.5]))[1])
    ([0, 1, 1], True, False)
    """
    xi = x.to(torch.int8)
    if x.numel() == 0:
        return xi, torch.ones((), dtype=torch.bool, device=x.device)
    lo, hi = torch.aminmax(x)
    bits = x.view(_INT_VIEW[x.element_size()])
    same = torch.count_nonzero(bits) == torch.count_nonzero(xi)
    return xi, (lo >= 0) & (hi <= 1) & same


def guarded_step(step: Tensor, valid: Tensor) -> Tensor:
    """``step`` where ``valid``, NaN otherwise, on the device: an integer product of an input that was not 0/1 is
    poisoned (every output NaN) rather than silently wrong, with no host synchronisation."""
    return torch.where(valid, step, torch.full_like(step, float("nan")))


def _scaled(acc: Tensor, step: Tensor, out: Tensor | None = None) -> Tensor:
    """:math:`\\operatorname{fl}(N\\Delta)`: each int32 sum converts to float32 exactly and is multiplied once
    (correctly rounded)."""
    return torch.mul(acc, step) if out is None else torch.mul(acc, step, out=out)


class _SpikeLinear(torch.autograd.Function):
    """``F.linear(x, w, bias)`` for 0/1 ``x`` and ``w = codes * step``: integer forward, float backward."""

    @staticmethod
    def forward(ctx, x, xi, weight, codes, step, bias):
        out_features, in_features = codes.shape
        acc = torch._int_mm(xi.reshape(-1, in_features), codes.t())
        y = _scaled(acc, step)
        if bias is not None:
            y += bias
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return y.view(*x.shape[:-1], out_features)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        g = grad.reshape(-1, weight.shape[0])
        # the products of F.linear's autograd (mm's backward), so the gradients are the float layer's
        grad_x = g.mm(weight).view(x.shape) if ctx.needs_input_grad[0] else None
        grad_w = g.t().mm(x.reshape(-1, weight.shape[1])) if ctx.needs_input_grad[2] else None
        grad_b = g.sum(0) if ctx.has_bias and ctx.needs_input_grad[5] else None
        return grad_x, None, grad_w, None, None, grad_b


def spike_linear(x: Tensor, xi: Tensor, weight: Tensor, codes: Tensor, step: Tensor, bias: Tensor | None) -> Tensor:
    """``F.linear(x, weight, bias)`` for 0/1 spikes ``x``, exactly: :math:`\\operatorname{fl}(\\Delta\\, x\\,
    \\hat w^\\top)` (+ ``bias``).

    Args:
        x: the spikes ``[..., K]`` (float32, every element 0 or 1), kept for the backward pass.
        xi: ``x`` as ``int8`` (from :func:`spikes_int8`).
        weight: :math:`W_q`, ``[O, K]``, equal to ``codes * step`` element by element; it takes the gradient.
        codes: the integer codes :math:`\\hat w`, ``int8``, ``[O, K]``.
        step: the grid step :math:`\\Delta = \\alpha/Q_b`, a float32 scalar tensor (no gradient).
        bias: ``[O]`` or ``None``; added after the scaling.

    Returns:
        ``[..., O]``, float32. Its gradients are those of ``F.linear(x, weight, bias)``.
    """
    return _SpikeLinear.apply(x, xi, weight, codes, step, bias)


def conv_output_size(size: Sequence[int], kernel: Sequence[int], stride, padding, dilation) -> list[int]:
    """Spatial output size of a convolution, per dimension (as ``torch.nn.Conv*d`` documents it)."""
    return [
        (n + 2 * p - d * (k - 1) - 1) // s + 1
        for n, k, s, p, d in zip(size, kernel, stride, padding, dilation, strict=True)
    ]


def _integer_conv(xi: Tensor, codes: Tensor, step: Tensor, stride, padding, dilation) -> Tensor:
    """The convolution of ``int8`` spikes ``[N, C, *S]`` with ``int8`` codes ``[O, C, *k]``, scaled by ``step``:
    ``[N, O, *S_out]`` float32. Chunk by chunk of samples: the padded chunk in channels-last layout, its unfolded
    patches (``[rows, k·C]``, a copy through a strided view), one ``int8`` product, the scaling written into the
    output."""
    n_total, channels, *size = xi.shape
    out_channels, _, *kernel = codes.shape
    out_size = conv_output_size(size, kernel, stride, padding, dilation)
    rows, fan_in = math.prod(out_size), channels * math.prod(kernel)
    out = torch.empty(n_total, out_channels, *out_size, dtype=step.dtype, device=xi.device)
    if out.numel() == 0:
        return out
    codes_kc = codes.movedim(1, -1).reshape(out_channels, fan_in)  # [O, *k, C]: the patches' order
    chunk = max(1, _COLS_BYTES // max(rows * fan_in, 1))
    d = len(size)
    x_last = xi.movedim(1, -1)  # [N, *S, C]
    for n0 in range(0, n_total, chunk):
        part = x_last[n0 : n0 + chunk]
        n = part.shape[0]
        padded = part.new_zeros(n, *(s + 2 * p for s, p in zip(size, padding, strict=True)), channels)
        padded[(slice(None), *(slice(p, p + s) for s, p in zip(size, padding, strict=True)))] = part
        st = padded.stride()
        patches = padded.as_strided(
            (n, *out_size, *kernel, channels),
            (st[0], *(st[1 + i] * stride[i] for i in range(d)), *(st[1 + i] * dilation[i] for i in range(d)), 1),
        )
        # [O, k·C] @ [k·C, n·rows]: the accumulator is channel-major, so the scaled copy into the [n, O, *S_out]
        # output reads contiguous runs of a sample's positions
        acc = torch._int_mm(codes_kc, patches.reshape(n * rows, fan_in).t())
        _scaled(acc.view(out_channels, n, rows).transpose(0, 1), step, out=out[n0 : n0 + n].view(n, out_channels, rows))
    return out


class _SpikeConv(torch.autograd.Function):
    """``F.conv{1,2}d(x, w, bias, stride, padding, dilation)`` for 0/1 ``x`` and ``w = codes * step``: integer
    forward, float backward (``aten.convolution_backward``, as the float convolution's autograd)."""

    @staticmethod
    def forward(ctx, x, xi, weight, codes, step, bias, stride, padding, dilation):
        y = _integer_conv(xi, codes, step, stride, padding, dilation)
        if bias is not None:
            y += bias.view(-1, *([1] * (y.dim() - 2)))
        ctx.save_for_backward(x, weight)
        ctx.conv = (stride, padding, dilation)
        ctx.bias_sizes = None if bias is None else list(bias.shape)
        return y

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        stride, padding, dilation = ctx.conv
        need_x, need_w, need_b = ctx.needs_input_grad[0], ctx.needs_input_grad[2], ctx.needs_input_grad[5]
        grad_x, grad_w, grad_b = torch.ops.aten.convolution_backward(
            grad,
            x,
            weight,
            ctx.bias_sizes,
            list(stride),
            list(padding),
            list(dilation),
            False,
            [0] * len(stride),
            1,
            [need_x, need_w, need_b and ctx.bias_sizes is not None],
        )
        return grad_x, None, grad_w, None, None, grad_b, None, None, None


def spike_conv(
    x: Tensor,
    xi: Tensor,
    weight: Tensor,
    codes: Tensor,
    step: Tensor,
    bias: Tensor | None,
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
) -> Tensor:
    """A zero-padded, ungrouped convolution (1-D or 2-D) of 0/1 spikes ``x``, exactly:
    :math:`\\operatorname{fl}(\\Delta \\sum \\hat w\\, s)` (+ ``bias``) at every output position.

    Args:
        x: the spikes ``[N, C, *S]`` (float32, every element 0 or 1), kept for the backward pass.
        xi: ``x`` as ``int8`` (from :func:`spikes_int8`).
        weight: :math:`W_q`, ``[O, C, *k]``, equal to ``codes * step`` element by element; it takes the gradient.
        codes: the integer codes, ``int8``, the shape of ``weight``.
        step: the grid step :math:`\\Delta`, a float32 scalar tensor.
        bias: ``[O]`` or ``None``; added after the scaling.
        stride, padding, dilation: one int per spatial dimension (zero padding).

    Returns:
        ``[N, O, *S_out]`` float32 (contiguous). Its gradients are those of the float convolution.
    """
    return _SpikeConv.apply(x, xi, weight, codes, step, bias, tuple(stride), tuple(padding), tuple(dilation))
