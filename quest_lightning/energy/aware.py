r"""Energy-aware training: one knob per device cost, both off by default.

**Writes** (``write_margin``). Every code change between optimizer steps is a device write. The quantized layers get
a hysteresis quantizer (:mod:`quest_lightning.functional.hysteresis`): a code moves from the held level :math:`i` to
the nearest level :math:`j` only when the continuous code :math:`u` is past the midpoint by more than
:math:`h_{ij}` grid steps. With ``write_weighted`` the margin follows the R-S pattern's write energy,

.. math::

    h_{ij} = h \, \frac{E_w^p[i, j]}{\max_{|k - l| = 1} E_w^p[k, l]},

so an expensive transition needs a larger push than a cheap one (:func:`write_margins`); otherwise
:math:`h_{ij} = h`. A margin of half a grid step or more would make a move impossible (the continuous code can get
at most one step past the midpoint of its neighbour): :math:`h < 0.5`.

**Reads** (``read_weight``). A differentiable estimate of the device read energy per sample, the quantity the AOR
meter counts weighted by each level's read energy, is added to the loss:

.. math::

    R = \frac{\sum_l \sum_x n_l(x) \sum_{k \to x} \rho(W_k)}{\sum_l \mathrm{MACs}_l}, \qquad
    \rho(W_k) = c[\hat w_k] \ \text{(forward)}, \quad
    \frac{\partial \rho}{\partial u_k} = c[\lfloor u_k \rfloor + 1] - c[\lfloor u_k \rfloor] \ \text{(backward)},

with :math:`n_l(x)` the input spikes of layer :math:`l` at position :math:`x` per sample (summed over :math:`T`),
:math:`k \to x` the weights that meet :math:`x`, :math:`c[v] = E_r^p[v] / \operatorname{mean}_{v \ne 0} E_r^p[v]`
the pattern's read energy per level relative to its mean (:math:`c[0] = 0`: a zero weight is not read; with
``read_weighted=False`` every non-zero level costs 1, and :math:`R` is the network's AOR) and :math:`\mathrm{MACs}_l`
the layer's ANN-equivalent operations × :math:`T`. In the forward pass :math:`R` equals the counted read energy over
:math:`\bar c \cdot \sum_l \mathrm{MACs}_l`; its gradient reaches the spikes (through the surrogate) and the
latent weights (through the piecewise-linear interpolation of :math:`c` between levels, straight through the
rounding as in MINT). The loss gains :math:`\lambda_r R` (:attr:`EnergyAwareKnobs.read_weight` is
:math:`\lambda_r`). The spike side is activity regularisation (as in e.g. Zenke & Vogels 2021, Neural Computation
33(4)); counting it per weight level and device pattern is QUEST's read accounting (METHOD.md §7) made
differentiable.

:class:`EnergyAware` applies both to any model built from quest-lightning layers; the Lightning callback
:class:`~quest_lightning.lightning.callbacks.energy_aware.EnergyAwareTraining` and ``QuestModule`` use it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from quest_lightning.devices import DeviceSpec, pattern_energies, resolve_device
from quest_lightning.devices.patterns import PatternEnergies
from quest_lightning.functional.hysteresis import Margin, check_margin
from quest_lightning.nn.inspect import quantized_layers, require_quantized_layers
from quest_lightning.nn.layers import QuantLayerMixin

__all__ = [
    "EnergyAware",
    "EnergyAwareKnobs",
    "choose_pattern",
    "read_level_costs",
    "set_hysteresis",
    "weight_read_cost",
    "write_margins",
]

PatternChoice = Literal["best"] | int | tuple[int, ...]


def set_hysteresis(layer: QuantLayerMixin, margin: Margin | None) -> None:
    """Turn the write-aware hysteresis of a quantized layer on (``margin``) or off (``None``).

    On, the layer keeps the codes of its last pass in a ``held_codes`` buffer (saved in checkpoints; turn the
    hysteresis on before loading one), starting from its present MINT codes. Off, the buffer is removed and the layer
    is exactly the plain MINT layer again.

    Raises:
        TypeError: ``layer`` is not a quantized layer.
        ValueError: a bad margin (see :func:`~quest_lightning.functional.hysteresis.check_margin`).
    """
    if not isinstance(layer, QuantLayerMixin):
        raise TypeError(f"set_hysteresis expects a QuantConv2d/QuantLinear, got {type(layer).__name__}.")
    if margin is None:
        layer.hysteresis = None
        layer._buffers.pop("held_codes", None)
        return
    margin = check_margin(margin, layer.num_levels)
    if isinstance(margin, Tensor):
        margin = margin.to(layer.weight.device)
    if "held_codes" not in layer._buffers:
        layer.hysteresis = None  # the held codes start from the plain MINT codes
        layer.register_buffer("held_codes", layer.current_codes(), persistent=True)
    layer.hysteresis = margin


def write_margins(write_j: Tensor, margin: float) -> Tensor:
    """The write-aware margin table (grid steps, float64 ``[L, L]``):

    .. math::

        h_{ij} = \\min\\Big(h\\,\\frac{E_w^p[i, j]}{\\max_{|k-l|=1} E_w^p[k, l]},\\ 0.95\\,\\frac{|i-j|}{2}\\Big),

    so the most expensive move between neighbouring levels gets :math:`h` and the others less, in proportion to
    their write energy; the cap keeps every move possible (:func:`~quest_lightning.functional.hysteresis.check_margin`).

    Args:
        write_j: :math:`E_w^p`, one pattern's ``[L, L]`` write energies in joules.
        margin: :math:`h < 0.5`, the margin of the most expensive neighbouring move.

    Raises:
        ValueError: ``write_j`` is not ``[L, L]`` with ``L >= 2``, holds a negative or non-finite energy, or its
            neighbouring transitions all cost nothing; or a bad ``margin``.
    """
    e = torch.as_tensor(write_j, dtype=torch.float64)
    if e.dim() != 2 or e.shape[0] != e.shape[1] or e.shape[0] < 2:
        raise ValueError(f"write_j must be one pattern's [L, L] write energies, got shape {tuple(e.shape)}.")
    off = ~torch.eye(e.shape[0], dtype=torch.bool)
    if not bool(torch.isfinite(e[off]).all()) or bool((e < 0).any()):
        raise ValueError("write_j must hold finite energies >= 0 (every transition of the pattern reachable).")
    i, j = torch.meshgrid(torch.arange(e.shape[0]), torch.arange(e.shape[0]), indexing="ij")
    top = e[(i - j).abs() == 1].max()
    if not top > 0:
        raise ValueError("the pattern's transitions between neighbouring levels cost nothing: nothing to weight by.")
    table = float(check_margin(margin)) * e / top
    return check_margin(torch.minimum(table, 0.95 * (i - j).abs().to(torch.float64) / 2))


def read_level_costs(read_j: Tensor | None, levels: int, *, count_zero_level_reads: bool = False) -> Tensor:
    """:math:`c[v]`, each level's read cost relative to the mean over the non-zero levels (float64 ``[L]``).

    ``read_j`` is one pattern's ``[L]`` read energies (joules), or ``None`` for the unweighted count (every non-zero
    level costs 1: the AOR). The zero level costs 0 unless ``count_zero_level_reads``.

    Raises:
        ValueError: ``read_j`` does not have ``levels`` entries, or holds a negative or non-finite energy.
    """
    costs = torch.ones(levels, dtype=torch.float64) if read_j is None else torch.as_tensor(read_j, dtype=torch.float64)
    if costs.shape != (levels,) or not bool(torch.isfinite(costs).all()) or bool((costs < 0).any()):
        raise ValueError(f"read_j must hold {levels} finite read energies >= 0, got {costs.tolist()}.")
    costs = costs.clone()
    zero = (levels - 1) // 2
    nonzero = torch.cat([costs[:zero], costs[zero + 1 :]])
    if nonzero.numel() and nonzero.mean() > 0:
        costs = costs / nonzero.mean()
    if not count_zero_level_reads:
        costs[zero] = 0.0
    return costs


def weight_read_cost(layer: QuantLayerMixin, costs: Tensor) -> Tensor:
    """:math:`\\rho(W)`, shaped like the weight: the read cost :math:`c[\\hat w]` of each weight's code in its last
    forward pass, with the gradient of the piecewise-linear interpolation of :math:`c` at the continuous code
    :math:`u = \\operatorname{clip}(T(W)/\\alpha, -1, 1)\\,Q` (:math:`\\alpha` detached)."""
    q = layer.qmax
    c = costs.to(device=layer.weight.device, dtype=layer.weight.dtype)
    t = torch.tanh(layer.weight) if layer.transform == "tanh" else layer.weight
    u = torch.clamp(t / layer.alpha.detach(), -1.0, 1.0) * q
    low = torch.floor(u.detach()).clamp(-q, q - 1).long()
    c_low, c_high = c[low + q], c[low + q + 1]
    interp = c_low + (c_high - c_low) * (u - low)
    exact = c[layer.codes.long() + q]
    return exact + (interp - interp.detach())


def _synaptic_sum(layer: nn.Module, counts: Tensor, weight: Tensor) -> Tensor:
    """:math:`\\sum_x n(x) \\sum_{k \\to x} \\rho_k`: the layer's own map on one "sample" of input counts, summed."""
    if isinstance(layer, nn.modules.conv._ConvNd):
        return layer._conv_forward(counts, weight, None).sum()
    return F.linear(counts, weight).sum()


def choose_pattern(energies: PatternEnergies, pattern: PatternChoice = "best", *, by: str = "write") -> int:
    """The index of the pattern the knobs weigh by: an index, a mapping (one device state per level), or ``"best"``
    (lowest index on ties):

    * ``by="write"``: the lowest total write energy between neighbouring levels, :math:`\\sum_{|i-j|=1} E_w^p[i,j]`;
    * ``by="read"``: the lowest read energy of the non-zero levels, :math:`\\sum_{v \\ne 0} E_r^p[v]`;
    * ``by="both"`` (both knobs on): as ``"write"``, among the patterns where moving into the zero level costs less
      than moving out of it, :math:`\\sum_{i} E_w^p[i, 0] < \\sum_{j} E_w^p[0, j]` over the neighbours of 0 (all
      patterns when none does). The read knob drives weights to zero; with such a pattern those moves are cheap
      writes, and the weighted hysteresis holds zeros instead of resisting them.

    Raises:
        ValueError: an index out of range, a mapping that is not a pattern, or an unknown ``by``.
    """
    if by not in ("write", "read", "both"):
        raise ValueError(f"by={by!r} is unknown: use 'write', 'read' or 'both'.")
    count = len(energies.patterns)
    if isinstance(pattern, str):
        if pattern != "best":
            raise ValueError(f"pattern={pattern!r} is unknown: use 'best', an index or a mapping of device states.")
        levels = energies.read_j.shape[-1]
        zero = (levels - 1) // 2
        if by == "read":
            return int(torch.argmin(energies.read_j.sum(-1) - energies.read_j[:, zero]))
        i, j = torch.meshgrid(torch.arange(levels), torch.arange(levels), indexing="ij")
        score = energies.write_j[:, (i - j).abs() == 1].sum(-1)
        if by == "both":
            near = [v for v in (zero - 1, zero + 1) if 0 <= v < levels]
            into, out = energies.write_j[:, near, zero].sum(-1), energies.write_j[:, zero, near].sum(-1)
            if bool((into < out).any()):
                score = torch.where(into < out, score, torch.full_like(score, math.inf))
        return int(torch.argmin(score))
    if isinstance(pattern, int) and not isinstance(pattern, bool):
        if not 0 <= pattern < count:
            raise ValueError(f"pattern={pattern} is out of range: this device and bit width have {count} patterns.")
        return pattern
    return energies.patterns.index_of(tuple(pattern))


@dataclass(frozen=True)
class EnergyAwareKnobs:
    """The knobs of energy-aware training (all off by default).

    Attributes:
        write_margin: :math:`h`, the hysteresis margin in grid steps, in ``[0, 0.5)`` (0: off); weighted, the margin
            of the most expensive neighbouring move.
        write_weighted: scale the margin per transition by the pattern's write energy (:func:`write_margins`).
        read_weight: :math:`\\lambda_r`, the weight of the read penalty :math:`R` in the loss (0: off).
        read_weighted: weight each level by the pattern's read energy (else every non-zero weight costs 1: AOR).
        pattern: the R-S pattern the weighting uses: ``"best"`` (see :func:`choose_pattern`: by write energy for
            the write knob, by read energy for the read knob, ``by="both"`` for both), an index or a mapping.
        count_zero_level_reads: charge zero weights as reads in the penalty too.

    Raises:
        ValueError: a negative or non-finite knob, or a bad ``pattern``.
    """

    write_margin: float = 0.0
    write_weighted: bool = True
    read_weight: float = 0.0
    read_weighted: bool = True
    pattern: PatternChoice = "best"
    count_zero_level_reads: bool = False

    def __post_init__(self) -> None:
        for name in ("write_margin", "read_weight"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"{name}={v!r} is invalid: expected a number >= 0 (0 turns the knob off).")
        check_margin(self.write_margin)
        p = self.pattern
        if isinstance(p, list):
            object.__setattr__(self, "pattern", tuple(p))
        elif not (p == "best" or (isinstance(p, int) and not isinstance(p, bool) and p >= 0) or isinstance(p, tuple)):
            raise ValueError(f"pattern={p!r} is invalid: use 'best', an index >= 0 or a mapping of device states.")

    @property
    def on(self) -> bool:
        """Whether any knob is on."""
        return self.write_margin > 0 or self.read_weight > 0

    def to_dict(self) -> dict[str, Any]:
        """The knobs, JSON-ready (``energy_aware``: whether any is on; ``pattern_selection``: the ``pattern`` asked
        for)."""
        p = self.pattern
        return {
            "energy_aware": self.on,
            "write_margin": self.write_margin,
            "write_weighted": self.write_weighted,
            "read_weight": self.read_weight,
            "read_weighted": self.read_weighted,
            "count_zero_level_reads": self.count_zero_level_reads,
            "pattern_selection": p if isinstance(p, (str, int)) else list(p),
        }

    @property
    def needs_device(self) -> bool:
        """Whether a device's energies are used (a weighted knob that is on)."""
        return (self.write_margin > 0 and self.write_weighted) or (self.read_weight > 0 and self.read_weighted)


class EnergyAware:
    """Apply :class:`EnergyAwareKnobs` to a model: hysteresis in its quantized layers, and the read penalty.

    >>> from quest_lightning.nn import SpikingVGG
    >>> model = SpikingVGG([8, "P"], [16], in_channels=1, image_size=8, bits=2)
    >>> aware = EnergyAware(model, EnergyAwareKnobs(write_margin=0.3, read_weight=0.1), device="skmtj7").attach()
    >>> out = model(torch.rand(4, 2, 1, 8, 8))  # [T, B, C, H, W]
    >>> loss = out.mean() + aware.penalty()  # lambda_r * R of this forward pass, with its gradient
    >>> aware.detach()

    Args:
        model: the network (quantized layers are found with :func:`~quest_lightning.nn.inspect.quantized_layers`).
        knobs: the knobs.
        device: the memory device (a :class:`DeviceSpec`, a preset name, a dict or a YAML path) whose pattern
            energies weigh the knobs; needed only when a weighted knob is on.
        states: restrict the patterns to these device states.

    Raises:
        ValueError: a model without quantized layers, layers of several bit widths with a weighted knob on, or a
            device that cannot hold the weights.
    """

    def __init__(
        self,
        model: nn.Module,
        knobs: EnergyAwareKnobs,
        device: DeviceSpec | str | dict | None = None,
        states: Sequence[int] | None = None,
    ) -> None:
        self.model, self.knobs = model, knobs
        self.layers = require_quantized_layers(model, "EnergyAware") if knobs.on else quantized_layers(model)
        self.device: DeviceSpec | None = None
        self.energies: PatternEnergies | None = None
        self.pattern_index: int | None = None
        if knobs.needs_device:
            bits = sorted({layer.bits for _, layer in self.layers})
            if len(bits) != 1:
                raise ValueError(f"the quantized layers use bits={bits}; energy weighting needs one bit width.")
            self.device = resolve_device(device if device is not None else "skmtj7")
            self.energies = pattern_energies(self.device, bits[0], states)
            write = knobs.write_margin > 0 and knobs.write_weighted
            by = ("both" if knobs.read_weight > 0 else "write") if write else "read"
            self.pattern_index = choose_pattern(self.energies, knobs.pattern, by=by)
        self._hooks: list[Any] = []
        self._cost: Tensor | None = None
        self._dense = 0.0
        self.last_ratio: Tensor | None = None

    # --- the knobs' tables ------------------------------------------------------------------------------------------
    def margin(self, layer: QuantLayerMixin) -> Margin:
        """The hysteresis margin of ``layer``: :math:`h`, or the table :math:`h_{ij}` of the chosen pattern."""
        k = self.knobs
        if k.write_weighted and self.energies is not None:
            return write_margins(self.energies.write_j[self.pattern_index], k.write_margin)
        return float(k.write_margin)

    def read_costs(self, levels: int) -> Tensor:
        """:math:`c[v]` (:func:`read_level_costs`) of the chosen pattern, or the unweighted AOR costs."""
        weighted = self.knobs.read_weighted and self.energies is not None
        read_j = self.energies.read_j[self.pattern_index] if weighted else None
        return read_level_costs(read_j, levels, count_zero_level_reads=self.knobs.count_zero_level_reads)

    # --- attach / detach --------------------------------------------------------------------------------------------
    def attach(self) -> EnergyAware:
        """Install the knobs that are on (hysteresis, the read hooks) and return ``self``; idempotent (held codes
        already there are kept)."""
        self.detach(keep_hysteresis=True)
        for _, layer in self.layers:
            if self.knobs.write_margin > 0:
                set_hysteresis(layer, self.margin(layer))
            if self.knobs.read_weight > 0:
                costs = self.read_costs(layer.num_levels)
                self._hooks.append(
                    layer.register_forward_hook(lambda m, a, o, c=costs: self._on_forward(m, a[0], o, c))
                )
        return self

    def detach(self, keep_hysteresis: bool = False) -> None:
        """Remove what :meth:`attach` installed. With ``keep_hysteresis`` the layers keep their hysteresis and held
        codes (the network as trained: evaluation and export then use the codes the device holds); otherwise they
        are plain MINT layers again."""
        for hook in self._hooks:
            hook.remove()
        self._hooks = []
        if not keep_hysteresis:
            for _, layer in self.layers:
                if layer.hysteresis is not None:
                    set_hysteresis(layer, None)
        self.begin_step()

    # --- the read penalty -------------------------------------------------------------------------------------------
    def _on_forward(self, layer: QuantLayerMixin, x: Tensor, output: Tensor, costs: Tensor) -> None:
        if not (layer.training and torch.is_grad_enabled()):
            return
        lead = x.dim() - layer.feature_dims
        rows = math.prod(x.shape[:lead])
        steps = x.shape[0] if layer.is_multi_step(x) and lead >= 1 else 1
        samples = max(rows // steps, 1)
        counts = x.sum(dim=tuple(range(lead))).unsqueeze(0)
        cost = _synaptic_sum(layer, counts.to(layer.weight.dtype), weight_read_cost(layer, costs)) / samples
        # the ANN-equivalent MACs of the call per sample, as the AOR meter counts them: fan-in x output elements
        self._dense += layer.weight[0].numel() * (output.numel() // rows) * steps
        self._cost = cost if self._cost is None else self._cost + cost

    def begin_step(self) -> None:
        """Forget what the hooks gathered (call it at the start of a training step whose penalty is not taken)."""
        self._cost, self._dense = None, 0.0

    def penalty(self) -> Tensor:
        """:math:`\\lambda_r R` of the forward passes since the last call (a graph tensor; 0 when the read knob is
        off or nothing was gathered), and forget them. :attr:`last_ratio` keeps :math:`R` (detached)."""
        cost, dense = self._cost, self._dense
        self.begin_step()
        if cost is None or dense <= 0:
            return torch.zeros(())
        ratio = cost / dense
        self.last_ratio = ratio.detach()
        return self.knobs.read_weight * ratio

    # --- the record -------------------------------------------------------------------------------------------------
    def record(self) -> dict[str, Any]:
        """What the run was trained with, JSON-ready: the knobs, the device and pattern they weigh by, the margin
        table and the per-level read costs."""
        k = self.knobs
        out: dict[str, Any] = {
            **k.to_dict(),
            "device": self.device.name if self.device is not None else None,
            "pattern_index": self.pattern_index,
            "pattern": None if self.pattern_index is None else self.energies.patterns[self.pattern_index].label,
        }
        if self.layers:
            layer = self.layers[0][1]
            if k.write_margin > 0:
                margin = self.margin(layer)
                out["write_margins"] = margin.tolist() if isinstance(margin, Tensor) else margin
            if k.read_weight > 0:
                out["read_costs"] = self.read_costs(layer.num_levels).tolist()
        return out
