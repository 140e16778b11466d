"""Transition stages: the windows of training batches whose optimizer steps are counted, and the settings of the
transition count (``WeightTransitionMonitor``'s arguments), validated once."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

__all__ = [
    "EVERY_STEP",
    "PAPER_STAGES",
    "Stage",
    "TransitionSettings",
    "resolve_stages",
    "stages_past_max_steps",
    "unrunnable_stages",
]

StagesArg = str | Sequence[Any]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class Stage:
    """A window of training batches to monitor: batches ``first``..``last`` (1-based, inclusive) of ``epoch``
    (0-based), or of every epoch when ``epoch`` is ``None``.

    Raises:
        ValueError: An empty name, batches that are not integers with ``1 <= first <= last`` (``last`` may be
            ``math.inf``), or a negative or non-integer epoch.
    """

    name: str
    first: int
    last: float
    epoch: int | None = 0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"Stage.name must be a non-empty string, got {self.name!r}: name every stage.")
        last_ok = _is_int(self.last) or self.last == math.inf
        if not _is_int(self.first) or not last_ok or self.first < 1 or self.last < self.first:
            raise ValueError(
                f"stage {self.name!r}: batches {self.first}..{self.last} must satisfy 1 <= first <= last "
                "(integers, 1-based; last may be math.inf)."
            )
        if self.epoch is not None and (not _is_int(self.epoch) or self.epoch < 0):
            raise ValueError(
                f"stage {self.name!r}: epoch={self.epoch!r} is invalid: use a 0-based epoch index, or None for every "
                "epoch."
            )

    @classmethod
    def of(cls, spec: Stage | Sequence[Any] | dict[str, Any]) -> Stage:
        """A :class:`Stage` from itself, a ``(name, first, last[, epoch])`` tuple or a dict of those keys."""
        if isinstance(spec, Stage):
            return spec
        if isinstance(spec, dict):
            unknown = sorted(set(spec) - {"name", "first", "last", "epoch"})
            if unknown or not {"name", "first", "last"} <= set(spec):
                raise ValueError(
                    f"stage {spec!r} is invalid: a stage dict has the keys name, first, last and optionally epoch."
                )
            return cls(**spec)
        if isinstance(spec, (str, bytes)) or not isinstance(spec, Sequence) or not 3 <= len(spec) <= 4:
            raise ValueError(f"stage {spec!r} is invalid: write a stage as (name, first, last) or (name, first, last, "
                             "epoch).")  # fmt: skip
        return cls(*spec)

    def contains(self, epoch: int, batch: int) -> bool:
        """Whether 1-based ``batch`` of ``epoch`` is in the window."""
        return (self.epoch is None or self.epoch == epoch) and self.first <= batch <= self.last

    def key(self, epoch: int) -> str:
        """The stage's name in the results: ``name``, or ``name@epoch{e}`` for a stage repeated every epoch."""
        return self.name if self.epoch is not None else f"{self.name}@epoch{epoch}"


PAPER_STAGES: tuple[Stage, ...] = (
    Stage("batches_1-10", 1, 10),
    Stage("batches_96-105", 96, 105),
    Stage("batches_180-190", 180, 190),
)
EVERY_STEP: tuple[Stage, ...] = (Stage("all", 1, math.inf, None),)


def resolve_stages(stages: StagesArg) -> tuple[Stage, ...]:
    """``"paper"`` (QUEST's batches 1–10, 96–105, 180–190 of epoch 0), ``"all"`` (every step of every epoch), or a
    sequence of :class:`Stage`, ``(name, first, last[, epoch])`` tuples or dicts. Stages must be in order and
    must not overlap.

    Raises:
        ValueError: An unknown preset, an empty list, a malformed stage, stages out of order or overlapping, or
            two stages with the same name.
    """
    if isinstance(stages, str):
        if stages not in ("paper", "all"):
            raise ValueError(f"stages={stages!r} is unknown: use 'paper', 'all' or a list of (name, first, last).")
        return PAPER_STAGES if stages == "paper" else EVERY_STEP
    if not isinstance(stages, Sequence):
        raise ValueError(f"stages={stages!r} is invalid: use 'paper', 'all' or a list of (name, first, last).")
    out = tuple(Stage.of(s) for s in stages)
    if not out:
        raise ValueError("stages is empty: give at least one (name, first, last) window, 'paper' or 'all'.")
    for k, a in enumerate(out):
        for b in out[k + 1 :]:
            same_epoch = a.epoch is None or b.epoch is None or a.epoch == b.epoch
            earlier_epoch = a.epoch is not None and b.epoch is not None and b.epoch < a.epoch
            if (same_epoch and b.first <= a.last) or earlier_epoch:
                raise ValueError(
                    f"stages out of order or overlapping: {a.name!r} (batches {a.first}..{a.last}, epoch {a.epoch}) "
                    f"and {b.name!r} (batches {b.first}..{b.last}, epoch {b.epoch}); list them in increasing, "
                    "disjoint batch ranges (epoch None means every epoch)."
                )
    if len({s.name for s in out}) != len(out):
        raise ValueError(f"stage names must be unique, got {[s.name for s in out]}.")
    return out


def unrunnable_stages(stages: Sequence[Stage], *, batches: float, max_epochs: int | None) -> dict[str, str]:
    """The stages that can never run in a run of this length, each with the reason and the fix: a first batch past
    the end of the epoch, or an epoch past ``max_epochs``. (A stage past ``max_steps`` is not among them: a run cut
    by ``max_steps`` may be resumed with more steps; see :func:`stages_past_max_steps`.)

    Args:
        stages: The stages.
        batches: Training batches per epoch (after ``limit_train_batches``; ``inf`` when unknown).
        max_epochs: The Trainer's ``max_epochs`` (``None`` or ``-1``: unlimited).
    """
    out: dict[str, str] = {}
    for s in stages:
        if s.epoch is not None and max_epochs not in (None, -1) and s.epoch >= max_epochs:
            out[s.name] = (
                f"stage {s.name!r} is in epoch {s.epoch} but the run has max_epochs={max_epochs} (epochs 0.."
                f"{max_epochs - 1}); use an earlier epoch or raise max_epochs"
            )
        elif s.first > batches:
            out[s.name] = (
                f"stage {s.name!r} starts at batch {s.first} but an epoch has {int(batches)} training batches "
                "(after limit_train_batches); start it at a batch <= that or train on more batches"
            )
    return out


def stages_past_max_steps(stages: Sequence[Stage], *, batches: float, max_steps: int, accumulate: int) -> list[str]:
    """The stages whose first optimizer step comes after ``max_steps`` (``-1``: unlimited), with ``accumulate``
    batches per step."""
    if max_steps is None or max_steps < 0:
        return []
    per_epoch = math.ceil(batches / accumulate) if math.isfinite(batches) else math.inf
    return [s.name for s in stages if (s.epoch or 0) * per_epoch + (s.first - 1) // accumulate >= max_steps]


@dataclass(frozen=True)
class TransitionSettings:
    """What the transition count observes: the stages, one step in ``every_n_steps``, ``trajectories`` followed
    weights per layer drawn with ``seed``, and whether it counts the writes per cell (``writes_per_cell``).
    ``preset`` names a stage preset (``"paper"``, ``"all"``), whose stages that cannot run in a short run are left
    out with a warning; explicit stages are refused instead."""

    stages: tuple[Stage, ...]
    every_n_steps: int = 1
    trajectories: int = 16
    seed: int = 0
    preset: str | None = None
    writes_per_cell: bool = False

    def __post_init__(self) -> None:
        if not _is_int(self.every_n_steps) or self.every_n_steps < 1:
            raise ValueError(f"every_n_steps={self.every_n_steps!r} must be >= 1 (an integer; 1 observes every step).")
        if not _is_int(self.trajectories) or self.trajectories < 0:
            raise ValueError(f"trajectories={self.trajectories!r} must be >= 0 (an integer; 0 follows no weight).")
        if not _is_int(self.seed):
            raise ValueError(f"seed={self.seed!r} is invalid: expected an integer.")
        if not isinstance(self.writes_per_cell, bool):
            raise ValueError(f"track_writes_per_cell={self.writes_per_cell!r} must be True or False.")

    @classmethod
    def make(
        cls,
        stages: StagesArg,
        every_n_steps: int = 1,
        trajectories: int = 16,
        seed: int = 0,
        writes_per_cell: bool = False,
    ) -> TransitionSettings:
        """Resolve ``stages`` (:func:`resolve_stages`) and validate the rest."""
        preset = stages if isinstance(stages, str) else None
        return cls(resolve_stages(stages), every_n_steps, trajectories, seed, preset, writes_per_cell)

    def to_state(self) -> dict[str, Any]:
        """Plain data for a checkpoint."""
        return {**asdict(self), "stages": [asdict(s) for s in self.stages]}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> TransitionSettings:
        """The settings a checkpoint was written with."""
        return cls(**{**state, "stages": tuple(Stage(**s) for s in state["stages"])})
