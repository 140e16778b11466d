"""The energy sections: device write and read energy per R-S pattern, and compute energy against CMOS."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from quest_lightning.report import plots
from quest_lightning.report.html import Section, Table
from quest_lightning.report.plots import format_joules, short_name, stage_order
from quest_lightning.report.sections.common import (
    FigureWriter,
    at_pattern,
    get_path,
    mapping_at,
    new_section,
    pattern_label,
    skipped,
    spread,
)


def write_energy_section(b: FigureWriter, summary: Mapping[str, Any]) -> Section:
    """Write energy per sample for every R-S pattern, per stage and per layer."""
    sec = new_section("write-energy")
    write = mapping_at(summary, "energy", "write")
    stages = [s for s, e in write.items() if isinstance(e, Mapping) and isinstance(e.get("report"), Mapping)]
    if not stages:
        return skipped(
            sec, "the summary has no write energy (attach DeviceEnergyCallback and let a transition stage finish)."
        )
    labels = summary.get("patterns") or None
    device = get_path(summary, "device", "name", default="the device")
    if len(stages) >= 2:
        b.add(
            sec,
            plots.write_overview_figure({s: write[s] for s in stages}),
            ["write-energy", "overview"],
            "Write energy by stage",
            "Write energy per sample of each stage at the reported pattern (log scale), per layer and in total.",
        )
    shown = spread(stages)
    if len(shown) < len(stages):
        sec.notes.append(f"{len(stages)} stages: per-pattern figures are shown for {len(shown)} of them.")
    rows, layer_rows = [], []
    for stage in stages:
        entry = write[stage]
        report = entry["report"]
        idx = entry.get("pattern_index")
        total = report.get("total") or {}
        count = len(total.get("per_pattern_j") or [])
        if stage in shown:
            kind = "grouped bars" if count <= plots.MANY_PATTERNS else "each curve sorted from cheapest to dearest"
            caption = (
                f"Stage {stage}: {entry.get('steps')} optimizer steps of batch {entry.get('batch_size')}; {count} "
                f"patterns of {device} at {report.get('bits', summary.get('bits'))} bits ({kind}). Left: joules per "
                f"sample per layer and in total; right: relative to each layer's best pattern. Best total pattern: "
                f"{total.get('best_label', '–')} ({format_joules(total.get('best_j'))}); reported pattern: "
                f"{entry.get('pattern', pattern_label(summary, idx))}."
            )
            b.add(
                sec,
                plots.pattern_energy_figure(report, f"Write energy per pattern, stage {stage!r}", labels, idx),
                ["write-energy", stage],
                f"Write energy per pattern, stage {stage}",
                caption,
            )
        at = at_pattern(total, idx)
        per_layer = report.get("per_layer") or {}
        same = len({r.get("best_index") for r in per_layer.values()}) == 1 if per_layer else None
        rows.append(
            [stage, entry.get("steps"), entry.get("batch_size"), entry.get("pattern", "–"), format_joules(at),
             total.get("best_label", "–"), format_joules(total.get("best_j")), format_joules(total.get("worst_j")),
             same]
        )  # fmt: skip
        for name, r in per_layer.items():
            layer_at = at_pattern(r, idx)
            layer_rows.append(
                [stage, short_name(name), format_joules(layer_at), r.get("best_label", "–"),
                 format_joules(r.get("best_j")), format_joules(r.get("worst_j"))]
            )  # fmt: skip
    cols = ["stage", "steps", "batch", "reported pattern", "total at reported", "best total pattern", "best",
            "worst", "same best in every layer"]  # fmt: skip
    sec.tables.append(Table(cols, rows, "Write energy per sample, totals"))
    sec.tables.append(
        Table(["stage", "layer", "at reported", "best pattern", "best", "worst"], layer_rows, "Write energy per layer")
    )
    return sec


def read_energy_section(b: FigureWriter, summary: Mapping[str, Any]) -> Section:
    """Read energy per sample for every R-S pattern, over epochs and per layer."""
    sec = new_section("read-energy")
    read = mapping_at(summary, "energy", "read")
    stages = [
        s
        for s in stage_order(read)
        if any(isinstance(e, Mapping) and isinstance(e.get("report"), Mapping) for e in read.get(s) or [])
    ]
    if not stages:
        return skipped(
            sec,
            "the summary has no read energy (DeviceEnergyCallback with AORMeter records it at the end of each "
            "epoch; a model with no quantized inner layer has none).",
        )
    if "val" not in stages:
        sec.notes.append("No val read energy (no validation loop): training stage only.")
    labels = summary.get("patterns") or None
    b.add(
        sec,
        plots.read_epochs_figure({s: read[s] for s in stages}),
        ["read-energy", "epochs"],
        "Read energy over epochs",
        "Read energy per sample at the reported pattern of each epoch (log scale), per layer and in total; one "
        "panel per stage.",
    )
    rows = []
    for stage in stages:
        entries = [e for e in read[stage] if isinstance(e, Mapping) and isinstance(e.get("report"), Mapping)]
        last = entries[-1]
        report = last["report"]
        idx = last.get("pattern_index")
        total = report.get("total") or {}
        count = len(total.get("per_pattern_j") or [])
        b.add(
            sec,
            plots.pattern_energy_figure(
                report, f"Read energy per pattern ({stage}, epoch {last.get('epoch')})", labels, idx
            ),
            ["read-energy", stage],
            f"Read energy per pattern, {stage}",
            f"Last {stage} epoch ({last.get('epoch')}): read energy per sample of the {count} patterns, per layer and "
            f"in total; right: relative to each layer's best. Zero-level reads counted: "
            f"{report.get('count_zero_level_reads')}. Best total pattern: {total.get('best_label', '–')} "
            f"({format_joules(total.get('best_j'))}).",
        )
        for name, r in [*(report.get("per_layer") or {}).items(), ("total", total)]:
            rows.append(
                [stage, last.get("epoch"), short_name(name), last.get("pattern", "–"),
                 format_joules(at_pattern(r, idx)), r.get("best_label", "–"), format_joules(r.get("best_j"))]
            )  # fmt: skip
    cols = ["stage", "epoch", "layer", "reported pattern", "at reported", "best pattern", "best"]
    sec.tables.append(Table(cols, rows, "Read energy per sample, last epoch"))
    return sec


def compute_energy_section(b: FigureWriter, summary: Mapping[str, Any]) -> Section:
    """Compute energy per sample of the CMOS ANN, a DIET-SNN-style SNN and QUEST."""
    sec = new_section("compute-energy")
    compute = mapping_at(summary, "energy", "compute")
    stages = [s for s in stage_order(compute) if isinstance(compute.get(s), Mapping)]
    if not stages:
        return skipped(sec, "the summary has no compute comparison (DeviceEnergyCallback with AORMeter).")
    cmos = mapping_at(summary, "cmos")
    ref = ""
    if cmos:
        ref = f"CMOS {cmos.get('name')}: E_MAC {format_joules(cmos.get('e_mac_j'))}, "
        ref += f"E_AC {format_joules(cmos.get('e_ac_j'))}."
    rows = []
    for stage in stages:
        c = compute[stage]
        convention = c.get("convention") or f"first_layer={c.get('first_layer')!r}"
        if not b.add(
            sec,
            plots.compute_figure(stage, c),
            ["compute-energy", stage],
            f"Compute energy vs CMOS, {stage}",
            f"Energy per sample (log scale) of the last {stage} epoch, T = {c.get('timesteps')}; the ratios are "
            f"annotated. First-layer convention: {convention}. {ref}",
        ):
            sec.notes.append(f"Stage {stage}: no totals to plot.")
        rows.append(
            [stage, format_joules(get_path(c, "ann", "total_j")), format_joules(get_path(c, "diet_snn", "total_j")),
             format_joules(get_path(c, "quest", "total_j")), c.get("ann_over_quest"), c.get("diet_over_quest"),
             c.get("timesteps"), convention]
        )  # fmt: skip
    cols = ["stage", "CMOS ANN", "DIET-SNN", "QUEST", "ANN / QUEST", "DIET-SNN / QUEST", "T", "first-layer convention"]
    sec.tables.append(Table(cols, rows, "Compute energy per sample"))
    return sec
