"""Reading and writing the run summary file."""

from __future__ import annotations

import json
import os

from quest_lightning.summary.record import REGENERATE, SummaryFormatError
from quest_lightning.summary.run import RunSummary

__all__ = ["read_summary", "write_summary"]


def write_summary(path: str | os.PathLike[str], summary: RunSummary) -> None:
    """Write ``summary`` to ``path`` as JSON, through a temporary file and a rename (never half-written)."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(summary.to_dict(), f, indent=2, allow_nan=False)
    os.replace(tmp, path)


def read_summary(path: str | os.PathLike[str]) -> RunSummary:
    """Read a run summary file (``summary-v2``, or a ``summary-v1`` file written by 0.1.0).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        SummaryFormatError: The file is not a summary this version can read; the message says how to regenerate it.
    """
    with open(path, encoding="utf-8") as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as err:
            raise SummaryFormatError(f"{os.fspath(path)} is not valid JSON ({err}); {REGENERATE}") from None
    return RunSummary.from_dict(data)
