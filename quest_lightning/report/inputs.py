"""What the report reads: the run's ``quest_summary.json`` (through :func:`~quest_lightning.summary.read_summary`) and,
when they lie next to it, a variation sweep (``variation_sweep.json``), Lightning's ``metrics.csv`` (for older
summaries without per-epoch curves) and the recipe's failure record."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from quest_lightning.summary import SUMMARY_FILE

if TYPE_CHECKING:
    from quest_lightning.hardware import VariationSweep

__all__ = [
    "FAILED_FILE",
    "METRICS_FILE",
    "SUMMARY_FILE",
    "find_summary",
    "read_failure",
    "read_metrics_csv",
    "read_sweep",
    "sweep_path",
]

METRICS_FILE = "metrics.csv"
"""The file name of Lightning's ``CSVLogger`` metrics."""


def find_summary(run_dir: str | Path) -> Path:
    """The run's ``quest_summary.json``: in ``run_dir`` or anywhere below it (the newest if several).

    ``run_dir`` may also be the summary file itself.

    Raises:
        FileNotFoundError: If ``run_dir`` does not exist or holds no summary.
    """
    root = Path(run_dir)
    if root.is_file():
        return root
    if not root.is_dir():
        raise FileNotFoundError(f"run directory {str(root)!r} does not exist")
    found = [p for p in root.rglob(SUMMARY_FILE) if p.is_file()]
    if not found:
        raise FileNotFoundError(
            f"no {SUMMARY_FILE} in {str(root)!r} or below it. It is written by DeviceEnergyCallback into the "
            "logger's log_dir at the end of every training epoch; attach it to the Trainer (with AORMeter and "
            "WeightTransitionMonitor for the activity and transition figures) and point the report at that folder."
        )
    return max(found, key=lambda p: (p.stat().st_mtime, str(p)))


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def read_metrics_csv(path: str | Path) -> list[dict[str, float | None]]:
    """Lightning's ``metrics.csv`` as rows of ``{column: float or None}`` (empty and non-numeric cells are None)."""
    with open(path, newline="", encoding="utf-8") as f:
        return [{k: _number(v) for k, v in row.items() if k} for row in csv.DictReader(f)]


FAILED_FILE = "quest_failed.json"
"""Written next to the run summary by the recipe CLI when the run raised (what, where, when)."""


def read_failure(summary_path: str | Path) -> dict[str, Any] | None:
    """The failure record next to a run summary (``quest_failed.json``), or None when the run did not fail."""
    path = Path(summary_path).with_name(FAILED_FILE)
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        return {"error": type(err).__name__, "message": f"{path} is unreadable: {err}"}
    return record if isinstance(record, dict) else {"message": f"{path} holds no failure record"}


def sweep_path(summary_path: str | Path) -> Path:
    """Where the run's variation sweep lies: :data:`~quest_lightning.hardware.results.SWEEP_FILE` next to the
    summary."""
    from quest_lightning.hardware.results import SWEEP_FILE

    return Path(summary_path).with_name(SWEEP_FILE)


def read_sweep(summary_path: str | Path) -> VariationSweep | None:
    """The variation sweep next to a run summary, or ``None`` when there is none.

    Raises:
        ValueError: The file is there but is not a sweep this version reads.
    """
    from quest_lightning.hardware.results import VariationSweep

    path = sweep_path(summary_path)
    return VariationSweep.load(path) if path.is_file() else None
