"""Transition records: the level → level moves of the weight codes per stage, and the writes per cell of the run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from quest_lightning.summary.record import Record, mean_batch

__all__ = ["LayerTransitions", "LayerWrites", "TransitionStage", "WritesPerCell"]


@dataclass(frozen=True)
class LayerTransitions(Record):
    """Level → level counts ``counts[i][j]`` of one layer over a stage's ``steps`` observed optimizer steps."""

    qmax: int
    counts: tuple[tuple[int, ...], ...]
    steps: int
    trajectory: tuple[tuple[int, ...], ...] = ()
    frozen_fraction: float | None = None
    changed_fraction: float | None = None
    non_adjacent_fraction: float | None = None

    def fractions(self) -> dict[str, float | None]:
        """The three fractions by name (``None`` where there was nothing to divide by)."""
        names = ("frozen_fraction", "changed_fraction", "non_adjacent_fraction")
        return {name: getattr(self, name) for name in names}


@dataclass(frozen=True)
class TransitionStage(Record):
    """A finished stage: its epoch, observed steps, the ``samples`` of those steps, and every layer's counts."""

    stage: str
    epoch: int
    steps: int
    samples: int
    layers: dict[str, LayerTransitions] = field(default_factory=dict)
    note: str | None = None

    @property
    def batch_size(self) -> float | int:
        """The mean samples per observed step (an int when every step saw as many)."""
        return mean_batch(self.samples, self.steps)


@dataclass(frozen=True)
class LayerWrites(Record):
    """Writes per cell of one layer: a write is a change of a weight's integer code between two observed optimizer
    steps (:func:`~quest_lightning.devices.endurance.write_stats`). ``percentiles`` maps ``"p50"``, ``"p90"``,
    ``"p99"``, ``"p99.9"`` to the nearest-rank percentile of the writes per cell."""

    cells: int
    total: int
    max: int
    mean: float
    percentiles: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class WritesPerCell(Record):
    """The run's writes-per-cell counters at global step ``step``: ``steps`` observed optimizer steps, which are
    ``epochs`` epochs of training at the run's optimizer steps per epoch (the write rate is measured over them;
    ``None`` when an epoch's length is unknown), and every quantized layer's :class:`LayerWrites`."""

    step: int
    steps: int
    epochs: float | None
    layers: dict[str, LayerWrites] = field(default_factory=dict)

    @property
    def max_writes(self) -> int:
        """The most writes any cell of the network took."""
        return max((w.max for w in self.layers.values()), default=0)

    def _derived(self) -> dict[str, Any]:
        return {"max_writes": self.max_writes}
