r"""Device write and read energy per sample, for every R-S pattern at once.

Levels are indexed ``v = code + Q`` (``0 .. L-1``, most negative code first), the convention of
:mod:`quest_lightning.devices.patterns`. All functions are pure and vectorised over patterns with one ``einsum``.

**Weight update (write), per layer** (METHOD.md §7, Algorithm 1). With ``C[i, j]`` the number of weights that
moved from level ``i`` to level ``j`` between consecutive optimizer steps, summed over the ``S`` monitored steps of
batch size ``B``:

.. math::

    E_{upd}^p = \frac{1}{S \, B} \sum_{i \ne j} C[i, j] \; E_w^p[i, j] \quad \text{(joule per sample)}.

**Weight activation (read), per layer** (Algorithm 2). With ``N(v)`` the number of synaptic operations whose input
spike was 1 and whose weight sat at level ``v``, summed over ``M`` samples (and over time steps):

.. math::

    E_{act}^p = \frac{1}{M} \sum_{v} N(v) \; E_r^p[v] \quad \text{(joule per sample)}.

By default the zero level is skipped (``count_zero_level_reads=False``): a zero weight contributes nothing, so
QUEST's AOR assumes it is not read. Set it to True to charge zero-weight operations too; the device holding a 0
still sits in some state and a naive crossbar read would pay for it.

The network total is the sum over layers; the best pattern is the ``argmin`` (lowest index on ties).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch

from quest_lightning.devices.patterns import PatternEnergies, PatternSet, format_mapping

__all__ = [
    "LayerwiseEnergyReport",
    "PatternEnergyReport",
    "read_energy_per_sample",
    "read_energy_report",
    "write_energy_per_sample",
    "write_energy_report",
]

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

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe summary (per-pattern values included)."""
        return {
            "kind": self.kind,
            "scope": self.scope,
            "unit": "J/sample",
            "best_index": self.best_index,
            "best_mapping": list(self.best_mapping),
            "best_label": self.best_label,
            "best_j": self.best_j,
            "worst_j": self.worst_j,
            "per_pattern_j": self.per_pattern_j.tolist(),
        }


@dataclass(frozen=True, eq=False)
class LayerwiseEnergyReport:
    """Per-layer and total energy per sample for every pattern.

    Attributes:
        kind: ``"write"`` or ``"read"``.
        per_layer: Layer name -> :class:`PatternEnergyReport`, in the order given.
        total: The sum over layers (its best pattern is the best overall).
        normalisation: How counts were turned into per-sample values, e.g. ``{"steps": 10, "batch_size": 256}``
            or ``{"samples": 512}``.
        count_zero_level_reads: For ``kind="read"``, whether zero-level operations were charged; ``None`` for
            writes.
    """

    kind: Literal["write", "read"]
    per_layer: Mapping[str, PatternEnergyReport]
    total: PatternEnergyReport
    normalisation: Mapping[str, int]
    count_zero_level_reads: bool | None = None

    @property
    def best_per_layer(self) -> dict[str, int]:
        """Layer name -> index of its cheapest pattern."""
        return {name: r.best_index for name, r in self.per_layer.items()}

    @property
    def same_best_everywhere(self) -> bool:
        """True if one pattern is the cheapest in every layer (the QUEST paper's observation for writes)."""
        return len(set(self.best_per_layer.values())) == 1

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe summary."""
        return {
            "kind": self.kind,
            "unit": "J/sample",
            "normalisation": dict(self.normalisation),
            "count_zero_level_reads": self.count_zero_level_reads,
            "device": self.total.patterns.device.name,
            "bits": self.total.patterns.bits,
            "per_layer": {name: r.to_dict() for name, r in self.per_layer.items()},
            "total": self.total.to_dict(),
        }


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name}={value!r} is invalid: expected a positive integer")
    return value


def _counts(name: str, value: Any, shape: tuple[int, ...], like: torch.Tensor, *, batched: bool = True) -> torch.Tensor:
    t = torch.as_tensor(value).detach().to(dtype=torch.float64, device=like.device)
    dims = (len(shape), len(shape) + 1) if batched else (len(shape),)
    if tuple(t.shape[-len(shape) :]) != shape or t.dim() not in dims:
        extra = " (or with a leading layer dimension)" if batched else ""
        raise ValueError(f"{name} has shape {tuple(t.shape)}; expected {shape}{extra}")
    if not torch.isfinite(t).all() or (t < 0).any():
        raise ValueError(f"{name} must hold finite counts >= 0")
    return t


def write_energy_per_sample(
    transitions: torch.Tensor, write_j: torch.Tensor, steps: int, batch_size: int
) -> torch.Tensor:
    r"""Write energy per sample of one layer (``[L, L]`` counts) or of ``K`` layers (``[K, L, L]``), every pattern.

    .. math::

        E^p = \frac{1}{\text{steps} \cdot \text{batch\_size}} \sum_{i \ne j} C[i, j] \, E_w^p[i, j]

    Args:
        transitions: Level-to-level transition counts ``C[i, j]`` summed over ``steps`` optimizer steps.
        write_j: ``[P, L, L]`` write energies in joules (:attr:`PatternEnergies.write_j`).
        steps: Number of optimizer steps the counts cover.
        batch_size: Samples per step.

    Returns:
        ``[P]`` (or ``[K, P]``) float64, joules per sample.
    """
    num_levels = write_j.shape[-1]
    c = _counts("transitions", transitions, (num_levels, num_levels), write_j)
    off_diag = 1.0 - torch.eye(num_levels, dtype=torch.float64, device=c.device)
    per_step = torch.einsum("...ij,pij->...p", c * off_diag, write_j)
    return per_step / (_positive_int("steps", steps) * _positive_int("batch_size", batch_size))


def read_energy_per_sample(
    level_counts: torch.Tensor, read_j: torch.Tensor, samples: int, *, count_zero_level_reads: bool = False
) -> torch.Tensor:
    r"""Read energy per sample of one layer (``[L]`` counts) or of ``K`` layers (``[K, L]``), every pattern.

    .. math::

        E^p = \frac{1}{\text{samples}} \sum_{v} N(v) \, E_r^p[v]
        \quad (v \ne Q \text{ unless count\_zero\_level\_reads})

    Args:
        level_counts: ``N(v)``, operations with input spike 1 and weight level ``v``, summed over ``samples``.
        read_j: ``[P, L]`` read energies in joules (:attr:`PatternEnergies.read_j`).
        samples: Number of samples the counts cover.
        count_zero_level_reads: Charge operations on zero weights (level ``Q``) too. Default False.

    Returns:
        ``[P]`` (or ``[K, P]``) float64, joules per sample.
    """
    num_levels = read_j.shape[-1]
    n = _counts("level_counts", level_counts, (num_levels,), read_j)
    if not count_zero_level_reads:
        n = n.clone()
        n[..., (num_levels - 1) // 2] = 0.0
    return torch.einsum("...v,pv->...p", n, read_j) / _positive_int("samples", samples)


def _layerwise(
    kind: Literal["write", "read"], names: list[str], per_layer: torch.Tensor, patterns: PatternSet
) -> tuple[dict[str, PatternEnergyReport], PatternEnergyReport]:
    layers = {name: PatternEnergyReport.from_vector(kind, name, per_layer[k], patterns) for k, name in enumerate(names)}
    return layers, PatternEnergyReport.from_vector(kind, TOTAL, per_layer.sum(dim=0), patterns)


def _stack(name: str, counts: Mapping[str, Any]) -> tuple[list[str], list[Any]]:
    if not isinstance(counts, Mapping) or not counts:
        raise ValueError(f"{name} must be a non-empty {{layer_name: counts}} mapping")
    if TOTAL in counts:
        raise ValueError(f"{name} uses the reserved layer name {TOTAL!r}; rename that layer")
    return list(counts), [torch.as_tensor(v) for v in counts.values()]


def write_energy_report(
    transition_counts: Mapping[str, torch.Tensor], energies: PatternEnergies, *, steps: int, batch_size: int
) -> LayerwiseEnergyReport:
    """Weight-update energy per sample of every layer and of the network, for every pattern.

    Args:
        transition_counts: ``{layer_name: C}``, each ``C`` an ``[L, L]`` level-to-level count matrix summed over
            ``steps`` optimizer steps.
        energies: The pattern energies of the device and bit width (:func:`pattern_energies`).
        steps: Number of optimizer steps the counts cover.
        batch_size: Samples per optimizer step.

    Returns:
        Per-layer reports, the total, and the best pattern of each.

    Example:
        >>> import torch
        >>> from quest_lightning.devices import get_device, pattern_energies
        >>> pe = pattern_energies(get_device("ideal7"), bits=2)
        >>> c = torch.tensor([[9.0, 1, 0], [0, 9, 1], [0, 0, 9]])
        >>> rep = write_energy_report({"fc": c}, pe, steps=1, batch_size=2)
        >>> round(rep.total.best_j * 1e15, 6)  # 2 writes x 100 fJ / 2 samples
        100.0
    """
    names, mats = _stack("transition_counts", transition_counts)
    c = torch.stack(
        [
            _counts(f"transition_counts[{n!r}]", m, tuple(energies.write_j.shape[-2:]), energies.write_j, batched=False)
            for n, m in zip(names, mats, strict=True)
        ]
    )
    per_layer = write_energy_per_sample(c, energies.write_j, steps, batch_size)
    layers, total = _layerwise("write", names, per_layer, energies.patterns)
    return LayerwiseEnergyReport(
        kind="write",
        per_layer=layers,
        total=total,
        normalisation={"steps": steps, "batch_size": batch_size},
    )


def read_energy_report(
    level_counts: Mapping[str, torch.Tensor],
    energies: PatternEnergies,
    *,
    samples: int,
    count_zero_level_reads: bool = False,
) -> LayerwiseEnergyReport:
    """Weight-activation (read) energy per sample of every layer and of the network, for every pattern.

    Args:
        level_counts: ``{layer_name: N}``, each ``N`` an ``[L]`` vector of operations per level (input spike 1,
            weight at level ``v``), summed over ``samples`` samples and all time steps.
        energies: The pattern energies of the device and bit width.
        samples: Number of samples the counts cover.
        count_zero_level_reads: Charge operations on zero weights too (default False, as QUEST's AOR assumes).

    Returns:
        Per-layer reports, the total, and the best pattern of each.
    """
    names, vecs = _stack("level_counts", level_counts)
    n = torch.stack(
        [
            _counts(f"level_counts[{k!r}]", v, (energies.read_j.shape[-1],), energies.read_j, batched=False)
            for k, v in zip(names, vecs, strict=True)
        ]
    )
    per_layer = read_energy_per_sample(n, energies.read_j, samples, count_zero_level_reads=count_zero_level_reads)
    layers, total = _layerwise("read", names, per_layer, energies.patterns)
    return LayerwiseEnergyReport(
        kind="read",
        per_layer=layers,
        total=total,
        normalisation={"samples": samples},
        count_zero_level_reads=count_zero_level_reads,
    )
