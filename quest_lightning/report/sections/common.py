"""What the report's sections share: their titles and order, the devices' names in titles and figure ids, number
formats, and the writer that saves each figure as a PNG and attaches it to its section."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from quest_lightning.report import plots
from quest_lightning.report.html import Plot, Section
from quest_lightning.summary import ComputeComparison, DevicePricing, PatternEnergy

SECTION_TITLES: dict[str, str] = {
    "run": "Run, devices and conventions",
    "key-numbers": "Key numbers",
    "training": "Training curves",
    "training-cost": "Training cost and energy-aware knobs",
    "activity": "Activity: spike rate, weight sparsity and AOR",
    "transitions": "Weight transitions",
    "write-energy": "Write energy per R-S pattern",
    "endurance": "Writes per cell and endurance",
    "read-energy": "Read energy per layer",
    "compute-energy": "Compute energy against CMOS",
    "neurobench": "NeuroBench metrics",
    "devices": "Devices side by side",
    "sweep": "Accuracy against device variation",
}
"""The page's sections, in order: ``<section id="sec-{key}">`` with this ``<h2>`` title."""
SECTION_INTROS: dict[str, str] = {
    "key-numbers": "Energies are joules per sample (write energy: per sample seen in the stage's optimizer steps).",
    "training-cost": "What the run trained with (the energy-aware knobs, when one was on) and what its training steps "
    "cost: the non-zero operations of the forward, backward and weight-gradient passes per sample, counted exactly by "
    "TrainingCostMeter, and their energy per sample (CMOS arithmetic and device reads).",
    "transitions": "How the integer weight codes moved between consecutive optimizer steps inside each monitored "
    "stage (WeightTransitionMonitor): every change of level is a device write.",
    "write-energy": "Device write energy per sample seen, Σ_{i≠j} C[i,j] E_w^p[i,j] / samples, for every R-S "
    "pattern p (which device state holds which weight level), where samples are those the layers met in the stage's "
    "observed optimizer steps (DDP padding left out, summed over ranks).",
    "endurance": "How often each cell was written (a write is a change of a weight's code between two observed "
    "optimizer steps), and when the first cell of a device with an endurance limit would wear out if training went "
    "on at the measured write rate.",
    "read-energy": "Device read energy per sample, Σ_v N(v) E_r^p[v] / samples, from the operations that met a weight "
    "at level v (AORMeter); the analog-input layer and full-precision layers are not priced as device reads.",
    "compute-energy": "Arithmetic energy per sample on the CMOS reference: the ANN (every operation a MAC), a "
    "DIET-SNN-style SNN (an accumulate per input spike) and QUEST (an accumulate per spike that meets a non-zero "
    "weight, AOR).",
    "neurobench": "The network's efficiency in NeuroBench's vocabulary (Yik et al., Nature Communications 2025): "
    "synaptic operations per sample, activation and connection sparsity, and the memory footprint, computed exactly "
    "from the run's counts of its latest measured epoch (the validation epoch when there is one).",
    "devices": "Every device the run was priced on (one DeviceEnergyCallback each), on the same counts: the last "
    "transition stage's write energy, the last epoch's read energy and the compute comparison, at each device's best "
    "R-S pattern.",
    "sweep": "Test accuracy of the trained model run on drawn arrays of device cells, against the device's variation, "
    "for each R-S pattern (quest-lightning sweep).",
}
"""The paragraph under a section's title, where it has one."""
MAX_STAGE_FIGURES = 8
"""At most this many stages get their own transition, trajectory and write-energy figures (evenly spread)."""


def is_number(value: Any) -> bool:
    """A finite int or float (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def percent(value: Any) -> str:
    """``0.1234 -> "12.34%"``; ``"–"`` for anything but a finite number."""
    return f"{100 * value:.2f}%" if is_number(value) else "–"


def ratio(value: float | None, compute: ComputeComparison | None = None) -> str:
    """``4.6 -> "4.6×"``; ``"–"`` for ``None``; marked as no saving when ``compute`` is a silent network."""
    if value is None:
        return "–"
    text = f"{value:.3g}×"
    return text + " (silent network: not a saving)" if compute is not None and compute.silent_network else text


def at_pattern(energy: PatternEnergy, index: int | None) -> float | None:
    """The joules of pattern ``index`` (``None`` when there is none)."""
    return energy.per_pattern_j[index] if index is not None and 0 <= index < len(energy.per_pattern_j) else None


def spread(items: Sequence[str], limit: int = MAX_STAGE_FIGURES) -> list[str]:
    """At most ``limit`` of ``items``, evenly spread, first and last included."""
    if len(items) <= limit:
        return list(items)
    picks = sorted({round(i * (len(items) - 1) / (limit - 1)) for i in range(limit)})
    return [items[i] for i in picks]


def device_tags(devices: Sequence[DevicePricing]) -> list[tuple[DevicePricing, str, str]]:
    """Each device with the part its figure ids get (``""`` for the first device, its name for the others) and the
    part its titles get (``""`` with one device, ``" (name)"`` with several)."""
    many = len(devices) > 1
    return [(d, "" if k == 0 else d.name, f" ({d.name})" if many else "") for k, d in enumerate(devices)]


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
