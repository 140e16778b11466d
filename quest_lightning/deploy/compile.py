r"""A neuron and the layer feeding it, compiled to integers, with the layer's bias folded into per-channel integers.

Without a bias this is the neuron's own :meth:`~quest_lightning.nn.neurons.base.QuantNeuron.integer_program`. A bias
:math:`b_c` (for example from folding BatchNorm) adds the same current at every step, so with the integer accumulator
:math:`m_t = \hat u_{t-1} + \sum \hat w\, s` the pre-reset membrane is :math:`H_t = \Delta m_t + b_c` and

.. math::

    S_t = [m_t \ge \theta_{int,c}], \qquad \theta_{int,c} = \Big\lceil \frac{\theta - b_c}{\Delta} \Big\rceil
    \quad (\text{or } \lfloor\cdot\rfloor + 1 \text{ for a strict } > \text{ convention}),

while requantization compares :math:`m_t` with boundaries shifted by :math:`b_c/\Delta` (and by
:math:`(\theta_r - b_c)/\Delta` after a soft reset). The bias becomes per-channel integers; inference stays
additions and comparisons. The boundaries are found, as in
:func:`~quest_lightning.functional.integer.integer_neuron_program`, by bisection on the quantizer's own float32
kernel, for all channels and levels at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from quest_lightning.functional.grid import level_codes, qmax
from quest_lightning.functional.quantize import mint_kernel
from quest_lightning.functional.surrogate import fires_at_threshold
from quest_lightning.nn.layers import QuantLayerMixin
from quest_lightning.nn.neurons.base import QuantNeuron

__all__ = ["ChannelPrograms", "compile_neuron", "requant_bounds"]

_FAR = 1 << 40  # beyond any accumulator: marks a level that is never reached


@dataclass(frozen=True)
class ChannelPrograms:
    """Integer-only programs of one neuron layer, per output channel (or one row for all channels).

    Attributes:
        bits: The shared bit width :math:`b`.
        reset: ``"hard"`` or ``"soft"``.
        fire_at_threshold: ``True``: fire at :math:`m \\ge \\theta_{int}` as computed; the integer comparison is
            always ``>=`` (a strict float convention is already in :math:`\\theta_{int}`).
        threshold_int: ``int64 [C]`` or ``[1]``: :math:`\\theta_{int,c}`.
        bounds_no_spike: ``int64 [C or 1, 2Q]``: the state after no spike is :math:`-Q + \\#\\{k: m \\ge b_k\\}`.
        bounds_spike: ``int64 [C or 1, 2Q]`` after a soft reset; ``[C or 1, 0]`` for a hard reset (to 0).
    """

    bits: int
    reset: str
    fire_at_threshold: bool
    threshold_int: Tensor
    bounds_no_spike: Tensor
    bounds_spike: Tensor

    @property
    def per_channel(self) -> bool:
        """Whether the programs differ per channel (a bias was folded in)."""
        return self.threshold_int.numel() > 1


def requant_bounds(alpha: float, bits: int, transform: str, shift: Tensor) -> Tensor:
    """For every shift (``[C]``, in grid units) the smallest integer :math:`m` whose requantized state
    ``round(clip(T((m - shift)·α/Q)/α, -1, 1)·Q)`` reaches each level :math:`k = -Q+1, \\dots, Q`.

    The level is computed by the quantizer's own float32 kernel
    (:func:`~quest_lightning.functional.quantize.mint_kernel`), exactly as the fake-quant model computes it.

    Returns:
        ``int64 [C, 2Q]``; a level that is never reached (``tanh`` saturating below :math:`\\alpha`) gets
        :math:`2^{40}`.
    """
    q = qmax(bits)
    alpha32 = torch.tensor(alpha, dtype=torch.float32)
    shift = shift.to(torch.float64).reshape(-1, 1)
    k = torch.tensor(list(level_codes(q))[1:], dtype=torch.int64)  # [2Q]
    tanh = transform == "tanh"

    def level(m: Tensor) -> Tensor:
        v = ((m.to(torch.float64) - shift) * alpha / q).to(torch.float32)
        return mint_kernel(v, alpha32, q, tanh).to(torch.int64)

    lo = torch.full((shift.shape[0], k.numel()), -_FAR, dtype=torch.int64)
    hi = torch.full_like(lo, _FAR)
    reached = level(hi) >= k
    while bool(((hi - lo) > 1).any()):
        mid = (lo + hi) // 2
        up = level(mid) >= k
        hi = torch.where(up, mid, hi)
        lo = torch.where(up, lo, mid)
    return torch.where(reached, hi, torch.full_like(hi, _FAR))


def compile_neuron(neuron: QuantNeuron, layer: QuantLayerMixin) -> ChannelPrograms:
    """Compile ``neuron`` (fed by the quantized ``layer`` whose scale it shares) to integer programs.

    Args:
        neuron: An IF neuron with a hard or soft reset whose membrane shares ``layer``'s scale and bits.
        layer: The quantized layer; its bias, if any, is folded into per-channel thresholds and boundaries.

    Raises:
        ValueError: What :meth:`~quest_lightning.nn.neurons.base.QuantNeuron.integer_program` refuses (no shared
            scale, other membrane bits, a leak, no reset).
    """
    program = neuron.integer_program()
    fire_eq = fires_at_threshold(neuron.spike_fn)
    if layer.bias is None:
        one = torch.tensor([program.threshold_int], dtype=torch.int64)
        spike = torch.tensor([program.bounds_spike], dtype=torch.int64).reshape(1, -1)
        return ChannelPrograms(
            program.bits,
            program.reset,
            fire_eq,
            one,
            torch.tensor([program.bounds_no_spike], dtype=torch.int64),
            spike,
        )
    q = qmax(layer.bits)
    alpha = float(layer.alpha.detach())
    step = torch.tensor(alpha, dtype=torch.float32) / q
    bias = layer.bias.detach().to(torch.float32).cpu()
    params = neuron.params
    ratios = ((torch.tensor(params.threshold, dtype=torch.float32) - bias) / step).tolist()
    theta = [math.ceil(r) if fire_eq else math.floor(r) + 1 for r in ratios]
    no_spike = requant_bounds(alpha, layer.bits, layer.transform, -(bias / step))
    if params.reset == "soft":
        shift = (torch.tensor(params.reset_amount, dtype=torch.float32) - bias) / step
        spike = requant_bounds(alpha, layer.bits, layer.transform, shift)
    else:
        spike = torch.zeros(bias.numel(), 0, dtype=torch.int64)
    return ChannelPrograms(layer.bits, params.reset, fire_eq, torch.tensor(theta, dtype=torch.int64), no_spike, spike)
