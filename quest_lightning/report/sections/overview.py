"""The report's opening sections: the run and its device, the key numbers, and the training curves."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from quest_lightning.report import plots
from quest_lightning.report.html import Section, Table
from quest_lightning.report.inputs import METRICS_FILE
from quest_lightning.report.plots import format_joules, stage_order
from quest_lightning.report.sections.common import (
    FigureWriter,
    at_pattern,
    get_path,
    is_number,
    mapping_at,
    new_section,
    pattern_label,
    skipped,
)


def run_section(summary: Mapping[str, Any], summary_path: Path, metrics_path: Path | None) -> Section:
    """Where the figures come from: the files read, the device, the quantization, the CMOS reference, conventions."""
    sec = new_section("run")
    device = mapping_at(summary, "device")
    run_rows = [
        ["summary file", str(summary_path)],
        ["metrics.csv", str(metrics_path) if metrics_path else "absent (no CSVLogger): no training curves"],
        ["summary format", summary.get("format", "–")],
    ]
    sec.tables.append(Table(["item", "value"], run_rows, "Run"))
    if device:
        resistances = device.get("resistances_ohm") or []
        rows = [
            ["name", device.get("name", "–")],
            ["illustrative numbers", device.get("illustrative")],
            ["states", len(resistances) if resistances else "–"],
            ["resistances (Ω)", ", ".join(f"{r:g}" for r in resistances) if resistances else "–"],
            ["can leak (LIF possible)", device.get("can_leak")],
            ["direct transitions (RSTD edges)", len(device.get("transitions") or [])],
        ]
        if device.get("read_energy_j"):
            rows.append(["read energy per state", ", ".join(format_joules(v) for v in device["read_energy_j"])])
        else:
            rows.append(["read voltage (V), time (s)", f"{device.get('read_voltage_v')}, {device.get('read_time_s')}"])
        rows += [["description", device.get("description", "–")], ["source", device.get("source", "–")]]
        sec.tables.append(Table(["device", "value"], rows, "Device"))
        if device.get("illustrative"):
            sec.warnings.append(
                f"Device {device.get('name')!r} carries illustrative (placeholder) numbers: use its energies to rank "
                "patterns and compare ratios, not to quote absolute joules."
            )
    else:
        sec.notes.append("The summary holds no device description.")
    bits = summary.get("bits")
    patterns = summary.get("patterns") or []
    qrows = [
        ["weight bits", bits],
        ["levels", 2**bits - 1 if isinstance(bits, int) else "–"],
        ["R-S patterns priced", len(patterns) if patterns else "–"],
        ["pattern selection", str(summary.get("pattern_selection", "–"))],
    ]
    cmos = mapping_at(summary, "cmos")
    if cmos:
        qrows += [
            ["CMOS reference", cmos.get("name", "–")],
            ["E_MAC", format_joules(cmos.get("e_mac_j"))],
            ["E_AC", format_joules(cmos.get("e_ac_j"))],
        ]
    sec.tables.append(Table(["setting", "value"], qrows, "Quantization, patterns and CMOS reference"))
    conventions = mapping_at(summary, "conventions")
    if conventions:
        sec.tables.append(Table(["convention", "value"], [[k, str(v)] for k, v in conventions.items()], "Conventions"))
    units = mapping_at(summary, "units")
    if units:
        sec.tables.append(Table(["quantity", "unit"], [[k, str(v)] for k, v in units.items()], "Units"))
    return sec


def _last_finite(rows: Sequence[Mapping[str, Any]], column: str) -> float | None:
    values = [r.get(column) for r in rows if is_number(r.get(column))]
    return values[-1] if values else None


def key_numbers_section(summary: Mapping[str, Any], metrics: list[dict[str, float | None]] | None) -> Section:
    """One table of the headline figures: last metrics, energies at the reported patterns, ratios, activity means."""
    sec = new_section("key-numbers")
    rows: list[list[Any]] = []
    if metrics:
        for cols in plots.training_columns(metrics).values():
            for col in cols:
                rows.append([f"last {col}", "metrics.csv", _last_finite(metrics, col)])
    compute = mapping_at(summary, "energy", "compute")
    for stage in stage_order(compute):
        c = compute[stage]
        rows.append(["QUEST compute energy", stage, format_joules(get_path(c, "quest", "total_j"))])
        rows.append(
            ["CMOS ANN / QUEST", stage, f"{c['ann_over_quest']:.3g}×" if is_number(c.get("ann_over_quest")) else "–"]
        )
        rows.append(
            ["DIET-SNN / QUEST", stage, f"{c['diet_over_quest']:.3g}×" if is_number(c.get("diet_over_quest")) else "–"]
        )
    write = mapping_at(summary, "energy", "write")
    for stage, entry in write.items():
        idx = entry.get("pattern_index")
        total = get_path(entry, "report", "total", default={}) or {}
        at = at_pattern(total, idx)
        rows.append(
            [f"write energy, pattern {entry.get('pattern', pattern_label(summary, idx))}", stage, format_joules(at)]
        )
        rows.append(
            [
                "best write pattern (total)",
                stage,
                f"{total.get('best_label', '–')}: {format_joules(total.get('best_j'))}",
            ]
        )
    read = mapping_at(summary, "energy", "read")
    for stage in stage_order(read):
        entries = [e for e in read[stage] or [] if isinstance(e, Mapping) and e.get("report")]
        if entries:
            e = entries[-1]
            idx = e.get("pattern_index")
            at = at_pattern(get_path(e, "report", "total"), idx)
            rows.append(
                [f"read energy (epoch {e.get('epoch')}), pattern {e.get('pattern', '–')}", stage, format_joules(at)]
            )
    activity = mapping_at(summary, "activity")
    for stage in stage_order(activity):
        recs = activity[stage] or []
        if recs:
            last = recs[-1]
            for key, label in (("aor_mean", "mean AOR"), ("sparsity_mean", "mean weight sparsity"),
                               ("spike_rate_mean", "mean spike rate")):  # fmt: skip
                if is_number(last.get(key)):
                    rows.append([f"{label} (epoch {last.get('epoch')})", stage, last[key]])
    if rows:
        sec.tables.append(Table(["quantity", "stage / source", "value"], rows))
    else:
        sec.notes.append(
            "Nothing to summarise: the summary holds no energy or activity figures and there is no metrics.csv."
        )
    return sec


def training_section(
    b: FigureWriter, metrics: list[dict[str, float | None]] | None, metrics_path: Path | None
) -> Section:
    """The curves of ``metrics.csv`` (Lightning's ``CSVLogger``)."""
    sec = new_section("training")
    if metrics is None:
        return skipped(sec, f"no {METRICS_FILE} next to the summary (log with Lightning's CSVLogger to get one).")
    caption = f"Metrics logged by the LightningModule, read from {metrics_path}; one panel per metric."
    if not b.add(sec, plots.training_figure(metrics), ["training"], "Training metrics", caption):
        skipped(sec, f"{METRICS_FILE} holds no model metrics (loss, accuracy) to plot.")
    return sec
