"""What the report's sections share: their titles and order, lookups in the summary's JSON, and the writer that
saves each figure as a PNG and attaches it to its section."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from quest_lightning.report import plots
from quest_lightning.report.html import Plot, Section

SECTION_TITLES: dict[str, str] = {
    "run": "Run, device and conventions",
    "key-numbers": "Key numbers",
    "training": "Training curves",
    "activity": "Activity: spike rate, weight sparsity and AOR",
    "transitions": "Weight transitions",
    "write-energy": "Write energy per R-S pattern",
    "read-energy": "Read energy per layer",
    "compute-energy": "Compute energy against CMOS",
}
"""The page's sections, in order: ``<section id="sec-{key}">`` with this ``<h2>`` title."""
SECTION_INTROS: dict[str, str] = {
    "key-numbers": "Energies are joules per sample.",
    "transitions": "How the integer weight codes moved between consecutive optimizer steps inside each monitored "
    "stage (WeightTransitionMonitor): every change of level is a device write.",
    "write-energy": "Device write energy per sample, Σ_{i≠j} C[i,j] E_w^p[i,j] / (steps × batch), for every R-S "
    "pattern p (which device state holds which weight level).",
    "read-energy": "Device read energy per sample, Σ_v N(v) E_r^p[v], from the operations that met a weight at "
    "level v (AORMeter); the analog-input layer and full-precision layers are not priced as device reads.",
    "compute-energy": "Arithmetic energy per sample on the CMOS reference: the ANN (every operation a MAC), a "
    "DIET-SNN-style SNN (an accumulate per input spike) and QUEST (an accumulate per spike that meets a non-zero "
    "weight, AOR).",
}
"""The paragraph under a section's title, where it has one."""
MAX_STAGE_FIGURES = 8
"""At most this many stages get their own transition, trajectory and write-energy figures (evenly spread)."""


def get_path(data: Any, *keys: Any, default: Any = None) -> Any:
    """``data[k1][k2]...``, or ``default`` where a key or index is missing."""
    for key in keys:
        in_map = isinstance(data, Mapping) and key in data
        in_list = isinstance(data, list) and isinstance(key, int) and -len(data) <= key < len(data)
        if not (in_map or in_list):
            return default
        data = data[key]
    return data


def mapping_at(data: Any, *keys: Any) -> Mapping[str, Any]:
    """``data[k1][k2]...`` when that is a mapping, else an empty one (a missing or malformed part of the summary)."""
    value = get_path(data, *keys)
    return value if isinstance(value, Mapping) else {}


def at_pattern(report: Any, index: Any) -> float | None:
    """The energy of pattern ``index`` in a per-pattern report (``{"per_pattern_j": [...]}``), or None."""
    return get_path(report, "per_pattern_j", index) if isinstance(index, int) else None


def is_number(value: Any) -> bool:
    """A finite int or float (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def percent(value: Any) -> str:
    """``0.1234 -> "12.34%"``; ``"–"`` for anything but a finite number."""
    return f"{100 * value:.2f}%" if is_number(value) else "–"


def spread(items: Sequence[str], limit: int = MAX_STAGE_FIGURES) -> list[str]:
    """At most ``limit`` of ``items``, evenly spread, first and last included."""
    if len(items) <= limit:
        return list(items)
    picks = sorted({round(i * (len(items) - 1) / (limit - 1)) for i in range(limit)})
    return [items[i] for i in picks]


def pattern_label(summary: Mapping[str, Any], index: Any) -> str:
    """The label of R-S pattern ``index`` in ``summary["patterns"]``, else ``#index``."""
    labels = summary.get("patterns") or []
    if isinstance(index, int) and 0 <= index < len(labels):
        return str(labels[index])
    return f"#{index}" if index is not None else "–"


class FigureWriter:
    """Saves figures as PNGs under unique ids and attaches them to sections."""

    def __init__(self, out_dir: Path, dpi: int) -> None:
        self.out_dir = out_dir
        self.dpi = dpi
        self.ids: set[str] = set()
        self.written: list[Path] = []

    def slug(self, *parts: str) -> str:
        """A figure id made of ``parts`` (lower case, ``-`` between), unique in this report."""
        base = "-".join(re.sub(r"[^A-Za-z0-9_]+", "-", p).strip("-").lower() for p in parts if p) or "figure"
        slug, k = base, 2
        while slug in self.ids:
            slug, k = f"{base}-{k}", k + 1
        self.ids.add(slug)
        return slug

    def add(self, section: Section, fig: Any, id_parts: Sequence[str], title: str, caption: str) -> bool:
        """Save ``fig`` as ``<id>.png`` and attach it to ``section``; ``False`` (nothing saved) when ``fig`` is None."""
        if fig is None:
            return False
        plot_id = self.slug(*id_parts)
        path = plots.save_png(fig, self.out_dir / f"{plot_id}.png", dpi=self.dpi)
        self.written.append(path)
        section.plots.append(Plot(plot_id, title, caption, path))
        return True


def new_section(sid: str) -> Section:
    """An empty section ``sid`` with its title and introduction (:data:`SECTION_TITLES`, :data:`SECTION_INTROS`)."""
    return Section(sid, SECTION_TITLES[sid], intro=SECTION_INTROS.get(sid, ""))


def skipped(section: Section, reason: str) -> Section:
    """``section`` with a note saying that it was skipped and why."""
    section.notes.append(f"Skipped: {reason}")
    return section
