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

from quest_lightning.functional.quantize import check_transform, mint_quantize, qmax

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
    **step_kwargs,
) -> tuple[Tensor, Tensor | None, Tensor]:
    """Run :func:`neuron_step` over the leading time axis of ``x_seq`` (shape ``[T, ...]``).

    Returns:
        ``(spikes [T, ...], membranes [T, ...] or None, final state)``; ``return_membrane`` picks the pre-reset
        :math:`H_t` (``"pre"``) or the carried :math:`U_t` (``"post"``).
    """
    u = u0
    spikes, mems = [], []
    for x in x_seq.unbind(0):
        s, h, u = neuron_step(x, u, spike_fn, **step_kwargs)
        spikes.append(s)
        if return_membrane != "none":
            mems.append(h if return_membrane == "pre" else u)
    return torch.stack(spikes), (torch.stack(mems) if mems else None), u


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
