"""The report's opening sections: the run and its devices, the key numbers, and the training curves."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from quest_lightning.report import plots
from quest_lightning.report.headline import device_headlines
from quest_lightning.report.html import Section, Table
from quest_lightning.report.inputs import METRICS_FILE
from quest_lightning.report.plots import CURVE_STAGES, counted, format_joules, stage_order
from quest_lightning.report.sections.common import FigureWriter, at_pattern, is_number, new_section, ratio, skipped
from quest_lightning.summary import DevicePricing, RunSummary
from quest_lightning.summary.record import CONVENTIONS, UNITS


def _device_rows(pricing: DevicePricing) -> tuple[list[list[Any]], str | None, bool]:
    """The device's description as table rows, a note when it cannot be read, and whether it is illustrative."""
    from quest_lightning.devices.io import device_from_dict

    try:
        spec = device_from_dict(pricing.device)
    except (TypeError, ValueError, KeyError) as err:
        return [["name", pricing.name]], f"The description of device {pricing.name!r} cannot be read: {err}", False
    r = spec.resistances_ohm
    rows = [
        ["name", spec.name],
        ["illustrative numbers", spec.illustrative],
        ["states", len(r)],
        ["resistances (Ω)", ", ".join(f"{v:g}" for v in r)],
        ["can leak (LIF possible)", spec.can_leak],
        ["direct transitions (RSTD edges)", len(spec.transitions)],
    ]
    if spec.read_energy_j:
        rows.append(["read energy per state", ", ".join(format_joules(v) for v in spec.read_energy_j)])
    else:
        rows.append(["read voltage (V), time (s)", f"{spec.read_voltage_v}, {spec.read_time_s}"])
    nonideal = spec.nonideal
    shown = "ideal" if nonideal.is_ideal else ", ".join(f"{k}={v}" for k, v in nonideal.to_dict().items())
    rows += [["non-idealities", shown], ["description", spec.description or "–"], ["source", spec.source or "–"]]
    return rows, None, spec.illustrative


def _pricing_rows(pricing: DevicePricing) -> list[list[Any]]:
    cmos = pricing.cmos
    return [
        ["weight bits", pricing.bits],
        ["levels", 2**pricing.bits - 1],
        ["R-S patterns priced", len(pricing.patterns)],
        ["pattern selection", str(pricing.pattern_selection)],
        ["CMOS reference", cmos.name],
        ["E_MAC", format_joules(cmos.e_mac_j)],
        ["E_AC", format_joules(cmos.e_ac_j)],
        ["first-layer convention", pricing.first_layer],
        ["zero-level reads charged", pricing.count_zero_level_reads],
        ["callback (state key)", pricing.key],
    ]


def run_section(
    summary: RunSummary, summary_path: Path, metrics_path: Path | None, sweep_path: Path | None = None
) -> Section:
    """Where the figures come from: the files read, every device, the quantization, the CMOS reference,
    conventions."""
    sec = new_section("run")
    if summary.curves:
        curves = f"the summary's per-epoch curves ({counted(len(summary.curves), 'epoch')})"
    elif metrics_path is not None:
        curves = f"{metrics_path} (the summary records no per-epoch curves)"
    else:
        curves = "none: the summary records no per-epoch curves and there is no metrics.csv"
    run_rows = [
        ["summary file", str(summary_path)],
        ["summary format", summary.format],
        ["training curves from", curves],
        ["variation sweep", str(sweep_path) if sweep_path is not None else "none"],
        ["weight bits", summary.bits if summary.bits is not None else "–"],
        ["devices priced", ", ".join(d.name for d in summary.devices) or "none"],
    ]
    sec.tables.append(Table(["item", "value"], run_rows, "Run"))
    if not summary.devices:
        sec.notes.append("The summary holds no device description (no DeviceEnergyCallback priced the run).")
    for pricing in summary.devices:
        rows, problem, illustrative = _device_rows(pricing)
        sec.tables.append(Table(["device", "value"], rows, f"Device: {pricing.name}"))
        if problem:
            sec.warnings.append(problem)
        if illustrative:
            sec.warnings.append(
                f"Device {pricing.name!r} carries illustrative (placeholder) numbers: use its energies to rank "
                "patterns and compare ratios, not to quote absolute joules."
            )
        title = f"Patterns and CMOS reference: {pricing.name}"
        sec.tables.append(Table(["setting", "value"], _pricing_rows(pricing), title))
    sec.tables.append(Table(["convention", "value"], [[k, v] for k, v in CONVENTIONS.items()], "Conventions"))
    sec.tables.append(Table(["quantity", "unit"], [[k, v] for k, v in UNITS.items()], "Units"))
    return sec


def _last_finite(rows: Sequence[dict[str, float | None]], column: str) -> float | None:
    values = [r.get(column) for r in rows if is_number(r.get(column))]
    return values[-1] if values else None


def _curve_rows(summary: RunSummary, metrics: list[dict[str, float | None]] | None) -> list[list[Any]]:
    """The last loss, accuracy and learning rate: from the summary's curves, else from ``metrics.csv``."""
    rows: list[list[Any]] = []
    if summary.curves:
        for stage in CURVE_STAGES:
            for what, values in (("loss", [c.loss(stage) for c in summary.curves]),
                                 ("acc", [c.accuracy(stage) for c in summary.curves])):  # fmt: skip
                value = next((v for v in reversed(values) if v is not None), None)
                if value is not None:
                    rows.append([f"last {stage}/{what}", "summary curves", value])
        last = summary.curves[-1]
        for k, lr in enumerate(last.learning_rates):
            rows.append([f"learning rate, group {k} (epoch {last.epoch})", "summary curves", lr])
    elif metrics:
        for cols in plots.training_columns(metrics).values():
            for col in cols:
                rows.append([f"last {col}", METRICS_FILE, _last_finite(metrics, col)])
    return rows


def key_numbers_section(summary: RunSummary, metrics: list[dict[str, float | None]] | None) -> Section:
    """One table of the headline figures: the last training metrics, for every device the compute energy and ratios,
    the write energy of every stage and the read energy of the last epoch, the endurance, and the activity means."""
    sec = new_section("key-numbers")
    rows = _curve_rows(summary, metrics)
    if summary.energy_aware is not None:
        rows.append(["energy-aware knobs", summary.energy_aware.source, summary.energy_aware.describe()])
    if summary.training_cost is not None:
        last = summary.training_cost.latest
        total = format_joules(last.energy.total_j)
        rows.append([f"training step energy per sample (epoch {last.epoch})", "TrainingCostMeter", total])
    many = len(summary.devices) > 1
    for head in device_headlines(summary):
        p = head.pricing
        who = f"{p.name}: " if many else ""
        for stage in stage_order(p.compute):
            c = p.compute[stage]
            rows.append([f"{who}QUEST compute energy", stage, format_joules(c.quest.total_j)])
            rows.append([f"{who}CMOS ANN / QUEST", stage, ratio(c.ann_over_quest, c)])
            rows.append([f"{who}DIET-SNN / QUEST", stage, ratio(c.diet_over_quest, c)])
        for stage, w in p.write.items():
            at = format_joules(at_pattern(w.report.total, w.pattern_index))
            rows.append([f"{who}write energy per sample seen, pattern {w.pattern}", stage, at])
            best = w.report.total
            rows.append([f"{who}best write pattern (total)", stage, f"{best.best_label}: {format_joules(best.best_j)}"])
        for stage in stage_order(p.read):
            e = p.last_read(stage)
            if e is not None and e.report is not None:
                at = format_joules(at_pattern(e.report.total, e.pattern_index))
                rows.append([f"{who}read energy (epoch {e.epoch}), pattern {e.pattern or '–'}", stage, at])
        if p.endurance is not None:
            epochs = p.endurance.epochs_to_first_failure
            value = counted(epochs, "epoch") if epochs is not None else "no cell written"
            rows.append([f"{who}projected epochs to the first worn-out cell", "endurance", value])
    for stage in stage_order(summary.activity):
        recs = [r for r in summary.activity[stage] if r.empty is None]
        if recs:
            last = recs[-1]
            for label, value in (("mean AOR", last.aor_mean), ("mean weight sparsity", last.sparsity_mean),
                                 ("mean spike rate", last.spike_rate_mean)):  # fmt: skip
                if value is not None:
                    rows.append([f"{label} (epoch {last.epoch})", stage, value])
    if rows:
        sec.tables.append(Table(["quantity", "stage / source", "value"], rows))
    else:
        sec.notes.append(
            "Nothing to summarise: the summary holds no energy, activity or curves and there is no metrics.csv."
        )
    return sec


def training_section(
    b: FigureWriter, summary: RunSummary, metrics: list[dict[str, float | None]] | None, metrics_path: Path | None
) -> Section:
    """The summary's per-epoch curves (whatever the logger); for older summaries without them, the curves of
    ``metrics.csv`` (Lightning's ``CSVLogger``)."""
    sec = new_section("training")
    if summary.curves:
        caption = (
            "Loss and accuracy (train and val) and the learning rate of every optimizer parameter group at the end "
            f"of each epoch ({counted(len(summary.curves), 'epoch')}), as the run summary recorded them (whatever the "
            "logger)."
        )
        if not b.add(sec, plots.curves_figure(summary.curves), ["training"], "Training curves", caption):
            skipped(sec, "the summary's curves hold no loss, accuracy or learning rate.")
        return sec
    if metrics is None:
        return skipped(
            sec,
            f"no {METRICS_FILE} next to the summary and no per-epoch curves in it (summaries written by this "
            "version record them whatever the logger; older runs need Lightning's CSVLogger).",
        )
    caption = f"Metrics logged by the LightningModule, read from {metrics_path}; one panel per metric."
    if not b.add(sec, plots.training_figure(metrics), ["training"], "Training metrics", caption):
        skipped(sec, f"{METRICS_FILE} holds no model metrics (loss, accuracy) to plot.")
    return sec
