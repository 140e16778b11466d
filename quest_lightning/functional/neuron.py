"""The IF/LIF neuron: its typed parameters :class:`NeuronParams` and the single step :func:`neuron_step`.

One step, for input current :math:`X_t` and carried state :math:`U_{t-1}` (zero at :math:`t = 0`):

.. math::

    H_t = \\lambda U_{t-1} + X_t, \\qquad S_t = \\Theta(H_t - \\theta),

    U_t = q\\big(H_t (1 - S_t)\\big) \\ \\text{(hard reset)} \\quad\\text{or}\\quad
    U_t = q\\big(H_t - \\theta_r S_t\\big) \\ \\text{(soft reset)},

where IF is :math:`\\lambda = 1`, :math:`\\theta_r = \\theta` unless given, and :math:`q` is the MINT quantizer with the
scale :math:`\\alpha` and grid of the layer feeding the neuron (the identity when membrane quantization is off). The
quantized post-reset state is what is carried to the next step, exactly as in MINT (Yin et al. 2024, eq. 6-8).

The charge, the reset and its vector-Jacobian product are written here once: :func:`neuron_step` composes them under
autograd, and the fused scan (:mod:`quest_lightning.functional.scan`) uses the same functions forward and backward.

>>> import torch
>>> from quest_lightning.functional.surrogate import get_surrogate
>>> p = NeuronParams(threshold=0.5, reset="soft")
>>> s, h, u = neuron_step(torch.tensor([0.75]), torch.tensor([0.25]), get_surrogate("triangle"), p)
>>> s.tolist(), h.tolist(), u.tolist()
([1.0], [1.0], [0.5])
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from torch import Tensor

from quest_lightning.functional.quantize import mint_quantize
from quest_lightning.functional.surrogate import SpikeFn

Reset = Literal["hard", "soft", "none"]
RESETS: tuple[str, ...] = ("hard", "soft", "none")


def check_reset(reset: str) -> str:
    """Validate a reset mechanism name.

    Raises:
        ValueError: ``reset`` is not ``"hard"``, ``"soft"`` or ``"none"``.
    """
    if reset not in RESETS:
        raise ValueError(f"reset={reset!r} is unknown: use 'hard' (to zero), 'soft' (subtract threshold) or 'none'.")
    return reset


def _positive_finite(name: str, value: object, meaning: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name}={value!r} must be positive and finite: {meaning}.")
    return float(value)


@dataclass(frozen=True)
class NeuronParams:
    """Parameters of the IF/LIF step, in the style of Norse's parameter tuples; validated on construction.

    Attributes:
        decay: leak factor :math:`\\lambda \\in [0, 1]` per time step; 1 is an IF neuron, MINT's LIF uses 0.5.
        threshold: firing threshold :math:`\\theta > 0`, in the units of the input current.
        reset: ``"hard"`` (to zero), ``"soft"`` (subtract :math:`\\theta_r`) or ``"none"``.
        detach_reset: stop the gradient through the reset term (snnTorch always does; SpikingJelly optionally).
        soft_reset_amount: what a soft reset subtracts, :math:`\\theta_r > 0`; ``None`` means :math:`\\theta`.

    Raises:
        ValueError: a NaN, infinite or non-positive ``threshold`` or ``soft_reset_amount``, a ``decay`` outside
            :math:`[0, 1]`, or an unknown ``reset``; the message names the field, the value and the fix.

    >>> NeuronParams(decay=0.5).leaky, NeuronParams(threshold=0.5, reset="soft").reset_amount
    (True, 0.5)
    """

    decay: float = 1.0
    threshold: float = 0.5
    reset: Reset = "hard"
    detach_reset: bool = False
    soft_reset_amount: float | None = None

    def __post_init__(self) -> None:
        decay = self.decay
        if isinstance(decay, bool) or not isinstance(decay, int | float) or not 0.0 <= decay <= 1.0:
            raise ValueError(
                f"decay={decay!r} (the leak factor lambda) must lie in [0, 1]: use 1 for an IF neuron and a value "
                "below 1 (MINT: 0.5) for a leaky one."
            )
        threshold = _positive_finite("threshold", self.threshold, "the firing threshold theta is compared with H_t")
        amount = self.soft_reset_amount
        if amount is not None:
            amount = _positive_finite(
                "soft_reset_amount", amount, "a soft reset subtracts it from H_t (None subtracts the threshold)"
            )
        check_reset(self.reset)
        object.__setattr__(self, "decay", float(decay))
        object.__setattr__(self, "threshold", threshold)
        object.__setattr__(self, "detach_reset", bool(self.detach_reset))
        object.__setattr__(self, "soft_reset_amount", amount)

    @property
    def leaky(self) -> bool:
        """Whether the membrane decays between steps (:math:`\\lambda < 1`)."""
        return self.decay < 1.0

    @property
    def reset_amount(self) -> float:
        """:math:`\\theta_r`: ``soft_reset_amount``, or the threshold when it is ``None``."""
        return self.threshold if self.soft_reset_amount is None else self.soft_reset_amount


IF_HARD = NeuronParams()
"""The default parameters: IF (:math:`\\lambda = 1`), :math:`\\theta = 0.5` (MINT's value), hard reset."""


@dataclass
class MembraneQuant:
    """MINT quantization of the membrane on a layer's grid: :math:`U_q = \\hat u\\,\\alpha/Q_{b_u}`.

    Attributes:
        alpha: the feeding layer's scale :math:`\\alpha` (shared, learnable; a scalar tensor).
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


def charge(u: Tensor | None, x: Tensor, decay: float) -> Tensor:
    """The pre-reset membrane :math:`H_t = \\lambda U_{t-1} + X_t` (``x`` itself from a zero state ``u=None``)."""
    if u is None:
        return x
    return u + x if decay == 1.0 else decay * u + x


def reset_membrane(h: Tensor, s: Tensor, params: NeuronParams) -> Tensor:
    """The post-reset membrane before quantization: :math:`H_t(1 - S_t)` (hard), :math:`H_t - \\theta_r S_t`
    (soft) or :math:`H_t` (none); :math:`S_t` is detached when ``params.detach_reset``."""
    sr = s.detach() if params.detach_reset else s
    if params.reset == "hard":
        return h * (1.0 - sr)
    if params.reset == "soft":
        return h - params.reset_amount * sr
    return h


def reset_membrane_vjp(g_u: Tensor, h: Tensor, s: Tensor, params: NeuronParams) -> tuple[Tensor, Tensor | None]:
    """The vector-Jacobian product of :func:`reset_membrane`: ``(dL/dH_t, dL/dS_t or None)`` for ``g_u = dL/dU'_t``.

    Hard: :math:`(g(1 - S_t), -g H_t)`; soft: :math:`(g, -\\theta_r g)`; none: :math:`(g, 0)`. The spike term is
    ``None`` when the reset is detached or absent.
    """
    if params.reset == "hard":
        g_h = g_u * (1.0 - s)
        return g_h, (None if params.detach_reset else -(g_u * h))
    if params.reset == "soft":
        return g_u, (None if params.detach_reset else -(params.reset_amount * g_u))
    return g_u, None


def neuron_step(
    x: Tensor,
    u: Tensor | None,
    spike_fn: SpikeFn,
    params: NeuronParams = IF_HARD,
    quant: Callable[[Tensor], Tensor] | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Advance the neuron one step.

    Args:
        x: input current :math:`X_t`, any shape.
        u: carried state :math:`U_{t-1}` (the shape of ``x``), or ``None`` for a zero state.
        spike_fn: the surrogate spike function, applied to :math:`H_t - \\theta`.
        params: the neuron's :class:`NeuronParams`.
        quant: membrane quantizer applied to the post-reset state (see :class:`MembraneQuant`), or ``None``.

    Returns:
        ``(spikes, h, u_next)``, each the shape of ``x``: the spikes :math:`S_t`, the pre-reset membrane :math:`H_t`
        and the carried state :math:`U_t`.
    """
    h = charge(u, x, params.decay)
    s = spike_fn(h - params.threshold)
    u_next = reset_membrane(h, s, params)
    if quant is not None:
        u_next = quant(u_next)
    return s, h, u_next
