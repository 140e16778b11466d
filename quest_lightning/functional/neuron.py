"""The IF/LIF neuron step with MINT membrane quantization, and its integer-only twin.

One step, for input current :math:`X_t` and carried state :math:`U_{t-1}` (zero at :math:`t = 0`):

.. math::

    H_t = \\lambda U_{t-1} + X_t, \\qquad S_t = \\Theta(H_t - \\theta),

    U_t = q\\big(H_t (1 - S_t)\\big) \\ \\text{(hard reset)} \\quad\\text{or}\\quad
    U_t = q\\big(H_t - \\theta_r S_t\\big) \\ \\text{(soft reset)},

where IF is :math:`\\lambda = 1`, :math:`\\theta_r = \\theta` unless given, and :math:`q` is the MINT quantizer with the
scale :math:`\\alpha` and grid of the layer feeding the neuron (the identity when membrane quantization is off). The
quantized post-reset state is what is carried to the next step, exactly as in MINT.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from quest_lightning.functional.grid import qmax
from quest_lightning.functional.quantize import check_transform, mint_quantize

Reset = Literal["hard", "soft", "none"]
RESETS: tuple[str, ...] = ("hard", "soft", "none")


def check_reset(reset: str) -> str:
    """Validate a reset mechanism name."""
    if reset not in RESETS:
        raise ValueError(f"reset={reset!r} is unknown: use 'hard' (to zero), 'soft' (subtract threshold) or 'none'.")
    return reset


@dataclass
class MembraneQuant:
    """MINT quantization of the membrane on a layer's grid: :math:`U_q = \\hat u\\,\\alpha/Q_{b_u}`.

    Attributes:
        alpha: the feeding layer's scale :math:`\\alpha` (shared, learnable).
        bits: membrane bit width :math:`b_u` (equal to the layer's :math:`b_w` for an integer-only deployment).
        transform: ``"tanh"`` or ``"identity"``, as for the weights.
        grad_scale: optional LSQ scale for the gradient that the membrane sends to ``alpha``.
    """

    alpha: Tensor
    bits: int
    transform: str = "tanh"
    grad_scale: float | None = None

    def __call__(self, u: Tensor) -> Tensor:
        return mint_quantize(u, self.alpha, self.bits, self.transform, self.grad_scale)[0]


def neuron_step(
    x: Tensor,
    u: Tensor | None,
    spike_fn: Callable[[Tensor], Tensor],
    *,
    decay: float = 1.0,
    threshold: float = 0.5,
    reset: Reset = "hard",
    detach_reset: bool = False,
    soft_reset_amount: float | None = None,
    quant: Callable[[Tensor], Tensor] | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Advance the neuron one step.

    Args:
        x: input current :math:`X_t` (any shape).
        u: carried state :math:`U_{t-1}`, or ``None`` for a zero state.
        spike_fn: the surrogate spike function, applied to :math:`H_t - \\theta`.
        decay: leak factor :math:`\\lambda` (1 for IF).
        threshold: firing threshold :math:`\\theta`.
        reset: ``"hard"``, ``"soft"`` or ``"none"``.
        detach_reset: stop the gradient through the reset term (snnTorch always does; SpikingJelly optionally).
        soft_reset_amount: what a soft reset subtracts, :math:`\\theta_r` (default :math:`\\theta`).
        quant: membrane quantizer applied to the post-reset state (see :class:`MembraneQuant`), or ``None``.

    Returns:
        ``(spikes, h, u_next)``: the spikes :math:`S_t`, the pre-reset membrane :math:`H_t` and the carried state
        :math:`U_t`.
    """
    if u is None:
        h = x
    else:
        h = u + x if decay == 1.0 else decay * u + x
    s = spike_fn(h - threshold)
    sr = s.detach() if detach_reset else s
    if reset == "hard":
        u_next = h * (1.0 - sr)
    elif reset == "soft":
        u_next = h - (threshold if soft_reset_amount is None else soft_reset_amount) * sr
    else:
        u_next = h
    if quant is not None:
        u_next = quant(u_next)
    return s, h, u_next


def neuron_scan(
    x_seq: Tensor,
    spike_fn: Callable[[Tensor], Tensor],
    u0: Tensor | None = None,
    *,
    return_membrane: Literal["none", "pre", "post"] = "none",
    fused: bool = True,
    **step_kwargs,
) -> tuple[Tensor, Tensor | None, Tensor]:
    r"""Run :func:`neuron_step` over the leading time axis of ``x_seq`` (shape ``[T, ...]``).

    With ``fused=True`` (the default) and no membranes or initial state asked for, the whole scan is one autograd
    node (:class:`FusedNeuronScan`): the same spikes, gradients equal to fp32 rounding, and only the pre-reset
    membrane and the spikes kept for the backward pass.

    Returns:
        ``(spikes [T, ...], membranes [T, ...] or None, final state)``; ``return_membrane`` picks the pre-reset
        :math:`H_t` (``"pre"``) or the carried :math:`U_t` (``"post"``). The fused scan returns no final state
        (``None``).
    """
    quant = step_kwargs.get("quant")
    if fused and u0 is None and return_membrane == "none" and (quant is None or isinstance(quant, MembraneQuant)):
        kw = {k: v for k, v in step_kwargs.items() if k != "quant"}
        spikes, u = fused_neuron_scan(x_seq, spike_fn, quant=quant, **kw)
        return spikes, None, u
    u = u0
    spikes, mems = [], []
    for x in x_seq.unbind(0):
        s, h, u = neuron_step(x, u, spike_fn, **step_kwargs)
        spikes.append(s)
        if return_membrane != "none":
            mems.append(h if return_membrane == "pre" else u)
    return torch.stack(spikes), (torch.stack(mems) if mems else None), u


def _reset(h: Tensor, s: Tensor, reset: str, amount: float) -> Tensor:
    if reset == "hard":
        return h * (1.0 - s)
    if reset == "soft":
        return h - amount * s
    return h


def _quantize_forward(u: Tensor, alpha: Tensor, q: int, tanh: bool) -> Tensor:
    t = torch.tanh(u) if tanh else u
    return torch.clamp(t / alpha, -1.0, 1.0).mul_(q).round_().mul_(alpha / q)


class FusedNeuronScan(torch.autograd.Function):
    r"""The neuron scan over ``T`` as one autograd node, with a hand-written backward pass through time.

    Forward: exactly the ops of :func:`neuron_step` at every step (so the spikes are bit-identical to the unfused
    scan). Backward, from :math:`t = T-1` down to 0, with :math:`\delta_t = \partial L / \partial U_t`:

    * membrane quantization (STE): :math:`\partial L/\partial U'_t = \delta_t\, m_t\, T'(U'_t)` and
      :math:`\partial L/\partial \alpha \mathrel{+}= \delta_t \cdot (\hat u_t / Q - m_t\, T(U'_t)/\alpha)`;
    * reset: hard :math:`U'_t = H_t(1 - S_t)`, soft :math:`U'_t = H_t - \theta_r S_t` (the spike path is cut when
      the reset is detached);
    * fire: :math:`\partial L/\partial H_t \mathrel{+}= (\partial L/\partial S_t)\, \sigma'(H_t - \theta)`, the
      surrogate derivative taken from the surrogate itself by autograd (any snnTorch or SpikingJelly surrogate);
    * charge: :math:`\partial L / \partial X_t = \partial L/\partial H_t`,
      :math:`\delta_{t-1} = \lambda\, \partial L/\partial H_t`.
    """

    @staticmethod
    def forward(ctx, x_seq, alpha, spike_fn, decay, threshold, reset, detach_reset, amount, q, tanh, grad_scale):
        u = None
        spikes, hs = [], []
        for x in x_seq.unbind(0):
            if u is None:
                h = x
            else:
                h = u + x if decay == 1.0 else decay * u + x
            s = spike_fn(h - threshold)
            u = _reset(h, s, reset, amount)
            if alpha is not None:
                u = _quantize_forward(u, alpha, q, tanh)
            spikes.append(s)
            hs.append(h)
        spikes = torch.stack(spikes)
        ctx.save_for_backward(torch.stack(hs), spikes, alpha)
        ctx.params = (spike_fn, decay, threshold, reset, detach_reset, amount, q, tanh, grad_scale)
        return spikes, u

    @staticmethod
    def backward(ctx, grad_spikes, grad_last):
        hs, spikes, alpha = ctx.saved_tensors
        spike_fn, decay, threshold, reset, detach_reset, amount, q, tanh, grad_scale = ctx.params
        grad_x = torch.empty_like(hs)
        grad_alpha = torch.zeros((), dtype=torch.float64, device=hs.device) if alpha is not None else None
        delta = grad_last  # dL/dU_t of the carried state, starting from the returned final state
        for t in range(hs.shape[0] - 1, -1, -1):
            h, s = hs[t], spikes[t]
            g_s = grad_spikes[t]
            g_h = torch.zeros_like(h)
            if delta is not None:
                g_u = delta
                if alpha is not None:
                    u_r = _reset(h, s, reset, amount)
                    tr = torch.tanh(u_r) if tanh else u_r
                    v = tr / alpha
                    g_in = delta * (v.abs() <= 1.0)
                    r = torch.clamp(v, -1.0, 1.0).mul_(q).round_()
                    grad_alpha += torch.dot(delta.flatten(), r.flatten()).double() / q
                    grad_alpha -= torch.dot(g_in.flatten(), v.flatten()).double()
                    g_u = g_in * (1.0 - tr * tr) if tanh else g_in
                if reset == "hard":
                    g_h = g_u * (1.0 - s)
                    if not detach_reset:
                        g_s = g_s - g_u * h
                elif reset == "soft":
                    g_h = g_u
                    if not detach_reset:
                        g_s = g_s - amount * g_u
                else:
                    g_h = g_u
            with torch.enable_grad():
                z = (h - threshold).detach().requires_grad_(True)
                (g_fire,) = torch.autograd.grad(spike_fn(z), z, grad_outputs=g_s)
            g_h = g_h + g_fire
            grad_x[t] = g_h
            delta = g_h if decay == 1.0 else decay * g_h
        if grad_alpha is not None:
            if grad_scale is not None:
                grad_alpha = grad_alpha * grad_scale
            grad_alpha = grad_alpha.to(alpha.dtype).reshape(alpha.shape)
        return grad_x, grad_alpha, None, None, None, None, None, None, None, None, None


def fused_neuron_scan(
    x_seq: Tensor,
    spike_fn: Callable[[Tensor], Tensor],
    *,
    decay: float = 1.0,
    threshold: float = 0.5,
    reset: Reset = "hard",
    detach_reset: bool = False,
    soft_reset_amount: float | None = None,
    quant: MembraneQuant | None = None,
) -> tuple[Tensor, Tensor]:
    """``(spikes [T, ...], final state)`` of a neuron scanned from a zero state, as one autograd node (see
    :class:`FusedNeuronScan`)."""
    amount = threshold if soft_reset_amount is None else soft_reset_amount
    if quant is None:
        alpha, q, tanh, scale = None, 0, False, None
    else:
        q = qmax(quant.bits)
        if q < 1:
            raise ValueError(f"membrane bits={quant.bits} has no non-zero level; use bits >= 2.")
        alpha, tanh, scale = quant.alpha, check_transform(quant.transform) == "tanh", quant.grad_scale
    return FusedNeuronScan.apply(x_seq, alpha, spike_fn, decay, threshold, reset, detach_reset, amount, q, tanh, scale)


# --------------------------------------------------------------------------------------------------------------------
# Integer-only inference
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IntegerNeuronProgram:
    """What an integer-only device needs to run a quantized IF neuron: integers and comparisons, no multiplier.

    With the weights and the membrane on one grid (step :math:`\\Delta = \\alpha/Q_b`), the pre-reset membrane is
    :math:`H_t = \\Delta\\,m_t` with the integer accumulator :math:`m_t = \\hat u_{t-1} + \\sum \\hat w\\, s`, so

    * the neuron fires when :math:`m_t \\ge \\theta_{int}`, with :math:`\\theta_{int} = \\lceil \\theta/\\Delta \\rceil`
      (or :math:`\\lfloor \\theta/\\Delta \\rfloor + 1` for a strict ``>`` convention);
    * the next state :math:`\\hat u_t` is the requantized post-reset accumulator. Requantization is monotone in
      :math:`m`, so it is stored as ``2 Q_b`` integer boundaries: :math:`\\hat u_t = -Q_b + \\#\\{k : m \\ge b_k\\}`.
      For ``transform="identity"`` this is a clamp to :math:`[-Q_b, Q_b]`.

    Attributes:
        bits: the shared bit width :math:`b`.
        threshold_int: :math:`\\theta_{int}`.
        reset: ``"hard"`` or ``"soft"``.
        bounds_no_spike: requantization boundaries applied when the neuron did not fire.
        bounds_spike: boundaries applied after a soft reset (unused for a hard reset, which goes to 0).
    """

    bits: int
    threshold_int: int
    reset: str
    bounds_no_spike: tuple[int, ...]
    bounds_spike: tuple[int, ...]


def _requant_bounds(alpha: float, q: int, transform: str, shift: float) -> tuple[int, ...]:
    """Smallest integer ``m`` with ``round(clip(T((m - shift) * alpha / q) / alpha, -1, 1) * q) >= k`` per level."""

    def level(m: int) -> int:
        v = (m - shift) * alpha / q
        t = math.tanh(v) if transform == "tanh" else v
        # float32 arithmetic, as the fake-quant path, so both sides round alike
        scaled = torch.clamp(torch.tensor(t, dtype=torch.float32) / torch.tensor(alpha, dtype=torch.float32), -1, 1)
        return int(torch.round(scaled * q).item())

    bounds = []
    for k in range(-q + 1, q + 1):
        lo, hi = -(1 << 40), 1 << 40
        if level(hi) < k:  # level k is never reached (tanh saturates below alpha)
            bounds.append(hi)
            continue
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if level(mid) >= k:
                hi = mid
            else:
                lo = mid
        bounds.append(hi)
    return tuple(bounds)


def integer_neuron_program(
    alpha: float,
    bits: int,
    *,
    threshold: float = 0.5,
    reset: Reset = "hard",
    transform: str = "tanh",
    fire_at_threshold: bool = True,
) -> IntegerNeuronProgram:
    """Compile a quantized IF neuron (weights and membrane sharing ``alpha`` and ``bits``) to integers."""
    q = qmax(bits)
    if q < 1:
        raise ValueError(f"bits={bits} has no non-zero level; integer-only inference needs bits >= 2.")
    check_transform(transform)
    if check_reset(reset) == "none":
        raise ValueError("reset='none' is not supported by the integer path; use 'hard' or 'soft'.")
    alpha = float(alpha)
    step = torch.tensor(alpha, dtype=torch.float32) / q
    ratio = float(torch.tensor(threshold, dtype=torch.float32) / step)
    theta_int = math.ceil(ratio) if fire_at_threshold else math.floor(ratio) + 1
    no_spike = _requant_bounds(alpha, q, transform, 0.0)
    spike = _requant_bounds(alpha, q, transform, ratio) if reset == "soft" else ()
    return IntegerNeuronProgram(bits, theta_int, reset, no_spike, spike)


def integer_neuron_scan(current_seq: Tensor, program: IntegerNeuronProgram) -> tuple[Tensor, Tensor]:
    """Run the integer-only IF neuron over ``current_seq`` (``[T, ...]`` integer input currents :math:`\\sum\\hat w s`).

    Uses additions and comparisons only. Returns ``(spikes [T, ...] as int8, final integer state)``.
    """
    if current_seq.is_floating_point():
        raise TypeError("integer_neuron_scan takes integer currents (sum of weight codes over input spikes).")
    q = qmax(program.bits)
    b0 = torch.tensor(program.bounds_no_spike, dtype=torch.int64, device=current_seq.device)
    b1 = torch.tensor(program.bounds_spike, dtype=torch.int64, device=current_seq.device)
    u = torch.zeros_like(current_seq[0], dtype=torch.int64)
    spikes = []
    for current in current_seq.unbind(0):
        m = u + current.to(torch.int64)
        s = m >= program.threshold_int
        u_rest = torch.bucketize(m, b0, right=True) - q
        if program.reset == "hard":
            u = torch.where(s, torch.zeros_like(m), u_rest)
        else:
            u = torch.where(s, torch.bucketize(m, b1, right=True) - q, u_rest)
        spikes.append(s.to(torch.int8))
    return torch.stack(spikes), u
