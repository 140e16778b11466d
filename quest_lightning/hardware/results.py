"""Typed, JSON-serialisable results of hardware-aware evaluation: one array model, and a sweep over patterns."""

from __future__ import annotations

import json
import math
import os
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quest_lightning.devices.patterns import format_mapping

__all__ = ["SWEEP_FILE", "SWEEP_FORMAT", "ArrayAccuracy", "VariationSweep", "mean_std"]

SWEEP_FILE = "variation_sweep.json"
"""The file name of a :class:`VariationSweep` in a run folder, next to the run's ``quest_summary.json``:
``quest-lightning sweep`` writes it there (:meth:`VariationSweep.save`) and the report draws it when it is there."""
SWEEP_FORMAT = "quest-lightning/variation-sweep-v1"
"""The ``format`` key of a saved sweep."""


def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (``ddof = 1``) of ``values``; the deviation is ``None`` for one value."""
    if not values:
        raise ValueError("mean_std: no values")
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


@dataclass(frozen=True)
class ArrayAccuracy:
    """Test accuracy of one model on ``len(accuracies)`` independently drawn arrays of one array model.

    Attributes:
        device: Device name.
        pattern: ``pattern[v]`` is the state holding level ``v``.
        mapping: The converter's name.
        accuracies: Accuracy (fraction correct, 0 to 1) on each drawn array, in draw order.
        ideal_accuracy: Accuracy of the model as trained (no array).
        seed: Seed of the draws.
    """

    device: str
    pattern: tuple[int, ...]
    mapping: str
    accuracies: tuple[float, ...]
    ideal_accuracy: float
    seed: int

    @property
    def label(self) -> str:
        """The pattern as text, e.g. ``"-1→R0, 0→R3, +1→R6"``."""
        return format_mapping(self.pattern)

    @property
    def mean(self) -> float:
        """Mean accuracy over the draws."""
        return mean_std(self.accuracies)[0]

    @property
    def std(self) -> float | None:
        """Sample standard deviation over the draws (``None`` for a single draw)."""
        return mean_std(self.accuracies)[1]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict, with ``label``, ``mean`` and ``std`` added."""
        return {
            "device": self.device,
            "pattern": list(self.pattern),
            "label": self.label,
            "mapping": self.mapping,
            "accuracies": list(self.accuracies),
            "mean": self.mean,
            "std": self.std,
            "ideal_accuracy": self.ideal_accuracy,
            "seed": self.seed,
        }


@dataclass(frozen=True)
class VariationSweep:
    """Accuracy against one non-ideality (e.g. ``d2d_sigma``) for several R-S patterns, over repeated array draws.

    Attributes:
        device: Device name.
        vary: The :class:`~quest_lightning.devices.nonideal.NonIdealities` field swept.
        values: The values of ``vary``, in sweep order.
        patterns: The patterns, ``patterns[i][v]`` the state holding level ``v``.
        accuracy: ``accuracy[i][j][d]``: pattern ``i``, value ``j``, draw ``d`` (fraction correct).
        ideal_accuracy: Accuracy of the model as trained (no array).
        draws: Arrays drawn per (pattern, value); draw ``d`` uses the same seed for every pattern and value.
        seed: Seed of the draws.
        mapping: The converter's name.
        nonideal: The device's other non-idealities, held fixed (``NonIdealities.to_dict()``).
        t_inference_s: Read time after programming (``None``: at :math:`t_0`).
    """

    device: str
    vary: str
    values: tuple[float, ...]
    patterns: tuple[tuple[int, ...], ...]
    accuracy: tuple[tuple[tuple[float, ...], ...], ...]
    ideal_accuracy: float
    draws: int
    seed: int
    mapping: str
    nonideal: Mapping[str, Any] = field(default_factory=dict)
    t_inference_s: float | None = None

    def __post_init__(self) -> None:
        shape = (len(self.patterns), len(self.values), self.draws)
        got = (len(self.accuracy), {len(r) for r in self.accuracy}, {len(c) for r in self.accuracy for c in r})
        if got[0] != shape[0] or got[1] != {shape[1]} or got[2] != {shape[2]}:
            raise ValueError(f"VariationSweep.accuracy must be [patterns][values][draws] = {shape}, got {got}")

    @property
    def labels(self) -> list[str]:
        """Each pattern as text."""
        return [format_mapping(p) for p in self.patterns]

    @property
    def mean(self) -> list[list[float]]:
        """``mean[i][j]``: mean accuracy of pattern ``i`` at value ``j``."""
        return [[mean_std(c)[0] for c in row] for row in self.accuracy]

    @property
    def std(self) -> list[list[float | None]]:
        """``std[i][j]``: sample standard deviation over the draws (``None`` for a single draw)."""
        return [[mean_std(c)[1] for c in row] for row in self.accuracy]

    def _column(self, value: float) -> int:
        for j, v in enumerate(self.values):
            if math.isclose(v, value, rel_tol=1e-12, abs_tol=1e-15):
                return j
        raise ValueError(f"{self.vary}={value!r} was not swept; the sweep has {list(self.values)}")

    def at(self, value: float) -> dict[str, tuple[float, float | None]]:
        """Accuracy per pattern at one swept value: ``{label: (mean, std)}`` in pattern order."""
        j = self._column(value)
        return {label: mean_std(row[j]) for label, row in zip(self.labels, self.accuracy, strict=True)}

    def best(self, value: float) -> str:
        """Label of the pattern with the highest mean accuracy at ``value`` (ties: the first)."""
        scores = self.at(value)
        return max(scores, key=lambda k: scores[k][0])

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict of every field, with ``labels``, ``mean`` and ``std`` added."""
        return {
            "device": self.device,
            "vary": self.vary,
            "values": list(self.values),
            "patterns": [list(p) for p in self.patterns],
            "labels": self.labels,
            "accuracy": [[list(c) for c in row] for row in self.accuracy],
            "mean": self.mean,
            "std": self.std,
            "ideal_accuracy": self.ideal_accuracy,
            "draws": self.draws,
            "seed": self.seed,
            "mapping": self.mapping,
            "nonideal": dict(self.nonideal),
            "t_inference_s": self.t_inference_s,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VariationSweep:
        """Rebuild from :meth:`to_dict` output (derived keys are ignored)."""
        return cls(
            device=data["device"],
            vary=data["vary"],
            values=tuple(float(v) for v in data["values"]),
            patterns=tuple(tuple(int(s) for s in p) for p in data["patterns"]),
            accuracy=tuple(tuple(tuple(float(a) for a in c) for c in row) for row in data["accuracy"]),
            ideal_accuracy=float(data["ideal_accuracy"]),
            draws=int(data["draws"]),
            seed=int(data["seed"]),
            mapping=data["mapping"],
            nonideal=dict(data.get("nonideal", {})),
            t_inference_s=data.get("t_inference_s"),
        )

    def save(self, run_dir: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write the sweep as JSON to ``run_dir/variation_sweep.json`` (:data:`SWEEP_FILE`), through a temporary
        file and a rename (never half-written).

        Args:
            run_dir: The run folder (the one that holds ``quest_summary.json``); created if missing.
            overwrite: Replace a sweep the folder already holds.

        Returns:
            The path of the file.

        Raises:
            FileExistsError: The folder already holds a sweep and ``overwrite`` is False.
        """
        path = Path(run_dir) / SWEEP_FILE
        if path.exists() and not overwrite:
            raise FileExistsError(
                f"{path} exists: this run folder already holds a variation sweep; pass overwrite=True (--force on "
                "the command line) to replace it, or save into another folder."
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps({"format": SWEEP_FORMAT, **self.to_dict()}, indent=2, allow_nan=False), "utf-8")
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> VariationSweep:
        """Read a sweep written by :meth:`save`: the JSON file, or a run folder that holds :data:`SWEEP_FILE`.

        Raises:
            FileNotFoundError: No such file (or the folder holds no sweep).
            ValueError: The file is not a sweep this version reads; the message names what is wrong.
        """
        path = Path(path)
        if path.is_dir():
            path = path / SWEEP_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(
                f"{path} is not valid JSON ({err}); write it again with `quest-lightning sweep --force`"
            ) from None
        if not isinstance(data, dict) or data.get("format", SWEEP_FORMAT) != SWEEP_FORMAT:
            got = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise ValueError(f"{path} is not a variation sweep of format {SWEEP_FORMAT!r} (got {got!r})")
        try:
            return cls.from_dict(data)
        except (KeyError, TypeError, ValueError) as err:
            detail = f"missing key {err}" if isinstance(err, KeyError) else str(err)
            raise ValueError(f"{path} is not a readable variation sweep ({detail})") from None

    def to_markdown(self, digits: int = 1) -> str:
        """A table: one row per pattern, one column per value, cells ``mean ± std`` in percent."""

        def cell(m: float, s: float | None) -> str:
            return f"{100 * m:.{digits}f}" + ("" if s is None else f" ± {100 * s:.{digits}f}")

        head = ["pattern"] + [f"{self.vary} = {v:g}" for v in self.values]
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
        for label, means, stds in zip(self.labels, self.mean, self.std, strict=True):
            lines.append("| " + " | ".join([label] + [cell(m, s) for m, s in zip(means, stds, strict=True)]) + " |")
        return "\n".join(lines)
