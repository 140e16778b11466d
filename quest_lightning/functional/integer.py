"""Integer-only inference of a quantized IF neuron: compile it to integers (:func:`integer_neuron_program`) and run it
with additions and comparisons only (:func:`integer_neuron_scan`).

With the weights and the membrane on one grid (step :math:`\\Delta = \\alpha/Q_b`, the same :math:`\\alpha` and
:math:`b`), the pre-reset membrane is :math:`H_t = \\Delta\\,m_t` with the integer accumulator
:math:`m_t = \\hat u_{t-1} + \\sum \\hat w\\, s`. The float (fake-quant) path and this one give the same spikes, bit
for bit, away from float32 rounding ties.

>>> from quest_lightning.functional.neuron import NeuronParams
>>> program = integer_neuron_program(0.6, 3, NeuronParams(threshold=0.45, reset="soft"), transform="identity")
>>> program.threshold_int, program.bounds_no_spike
(3, (-2, -1, 0, 1, 2, 3))
>>> spikes, u = integer_neuron_scan(torch.tensor([[2], [0], [-5], [9]]), program)
>>> spikes.flatten().tolist(), u.tolist()
([0, 0, 0, 1], [3])
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from quest_lightning.functional.grid import level_code, level_codes, qmax
from quest_lightning.functional.neuron import IF_HARD, NeuronParams
from quest_lightning.functional.quantize import check_transform, mint_kernel


@dataclass(frozen=True)
class IntegerNeuronProgram:
    """What an integer-only device needs to run a quantized IF neuron: integers and comparisons, no multiplier.

    * the neuron fires when :math:`m_t \\ge \\theta_{int}`, with :math:`\\theta_{int} = \\lceil \\theta/\\Delta \\rceil`
      (or :math:`\\lfloor \\theta/\\Delta \\rfloor + 1` for a strict ``>`` convention);
    * the next state :math:`\\hat u_t` is the requantized post-reset accumulator. Requantization is monotone in
      :math:`m`, so it is stored as ``2 Q_b`` integer boundaries: :math:`\\hat u_t = -Q_b + \\#\\{k : m \\ge b_k\\}`.
      For ``transform="identity"`` this is a clamp to :math:`[-Q_b, Q_b]`. A soft reset shifts the accumulator by
      :math:`\\theta_r/\\Delta` before requantization.

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
    """Smallest integer ``m`` with ``round(clip(T((m - shift) * alpha / q) / alpha, -1, 1) * q) >= k`` per level,
    the level computed by the quantizer's own kernel in float32, as on the fake-quant path."""
    alpha32 = torch.tensor(alpha, dtype=torch.float32)
    tanh = transform == "tanh"

    def level(m: int) -> int:
        v = torch.tensor([(m - shift) * alpha / q], dtype=torch.float32)
        return int(mint_kernel(v, alpha32, q, tanh).item())

    bounds = []
    for k in level_codes(q)[1:]:  # level k is reached from m = b_k on
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
    params: NeuronParams = IF_HARD,
    *,
    transform: str = "tanh",
    fire_at_threshold: bool = True,
) -> IntegerNeuronProgram:
    """Compile a quantized IF neuron (weights and membrane sharing ``alpha`` and ``bits``) to integers.

    Args:
        alpha: the shared scale :math:`\\alpha` (a positive float).
        bits: the shared bit width :math:`b \\ge 2`.
        params: the neuron's parameters: IF (``decay=1``) with a hard or soft reset; ``threshold`` gives
            :math:`\\theta_{int}` and ``reset_amount`` the soft-reset shift.
        transform: the grid's pre-transform, ``"tanh"`` or ``"identity"``.
        fire_at_threshold: the surrogate fires at :math:`H_t = \\theta` (SpikingJelly) rather than above it
            (snnTorch); see :func:`~quest_lightning.functional.surrogate.fires_at_threshold`.

    Raises:
        ValueError: 1 bit (no non-zero level), ``reset="none"``, a leaky neuron (it needs a multiplier), or an
            unknown transform.
    """
    q = qmax(bits)
    if q < 1:
        raise ValueError(f"bits={bits} has no non-zero level; integer-only inference needs bits >= 2.")
    check_transform(transform)
    if params.reset == "none":
        raise ValueError("reset='none' is not supported by the integer path; use 'hard' or 'soft'.")
    if params.leaky:
        raise ValueError(
            f"decay={params.decay} is not supported by the integer path: a leak needs a multiplier; use an IF "
            "neuron (decay=1)."
        )
    alpha = float(alpha)
    step = torch.tensor(alpha, dtype=torch.float32) / q
    ratio = float(torch.tensor(params.threshold, dtype=torch.float32) / step)
    theta_int = math.ceil(ratio) if fire_at_threshold else math.floor(ratio) + 1
    no_spike = _requant_bounds(alpha, q, transform, 0.0)
    spike = ()
    if params.reset == "soft":
        shift = float(torch.tensor(params.reset_amount, dtype=torch.float32) / step)
        spike = _requant_bounds(alpha, q, transform, shift)
    return IntegerNeuronProgram(bits, theta_int, params.reset, no_spike, spike)


def integer_neuron_scan(current_seq: Tensor, program: IntegerNeuronProgram) -> tuple[Tensor, Tensor]:
    """Run the integer-only IF neuron over ``current_seq``, using additions and comparisons only.

    Args:
        current_seq: ``[T, ...]`` integer input currents :math:`\\sum\\hat w\\,s` (sums of weight codes over the
            input spikes).
        program: the compiled neuron.

    Returns:
        ``(spikes [T, ...] as int8, final integer state [...] as int64)``.

    Raises:
        TypeError: ``current_seq`` is a floating-point tensor.
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
        u_rest = level_code(torch.bucketize(m, b0, right=True), q)
        if program.reset == "hard":
            u = torch.where(s, torch.zeros_like(m), u_rest)
        else:
            u = torch.where(s, level_code(torch.bucketize(m, b1, right=True), q), u_rest)
        spikes.append(s.to(torch.int8))
    return torch.stack(spikes), u
