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
from dataclasses import dataclass, fields
from typing import Literal

import torch
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


def _positive_finite(name: str, value: object, meaning: str) -> float | Tensor:
    if isinstance(value, Tensor):
        return _floating_tensor(name, value)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name}={value!r} must be positive and finite: {meaning}.")
    return float(value)


def _floating_tensor(name: str, value: Tensor) -> Tensor:
    """A tensor-valued field (per-neuron or learnable): its values belong to the module that owns it."""
    if not value.is_floating_point():
        raise ValueError(f"{name} is a {value.dtype} tensor; a tensor-valued parameter must be floating point.")
    return value


@dataclass(frozen=True)
class NeuronParams:
    """Parameters of the IF/LIF step, in the style of Norse's parameter tuples; validated on construction.

    ``decay``, ``threshold`` and ``soft_reset_amount`` may also be floating-point tensors that broadcast against the
    membrane: per-neuron or learnable values (snnTorch's ``learn_beta``, SpikingJelly's ``ParametricLIFNode``). Their
    values belong to the module that owns them and are not checked here; a scan with tensor-valued parameters is
    composed under autograd so that they receive gradients.

    Attributes:
        decay: leak factor :math:`\\lambda \\in [0, 1]` per time step; 1 is an IF neuron, MINT's LIF uses 0.5.
        threshold: firing threshold :math:`\\theta > 0`, in the units of the input current.
        reset: ``"hard"`` (to zero), ``"soft"`` (subtract :math:`\\theta_r`) or ``"none"``.
        detach_reset: stop the gradient through the reset term (snnTorch always does; SpikingJelly optionally).
        soft_reset_amount: what a soft reset subtracts, :math:`\\theta_r > 0`; ``None`` means :math:`\\theta`.
        subtract_after_decay: snnTorch's order of a soft reset: :math:`\\theta_r` is subtracted from the next
            step's charge after the decay, :math:`H_{t+1} = \\lambda H_t + X_{t+1} - \\theta_r S_t`, which in the
            carried-state form is :math:`U_t = H_t - (\\theta_r/\\lambda) S_t`. ``False`` (QUEST, MINT, SpikingJelly)
            subtracts :math:`\\theta_r` from :math:`H_t` itself.

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
    subtract_after_decay: bool = False

    def __post_init__(self) -> None:
        decay = self.decay
        if isinstance(decay, Tensor):
            decay = _floating_tensor("decay", decay)
        elif isinstance(decay, bool) or not isinstance(decay, int | float) or not 0.0 <= decay <= 1.0:
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
        if self.subtract_after_decay and self.reset == "soft" and not isinstance(decay, Tensor) and decay == 0.0:
            raise ValueError("decay=0 with subtract_after_decay=True has no carried-state form (theta_r / decay).")
        object.__setattr__(self, "decay", decay if isinstance(decay, Tensor) else float(decay))
        object.__setattr__(self, "threshold", threshold)
        object.__setattr__(self, "detach_reset", bool(self.detach_reset))
        object.__setattr__(self, "soft_reset_amount", amount)
        object.__setattr__(self, "subtract_after_decay", bool(self.subtract_after_decay))

    @property
    def leaky(self) -> bool:
        """Whether the membrane decays between steps (:math:`\\lambda < 1`); a learnable decay counts as leaky."""
        decay = self.decay
        if isinstance(decay, Tensor):
            return decay.requires_grad or bool((decay.detach() < 1.0).any())
        return decay < 1.0

    @property
    def is_static(self) -> bool:
        """Whether every parameter is a plain number (no per-neuron or learnable tensor)."""
        return not any(isinstance(getattr(self, f.name), Tensor) for f in fields(self))

    @property
    def reset_amount(self) -> float | Tensor:
        """:math:`\\theta_r`: ``soft_reset_amount``, or the threshold when it is ``None``."""
        return self.threshold if self.soft_reset_amount is None else self.soft_reset_amount

    @property
    def post_reset_amount(self) -> float | Tensor:
        """What a soft reset subtracts from :math:`H_t` in the carried-state form :math:`U_t = H_t - \\theta' S_t`:
        :math:`\\theta_r`, or :math:`\\theta_r/\\lambda` with ``subtract_after_decay``."""
        return self.reset_amount / self.decay if self.subtract_after_decay else self.reset_amount


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


def charge(u: Tensor | None, x: Tensor, decay: float | Tensor) -> Tensor:
    """The pre-reset membrane :math:`H_t = \\lambda U_{t-1} + X_t` (``x`` itself from a zero state ``u=None``)."""
    if u is None:
        return x
    return u + x if not isinstance(decay, Tensor) and decay == 1.0 else decay * u + x


def reset_membrane(h: Tensor, s: Tensor, params: NeuronParams) -> Tensor:
    """The post-reset membrane before quantization: :math:`H_t(1 - S_t)` (hard), :math:`H_t - \\theta' S_t`
    (soft, :math:`\\theta'` = ``params.post_reset_amount``) or :math:`H_t` (none); :math:`S_t` is detached when
    ``params.detach_reset``."""
    sr = s.detach() if params.detach_reset else s
    if params.reset == "hard":
        return h * (1.0 - sr)
    if params.reset == "soft":
        return h - params.post_reset_amount * sr
    return h


def reset_membrane_vjp(g_u: Tensor, h: Tensor, s: Tensor, params: NeuronParams) -> tuple[Tensor, Tensor | None]:
    """The vector-Jacobian product of :func:`reset_membrane`: ``(dL/dH_t, dL/dS_t or None)`` for ``g_u = dL/dU'_t``.

    Hard: :math:`(g(1 - S_t), -g H_t)`; soft: :math:`(g, -\\theta' g)`; none: :math:`(g, 0)`. The spike term is
    ``None`` when the reset is detached or absent.
    """
    if params.reset == "hard":
        g_h = g_u * (1.0 - s)
        return g_h, (None if params.detach_reset else -(g_u * h))
    if params.reset == "soft":
        return g_u, (None if params.detach_reset else -(params.post_reset_amount * g_u))
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


def leaky_step(
    x: Tensor,
    mem: Tensor | None,
    spike_fn: SpikeFn,
    params: NeuronParams,
    quant: Callable[[Tensor], Tensor] | None = None,
    *,
    reset_delay: bool = True,
) -> tuple[Tensor, Tensor]:
    """One step of snnTorch's ``Leaky`` from the membrane it keeps, in its order of float operations.

    snnTorch keeps one membrane ``mem``. With ``reset_delay=True`` it is the pre-reset :math:`H_{t-1}`, and the
    reset of step :math:`t-1` is applied at step :math:`t` from :math:`R = \\operatorname{sg}(\\Theta(H_{t-1} -
    \\theta))` (``snntorch._neurons.leaky.Leaky.forward``):

    .. math::

        H_t = \\lambda H_{t-1} + X_t - R\\,\\theta_r \\ \\text{(subtract)}, \\qquad
        H_t = \\lambda \\big((1 - R) H_{t-1}\\big) + X_t \\ \\text{(zero)}, \\qquad S_t = \\Theta(H_t - \\theta),

    and ``mem`` becomes :math:`H_t`. With ``reset_delay=False`` the reset is applied at once, as snnTorch does
    (``mem = H_t - (S_t - R)\\,\\theta_r`` or ``H_t - (S_t - R) H_t``), and ``mem`` is that post-reset membrane. The
    operations are snnTorch's, in its order, so spikes, membranes and gradients equal ``snn.Leaky``'s bit for bit
    (a soft reset written as :math:`\\lambda(H - \\theta_r/\\lambda) + X` flips spikes at exact ties).

    With a membrane quantizer (MINT) the step follows :func:`neuron_step` instead, because MINT quantizes the
    post-reset state :math:`U = q(\\text{reset}(H))`, which must exist as a value: with ``reset_delay=True`` ``mem``
    still holds :math:`H_{t-1}` and :math:`U_{t-1}` is formed from it at step :math:`t`; otherwise ``mem`` is
    :math:`U_{t-1}` itself.

    Args:
        x: input current :math:`X_t`, any shape.
        mem: the membrane as snnTorch keeps it (the shape of ``x``), or ``None`` for zero.
        spike_fn: the surrogate spike function (snnTorch's fire on :math:`H - \\theta > 0`).
        params: ``decay`` :math:`\\lambda` (already clamped to [0, 1], as snnTorch clamps ``beta``), ``threshold``,
            ``reset``; a soft reset subtracts :math:`\\theta_r` after the decay when ``subtract_after_decay`` (snnTorch)
            and :math:`\\lambda\\theta_r` otherwise; ``detach_reset`` detaches :math:`R` (snnTorch always does).
        quant: membrane quantizer, or ``None`` for full precision.
        reset_delay: snnTorch's ``reset_delay``.

    Returns:
        ``(spikes, mem)``: :math:`S_t` and the membrane to keep (and to pass back on the next call).

    >>> from quest_lightning.functional.surrogate import get_surrogate
    >>> p, mem, out = NeuronParams(threshold=1.0, reset="soft", subtract_after_decay=True), None, []
    >>> for _ in range(4):
    ...     s, mem = leaky_step(torch.tensor([0.75]), mem, get_surrogate("snntorch.atan"), p)
    ...     out.append((s.item(), mem.item()))
    >>> out
    [(0.0, 0.75), (1.0, 1.5), (1.0, 1.25), (0.0, 1.0)]
    """
    theta, beta = params.threshold, params.decay
    if mem is None:
        mem = torch.zeros_like(x)
    r = spike_fn(mem - theta)
    r = r.detach() if params.detach_reset else r
    if quant is not None:
        if reset_delay:
            h = charge(quant(reset_membrane(mem, r, params)), x, beta)
            return spike_fn(h - theta), h
        h = charge(mem, x, beta)
        s = spike_fn(h - theta)
        return s, quant(reset_membrane(h, s, params))
    amount = params.reset_amount if params.subtract_after_decay else beta * params.reset_amount
    if params.reset == "soft":
        h = beta * mem + x - r * amount
    elif params.reset == "hard":
        h = beta * ((1 - r) * mem) + x
    else:
        h = beta * mem + x
    s = spike_fn(h - theta)
    if reset_delay or params.reset == "none":
        return s, h
    do_reset = s - r  # snnTorch's "avoid double reset"
    return s, (h - do_reset * amount if params.reset == "soft" else h - do_reset * h)
