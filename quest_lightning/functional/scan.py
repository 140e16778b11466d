r"""The neuron scan over time: :func:`neuron_scan`, and its fused form, one autograd node with hand-written BPTT.

:func:`neuron_scan` runs :func:`~quest_lightning.functional.neuron.neuron_step` over the leading time axis. The fused
form (:class:`FusedNeuronScan`) runs the same ops forward, keeps only the pre-reset membranes, the spikes and the
membrane codes, and goes back through time by hand. Every formula it uses comes from the step's module
(:func:`~quest_lightning.functional.neuron.charge`, :func:`~quest_lightning.functional.neuron.reset_membrane` and its
VJP) and from the quantizer's kernels (:func:`~quest_lightning.functional.quantize.mint_kernel` and its VJP), so the
fused and the unfused scans cannot drift apart.

>>> from quest_lightning.functional.neuron import NeuronParams
>>> from quest_lightning.functional.surrogate import get_surrogate
>>> x = torch.tensor([0.25, 0.375, 0.125, 0.75])
>>> spikes, _, _ = neuron_scan(x, get_surrogate("triangle"), NeuronParams(threshold=0.5))
>>> spikes.tolist()
[0.0, 1.0, 0.0, 1.0]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor

from quest_lightning.functional.grid import qmax
from quest_lightning.functional.neuron import (
    IF_HARD,
    MembraneQuant,
    NeuronParams,
    charge,
    neuron_step,
    reset_membrane,
    reset_membrane_vjp,
)
from quest_lightning.functional.quantize import check_transform, lsq_alpha_grad, mint_kernel, mint_kernel_vjp
from quest_lightning.functional.surrogate import SpikeFn


def neuron_scan(
    x_seq: Tensor,
    spike_fn: SpikeFn,
    params: NeuronParams = IF_HARD,
    quant: Callable[[Tensor], Tensor] | None = None,
    *,
    u0: Tensor | None = None,
    return_membrane: Literal["none", "pre", "post"] = "none",
    fused: bool = True,
) -> tuple[Tensor, Tensor | None, Tensor]:
    """Run :func:`~quest_lightning.functional.neuron.neuron_step` over the leading time axis of ``x_seq``.

    With ``fused=True`` (the default), no initial state and no membranes asked for, plain-number parameters
    (:attr:`~quest_lightning.functional.neuron.NeuronParams.is_static`), and ``quant`` ``None`` or a
    :class:`~quest_lightning.functional.neuron.MembraneQuant`, the whole scan is one autograd node
    (:class:`FusedNeuronScan`): the same spikes, gradients equal to fp32 rounding, and less memory kept for the
    backward pass. Otherwise the steps are composed under autograd.

    Args:
        x_seq: input currents ``[T, ...]``.
        spike_fn: the surrogate spike function.
        params: the neuron's parameters.
        quant: the membrane quantizer, or ``None``.
        u0: the carried state before the first step (the shape of ``x_seq[0]``), or ``None`` for zero.
        return_membrane: ``"pre"`` returns the pre-reset :math:`H_t`, ``"post"`` the carried :math:`U_t`.
        fused: allow the fused scan.

    Returns:
        ``(spikes [T, ...], membranes [T, ...] or None, final state [...])``.
    """
    fusable = u0 is None and return_membrane == "none" and params.is_static
    if fused and fusable and (quant is None or isinstance(quant, MembraneQuant)):
        spikes, u = fused_neuron_scan(x_seq, spike_fn, params, quant)
        return spikes, None, u
    u = u0
    spikes, mems = [], []
    for x in x_seq.unbind(0):
        s, h, u = neuron_step(x, u, spike_fn, params, quant)
        spikes.append(s)
        if return_membrane != "none":
            mems.append(h if return_membrane == "pre" else u)
    return torch.stack(spikes), (torch.stack(mems) if mems else None), u


def _surrogate_vjp(spike_fn: SpikeFn, z: Tensor, grad: Tensor) -> Tensor:
    """:math:`g\\,\\sigma'(z)`, the surrogate's derivative taken from the surrogate itself by autograd."""
    with torch.enable_grad():
        z = z.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(spike_fn(z), z, grad_outputs=grad)
    return g


class FusedNeuronScan(torch.autograd.Function):
    r"""The neuron scan over ``T`` as one autograd node, with a hand-written backward pass through time.

    Forward: exactly the ops of :func:`~quest_lightning.functional.neuron.neuron_step` at every step (so the spikes
    are bit-identical to the unfused scan). Backward, from :math:`t = T-1` down to 0, with
    :math:`\delta_t = \partial L / \partial U_t`:

    * membrane quantization (STE): :func:`~quest_lightning.functional.quantize.mint_kernel_vjp` gives
      :math:`\partial L/\partial U'_t` and the step's share of :math:`\partial L/\partial \alpha`;
    * reset: :func:`~quest_lightning.functional.neuron.reset_membrane_vjp` (hard :math:`U'_t = H_t(1 - S_t)`, soft
      :math:`U'_t = H_t - \theta_r S_t`; the spike path is cut when the reset is detached);
    * fire: :math:`\partial L/\partial H_t \mathrel{+}= (\partial L/\partial S_t)\, \sigma'(H_t - \theta)`, the
      surrogate derivative taken from the surrogate itself by autograd (any snnTorch or SpikingJelly surrogate);
    * charge: :math:`\partial L / \partial X_t = \partial L/\partial H_t`,
      :math:`\delta_{t-1} = \lambda\, \partial L/\partial H_t`.
    """

    @staticmethod
    def forward(ctx, x_seq, alpha, spike_fn, params, q, tanh, grad_scale):
        u = None
        spikes, hs, codes = [], [], []
        for x in x_seq.unbind(0):
            h = charge(u, x, params.decay)
            s = spike_fn(h - params.threshold)
            u = reset_membrane(h, s, params)
            if alpha is not None:
                u_r, u = u, torch.empty_like(u, memory_format=torch.contiguous_format)
                codes.append(mint_kernel(u_r, alpha, q, tanh, u))
            spikes.append(s)
            hs.append(h)
        spikes = torch.stack(spikes)
        ctx.save_for_backward(torch.stack(hs), spikes, alpha, torch.stack(codes) if codes else None)
        ctx.params, ctx.spike_fn, ctx.q, ctx.tanh, ctx.grad_scale = params, spike_fn, q, tanh, grad_scale
        return spikes, u

    @staticmethod
    def backward(ctx, grad_spikes, grad_last):
        hs, spikes, alpha, codes = ctx.saved_tensors
        params = ctx.params
        grad_x = torch.empty_like(hs)
        grad_alpha = torch.zeros((), dtype=torch.float64, device=hs.device)
        delta = grad_last  # dL/dU_t of the carried state, starting from the returned final state
        for t in range(hs.shape[0] - 1, -1, -1):
            h, s = hs[t], spikes[t]
            g_s, g_h = grad_spikes[t], torch.zeros_like(h)
            if delta is not None:
                g_u = delta
                if alpha is not None:
                    u_r = reset_membrane(h, s, params)
                    g_u, g_alpha = mint_kernel_vjp(delta, u_r, alpha, codes[t], ctx.q, ctx.tanh)
                    grad_alpha += g_alpha
                g_h, g_s_reset = reset_membrane_vjp(g_u, h, s, params)
                if g_s_reset is not None:
                    g_s = g_s + g_s_reset
            g_h = g_h + _surrogate_vjp(ctx.spike_fn, h - params.threshold, g_s)
            grad_x[t] = g_h
            delta = g_h if params.decay == 1.0 else params.decay * g_h
        grad_alpha = lsq_alpha_grad(grad_alpha, ctx.grad_scale, alpha) if alpha is not None else None
        return grad_x, grad_alpha, None, None, None, None, None


def fused_neuron_scan(
    x_seq: Tensor,
    spike_fn: SpikeFn,
    params: NeuronParams = IF_HARD,
    quant: MembraneQuant | None = None,
) -> tuple[Tensor, Tensor]:
    """``(spikes [T, ...], final state [...])`` of a neuron scanned from a zero state, as one autograd node (see
    :class:`FusedNeuronScan`).

    Raises:
        ValueError: ``quant`` has 1 bit (a grid with no non-zero level).
    """
    if quant is None:
        return FusedNeuronScan.apply(x_seq, None, spike_fn, params, 0, False, None)
    q = qmax(quant.bits)
    if q < 1:
        raise ValueError(f"membrane bits={quant.bits} has no non-zero level; use bits >= 2.")
    tanh = check_transform(quant.transform) == "tanh"
    return FusedNeuronScan.apply(x_seq, quant.alpha, spike_fn, params, q, tanh, quant.grad_scale)
