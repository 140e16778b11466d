r"""Device write and read energy per sample, for every R-S pattern at once.

Levels are indexed ``v = code + Q`` (``0 .. L-1``, most negative code first), the convention of
:mod:`quest_lightning.devices.patterns`. All functions are pure and vectorised over patterns with one ``einsum``.

**Weight update (write), per layer** (METHOD.md §7, Algorithm 1). With ``C[i, j]`` the number of weights that
moved from level ``i`` to level ``j`` between consecutive optimizer steps, summed over the monitored steps:

.. math::

    E_{upd}^p = \sum_{i \ne j} C[i, j] \; E_w^p[i, j] \quad \text{(joule, over the steps)}.

**Weight activation (read), per layer** (Algorithm 2). With ``N(v)`` the number of synaptic operations whose input
spike was 1 and whose weight sat at level ``v`` (summed over samples and time steps):

.. math::

    E_{act}^p = \sum_{v} N(v) \; E_r^p[v] \quad \text{(joule)}.

By default the zero level is skipped (``count_zero_level_reads=False``): a zero weight contributes nothing, so
QUEST's AOR assumes it is not read. Set it to True to charge zero-weight operations too; the device holding a 0
still sits in some state and a naive crossbar read would pay for it.

These are totals; :mod:`quest_lightning.energy.price` divides them by the samples seen (the one per-sample divisor).
The network total is the sum over layers; the best pattern is the ``argmin`` (lowest index on ties).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch

from quest_lightning.devices.patterns import PatternSet, format_mapping
from quest_lightning.summary import EnergyReport, PatternEnergy

__all__ = ["LayerwiseEnergyReport", "PatternEnergyReport", "read_energy_j", "write_energy_j"]

TOTAL = "total"


@dataclass(frozen=True, eq=False)
class PatternEnergyReport:
    """Energy per sample of one layer (or of the whole network) under every R-S pattern.

    Attributes:
        kind: ``"write"`` (weight update) or ``"read"`` (weight activation).
        scope: The layer name, or ``"total"`` for the sum over layers.
        per_pattern_j: ``[P]`` float64 tensor, joules per sample for each pattern.
        patterns: The patterns, in the same order.
        best_index: Index of the cheapest pattern (lowest index on ties).
        best_mapping: Its state tuple (``best_mapping[v]`` holds level ``v``).
        best_label: Its mapping as text, e.g. ``"-1→R2, 0→R0, +1→R5"``.
        best_j: Its energy in joules per sample.
        worst_j: The most expensive pattern's energy in joules per sample.
    """

    kind: Literal["write", "read"]
    scope: str
    per_pattern_j: torch.Tensor
    patterns: PatternSet
    best_index: int
    best_mapping: tuple[int, ...]
    best_label: str
    best_j: float
    worst_j: float

    @classmethod
    def from_vector(
        cls, kind: Literal["write", "read"], scope: str, per_pattern_j: torch.Tensor, patterns: PatternSet
    ) -> PatternEnergyReport:
        """Build a report from a ``[P]`` vector of joules per sample."""
        best = int(torch.argmin(per_pattern_j))
        mapping = tuple(int(s) for s in patterns.states[best].tolist())
        return cls(
            kind=kind,
            scope=scope,
            per_pattern_j=per_pattern_j,
            patterns=patterns,
            best_index=best,
            best_mapping=mapping,
            best_label=format_mapping(mapping),
            best_j=float(per_pattern_j[best]),
            worst_j=float(per_pattern_j.max()),
        )

    def ranking(self) -> list[int]:
        """Pattern indices from cheapest to most expensive (stable: ties keep index order)."""
        return torch.sort(self.per_pattern_j, stable=True).indices.tolist()

    def energy_of(self, key: int | tuple[int, ...]) -> float:
        """Joules per sample of one pattern, given by index or by mapping."""
        return float(self.per_pattern_j[self.patterns.select(key).index])

    def to_record(self) -> PatternEnergy:
        """The typed run-record form (:class:`quest_lightning.summary.PatternEnergy`)."""
        return PatternEnergy(
            kind=self.kind,
            scope=self.scope,
            per_pattern_j=tuple(self.per_pattern_j.tolist()),
            best_index=self.best_index,
            best_mapping=self.best_mapping,
            best_label=self.best_label,
            best_j=self.best_j,
            worst_j=self.worst_j,
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe summary (per-pattern values included)."""
        return self.to_record().to_dict()


@dataclass(frozen=True, eq=False)
class LayerwiseEnergyReport:
    """Per-layer and total energy per sample for every pattern.

    Attributes:
        kind: ``"write"`` or ``"read"``.
        per_layer: Layer name -> :class:`PatternEnergyReport`, in the order given.
        total: The sum over layers (its best pattern is the best overall).
        samples: The samples seen, which every figure is divided by.
        steps: For writes, the optimizer steps the counts cover (``None`` for reads).
        count_zero_level_reads: For ``kind="read"``, whether zero-level operations were charged; ``None`` for
            writes.
    """

    kind: Literal["write", "read"]
    per_layer: Mapping[str, PatternEnergyReport]
    total: PatternEnergyReport
    samples: int
    steps: int | None = None
    count_zero_level_reads: bool | None = None

    @property
    def normalisation(self) -> dict[str, int]:
        """How counts were turned into per-sample values: ``{"samples": n}`` (and the ``steps`` of a write)."""
        return {"samples": self.samples} if self.steps is None else {"steps": self.steps, "samples": self.samples}

    @property
    def best_per_layer(self) -> dict[str, int]:
        """Layer name -> index of its cheapest pattern."""
        return {name: r.best_index for name, r in self.per_layer.items()}

    @property
    def same_best_everywhere(self) -> bool:
        """True if one pattern is the cheapest in every layer (the QUEST paper's observation for writes)."""
        return len(set(self.best_per_layer.values())) == 1

    def to_record(self) -> EnergyReport:
        """The typed run-record form (:class:`quest_lightning.summary.EnergyReport`)."""
        return EnergyReport(
            kind=self.kind,
            device=self.total.patterns.device.name,
            bits=self.total.patterns.bits,
            samples=self.samples,
            per_layer={name: r.to_record() for name, r in self.per_layer.items()},
            total=self.total.to_record(),
            steps=self.steps,
            count_zero_level_reads=self.count_zero_level_reads,
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe summary."""
        return self.to_record().to_dict()


def counts_tensor(
    name: str, value: Any, shape: tuple[int, ...], like: torch.Tensor, *, batched: bool = True
) -> torch.Tensor:
    """``value`` as float64 counts of ``shape`` (or ``[K, *shape]`` when ``batched``) on ``like``'s device.

    Raises:
        ValueError: A wrong shape, or a count that is negative or not finite (the message names ``name``).
    """
    t = torch.as_tensor(value).detach().to(dtype=torch.float64, device=like.device)
    dims = (len(shape), len(shape) + 1) if batched else (len(shape),)
    if tuple(t.shape[-len(shape) :]) != shape or t.dim() not in dims:
        extra = " (or with a leading layer dimension)" if batched else ""
        raise ValueError(f"{name} has shape {tuple(t.shape)}; expected {shape}{extra}")
    if not torch.isfinite(t).all() or (t < 0).any():
        raise ValueError(f"{name} must hold finite counts >= 0")
    return t


def write_energy_j(transitions: torch.Tensor, write_j: torch.Tensor) -> torch.Tensor:
    r"""Write energy in joules of one layer (``[L, L]`` counts) or ``K`` layers (``[K, L, L]``), every pattern.

    .. math::

        E^p = \sum_{i \ne j} C[i, j] \, E_w^p[i, j]

    Args:
        transitions: Level-to-level transition counts ``C[i, j]``.
        write_j: ``[P, L, L]`` write energies in joules (:attr:`PatternEnergies.write_j`).

    Returns:
        ``[P]`` (or ``[K, P]``) float64 joules, summed over the steps the counts cover.
    """
    num_levels = write_j.shape[-1]
    c = counts_tensor("transitions", transitions, (num_levels, num_levels), write_j)
    off_diag = 1.0 - torch.eye(num_levels, dtype=torch.float64, device=c.device)
    return torch.einsum("...ij,pij->...p", c * off_diag, write_j)


def read_energy_j(
    level_counts: torch.Tensor, read_j: torch.Tensor, *, count_zero_level_reads: bool = False
) -> torch.Tensor:
    r"""Read energy in joules of one layer (``[L]`` counts) or ``K`` layers (``[K, L]``), every pattern.

    .. math::

        E^p = \sum_{v} N(v) \, E_r^p[v] \quad (v \ne Q \text{ unless count\_zero\_level\_reads})

    Args:
        level_counts: ``N(v)``, operations with input spike 1 and weight level ``v``.
        read_j: ``[P, L]`` read energies in joules (:attr:`PatternEnergies.read_j`).
        count_zero_level_reads: Charge operations on zero weights (level ``Q``) too. Default False.

    Returns:
        ``[P]`` (or ``[K, P]``) float64 joules.
    """
    num_levels = read_j.shape[-1]
    n = counts_tensor("level_counts", level_counts, (num_levels,), read_j)
    if not count_zero_level_reads:
        n = n.clone()
        n[..., (num_levels - 1) // 2] = 0.0
    return torch.einsum("...v,pv->...p", n, read_j)


def layerwise_report(
    kind: Literal["write", "read"],
    names: list[str],
    per_layer: torch.Tensor,
    patterns: PatternSet,
    *,
    samples: int,
    steps: int | None = None,
    count_zero_level_reads: bool | None = None,
) -> LayerwiseEnergyReport:
    """A :class:`LayerwiseEnergyReport` from ``[K, P]`` joules per sample of the layers ``names``."""
    if TOTAL in names:
        raise ValueError(f"the layer name {TOTAL!r} is reserved for the sum over layers; rename that layer")
    layers = {name: PatternEnergyReport.from_vector(kind, name, per_layer[k], patterns) for k, name in enumerate(names)}
    total = PatternEnergyReport.from_vector(kind, TOTAL, per_layer.sum(dim=0), patterns)
    return LayerwiseEnergyReport(kind, layers, total, samples, steps, count_zero_level_reads)
