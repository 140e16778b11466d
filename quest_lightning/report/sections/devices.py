"""The sections across devices: the writes per cell and the endurance projection, the devices side by side, and the
accuracy against device variation (``quest-lightning sweep``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from quest_lightning.report import plots
from quest_lightning.report.headline import device_headlines
from quest_lightning.report.html import Section, Table
from quest_lightning.report.plots import counted, format_joules, short_name
from quest_lightning.report.sections.common import FigureWriter, at_pattern, new_section, ratio
from quest_lightning.summary import RunSummary

if TYPE_CHECKING:
    from quest_lightning.hardware import VariationSweep


def _epochs(value: float | None, none: str = "never (no cell written)") -> str:
    return f"{value:.4g}" if value is not None else none


def endurance_section(b: FigureWriter, summary: RunSummary) -> Section:
    """The writes per cell of every quantized layer (mean, percentiles, max) and, for every device with an endurance
    limit, the projected epochs to the first worn-out cell."""
    sec = new_section("endurance")
    writes = summary.writes
    if writes is None:
        sec.notes.append(
            "This run did not count writes per cell: WeightTransitionMonitor(track_writes_per_cell=True) counts them, "
            "and a device with nonideal.endurance_cycles then gets an endurance projection."
        )
        return sec
    epochs = f" ({counted(writes.epochs, 'epoch')})" if writes.epochs is not None else " (epoch length unknown)"
    b.add(
        sec,
        plots.writes_per_cell_figure(writes),
        ["writes-per-cell"],
        "Writes per cell",
        f"Writes per cell of every quantized layer over {writes.steps} observed optimizer steps{epochs}, up to "
        f"global step {writes.step}: the mean, the nearest-rank percentiles and the most-written cell "
        f"({writes.max_writes} writes in the whole network).",
    )
    stats = list(dict.fromkeys(p for w in writes.layers.values() for p in w.percentiles))
    rows = [
        [short_name(name), w.cells, w.total, w.mean, *(w.percentiles.get(p) for p in stats), w.max]
        for name, w in writes.layers.items()
    ]
    sec.tables.append(Table(["layer", "cells", "writes", "mean", *stats, "max"], rows, "Writes per cell"))
    worn = [d for d in summary.devices if d.endurance is not None]
    if not worn:
        sec.notes.append(
            "No priced device has an endurance limit (nonideal.endurance_cycles), so no wear-out is projected."
        )
        return sec
    b.add(
        sec,
        plots.endurance_figure(worn),
        ["endurance"],
        "Projected endurance",
        "Epochs from the start of training until the first cell of each layer reaches the device's endurance limit, "
        "if training went on at the write rate measured so far (log scale); the dotted line marks the epochs trained. "
        "With endurance_sigma > 0 the projection uses the median limit N50 for every cell.",
    )
    for d in worn:
        e = d.endurance
        where = f", in {short_name(e.first_layer)}" if e.first_layer else ""
        sec.notes.append(
            f"{d.name}: cells survive {e.endurance_cycles:.3g} writes (σ {e.endurance_sigma:g}); measured over "
            f"{counted(e.epochs, 'epoch')}, the first cell wears out after {_epochs(e.epochs_to_first_failure)} epochs"
            f"{where}."
        )
        rows = [
            [short_name(name), layer.max_writes, layer.max_writes_per_epoch, _epochs(layer.epochs_to_first_failure),
             _epochs(layer.remaining_epochs), layer.worn_out_cells]
            for name, layer in e.layers.items()
        ]  # fmt: skip
        cols = ["layer", "most writes of a cell", "per epoch", "epochs to first failure", "epochs left",
                "cells worn out"]  # fmt: skip
        sec.tables.append(Table(cols, rows, f"Endurance: {d.name}"))
    return sec


def devices_section(b: FigureWriter, summary: RunSummary) -> Section:
    """Every priced device side by side: the last stage's write energy, the last epoch's read energy and the
    compute comparison, at the reported and at the best R-S pattern, and the figure of their energies."""
    sec = new_section("devices")
    heads = device_headlines(summary)
    if not heads:
        sec.notes.append("No device was priced in this run (attach a DeviceEnergyCallback per device to compare).")
        return sec
    if len(heads) == 1:
        sec.notes.append(
            f"One device was priced ({heads[0].name}); a DeviceEnergyCallback per device prices the same counts on "
            "several devices and puts them side by side here."
        )
    rows = []
    for h in heads:
        w, r, c = h.write, h.read, h.compute
        rows.append([
            h.name,
            len(h.pricing.patterns),
            f"{w.stage}: {w.pattern}" if w else "–",
            format_joules(at_pattern(w.report.total, w.pattern_index)) if w else "–",
            h.write_best[0] if h.write_best else "–",
            format_joules(h.write_best[1]) if h.write_best else "–",
            f"{r.stage} {r.epoch}: {r.pattern}" if r else "–",
            format_joules(r.total_j) if r else "–",
            h.read_best[0] if h.read_best else "–",
            format_joules(h.read_best[1]) if h.read_best else "–",
            format_joules(c.quest.total_j) if c else "–",
            ratio(c.ann_over_quest, c) if c else "–",
            _epochs(h.epochs_to_first_failure, "–"),
        ])  # fmt: skip
    cols = ["device", "patterns", "write: stage, reported pattern", "write at reported", "best write pattern",
            "best write", "read: stage epoch, reported pattern", "read at reported", "best read pattern", "best read",
            "QUEST compute", "ANN / QUEST", "epochs to first worn-out cell"]  # fmt: skip
    sec.tables.append(Table(cols, rows, "Energy per sample by device (write: per sample seen)"))
    b.add(
        sec,
        plots.device_energy_figure(heads),
        ["devices-energy"],
        "Devices side by side",
        "Write energy per sample seen of the last transition stage and read energy per sample of the last epoch, each "
        "at the device's best R-S pattern, and QUEST's compute energy per sample (log scale).",
    )
    return sec


def sweep_section(b: FigureWriter, summary: RunSummary, sweep: VariationSweep | None, path: Path | None) -> Section:
    """Accuracy against the swept non-ideality per R-S pattern, when the run folder holds a sweep."""
    sec = new_section("sweep")
    if sweep is None:
        sec.notes.append(
            "This run folder holds no variation sweep. `quest-lightning sweep RUN_DIR --sigma 0.01 0.03 0.05` runs "
            "the trained model on drawn arrays of the device and adds this section to the report."
        )
        return sec
    if sweep.device not in {d.name for d in summary.devices}:
        sec.warnings.append(f"The sweep ran on device {sweep.device!r}, which this run was not priced on.")
    fixed = ", ".join(f"{k}={v}" for k, v in sweep.nonideal.items()) or "none"
    b.add(
        sec,
        plots.sweep_figure(sweep),
        ["variation-sweep"],
        f"Accuracy against {sweep.vary}",
        f"Test accuracy (mean ± std over {sweep.draws} arrays drawn with seed {sweep.seed}; draw d uses the same seed "
        f"for every pattern and value) of the trained model on {sweep.device}, read through the {sweep.mapping} "
        f"converter, against {sweep.vary}; dashed: the model without an array ({100 * sweep.ideal_accuracy:.2f} %). "
        f"Other non-idealities held fixed: {fixed}. From {path}.",
    )
    head = ["pattern"] + [f"{sweep.vary} = {v:g}" for v in sweep.values]
    rows = []
    for label, means, stds in zip(sweep.labels, sweep.mean, sweep.std, strict=True):
        pairs = zip(means, stds, strict=True)
        rows.append([label, *(f"{100 * m:.2f} %" + ("" if s is None else f" ± {100 * s:.2f}") for m, s in pairs)])
    rows.append(["best pattern", *(sweep.best(v) for v in sweep.values)])
    sec.tables.append(Table(head, rows, "Test accuracy per R-S pattern (mean ± std over the draws)"))
    return sec
