"""``quest-lightning report``: turn a finished run's ``quest_summary.json`` into PNG plots and one HTML page.

The report reads only files: the JSON summary written by
:class:`~quest_lightning.lightning.callbacks.DeviceEnergyCallback` and, when it lies next to it, Lightning's
``metrics.csv`` (``CSVLogger``). It needs neither the model nor W&B nor the network. Example::

    from quest_lightning.report import build_report

    page = build_report("lightning_logs/version_0")  # -> lightning_logs/version_0/report/report.html

or ``quest-lightning report lightning_logs/version_0 [--out-dir DIR]``.
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import math
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from quest_lightning.report import plots
from quest_lightning.report.html import Plot, Section, Table, render_page
from quest_lightning.report.plots import format_joules, short_name, stage_order

__all__ = [
    "METRICS_FILE",
    "REPORT_FILE",
    "SECTION_TITLES",
    "SUMMARY_FILE",
    "Plot",
    "Section",
    "Table",
    "build_report",
    "build_sections",
    "find_summary",
    "read_metrics_csv",
]

SUMMARY_FILE = "quest_summary.json"  # the same name as quest_lightning.lightning.callbacks.SUMMARY_FILE
METRICS_FILE = "metrics.csv"
REPORT_FILE = "report.html"
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
MAX_STAGE_FIGURES = 8
"""At most this many stages get their own transition, trajectory and write-energy figures (evenly spread)."""


# --------------------------------------------------------------------------------------------------------------------
# inputs


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


# --------------------------------------------------------------------------------------------------------------------
# helpers


def _get(data: Any, *keys: Any, default: Any = None) -> Any:
    for key in keys:
        in_map = isinstance(data, Mapping) and key in data
        in_list = isinstance(data, list) and isinstance(key, int) and -len(data) <= key < len(data)
        if not (in_map or in_list):
            return default
        data = data[key]
    return data


def _is_num(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _pct(value: Any) -> str:
    return f"{100 * value:.2f}%" if _is_num(value) else "–"


def _spread(items: Sequence[str], limit: int = MAX_STAGE_FIGURES) -> list[str]:
    if len(items) <= limit:
        return list(items)
    picks = sorted({round(i * (len(items) - 1) / (limit - 1)) for i in range(limit)})
    return [items[i] for i in picks]


def _pattern_label(summary: Mapping[str, Any], index: Any) -> str:
    labels = summary.get("patterns") or []
    if isinstance(index, int) and 0 <= index < len(labels):
        return str(labels[index])
    return f"#{index}" if index is not None else "–"


class _Builder:
    """Saves figures as PNGs under unique ids and attaches them to sections."""

    def __init__(self, out_dir: Path, dpi: int) -> None:
        self.out_dir = out_dir
        self.dpi = dpi
        self.ids: set[str] = set()

    def slug(self, *parts: str) -> str:
        base = "-".join(re.sub(r"[^A-Za-z0-9_]+", "-", p).strip("-").lower() for p in parts if p) or "figure"
        slug, k = base, 2
        while slug in self.ids:
            slug, k = f"{base}-{k}", k + 1
        self.ids.add(slug)
        return slug

    def add(self, section: Section, fig: Any, id_parts: Sequence[str], title: str, caption: str) -> bool:
        if fig is None:
            return False
        plot_id = self.slug(*id_parts)
        path = plots.save_png(fig, self.out_dir / f"{plot_id}.png", dpi=self.dpi)
        section.plots.append(Plot(plot_id, title, caption, path))
        return True


# --------------------------------------------------------------------------------------------------------------------
# sections


def _run_section(summary: Mapping[str, Any], summary_path: Path, metrics_path: Path | None) -> Section:
    sec = Section("run", SECTION_TITLES["run"])
    device = summary.get("device") if isinstance(summary.get("device"), Mapping) else {}
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
    cmos = summary.get("cmos") if isinstance(summary.get("cmos"), Mapping) else {}
    if cmos:
        qrows += [
            ["CMOS reference", cmos.get("name", "–")],
            ["E_MAC", format_joules(cmos.get("e_mac_j"))],
            ["E_AC", format_joules(cmos.get("e_ac_j"))],
        ]
    sec.tables.append(Table(["setting", "value"], qrows, "Quantization, patterns and CMOS reference"))
    conventions = summary.get("conventions") if isinstance(summary.get("conventions"), Mapping) else {}
    if conventions:
        sec.tables.append(Table(["convention", "value"], [[k, str(v)] for k, v in conventions.items()], "Conventions"))
    units = summary.get("units") if isinstance(summary.get("units"), Mapping) else {}
    if units:
        sec.tables.append(Table(["quantity", "unit"], [[k, str(v)] for k, v in units.items()], "Units"))
    return sec


def _last_finite(rows: Sequence[Mapping[str, Any]], column: str) -> float | None:
    values = [r.get(column) for r in rows if _is_num(r.get(column))]
    return values[-1] if values else None


def _key_section(summary: Mapping[str, Any], metrics: list[dict[str, float | None]] | None) -> Section:
    sec = Section("key-numbers", SECTION_TITLES["key-numbers"], intro="Energies are joules per sample.")
    rows: list[list[Any]] = []
    if metrics:
        for cols in plots.training_columns(metrics).values():
            for col in cols:
                rows.append([f"last {col}", "metrics.csv", _last_finite(metrics, col)])
    compute = _get(summary, "energy", "compute", default={}) or {}
    for stage in stage_order(compute):
        c = compute[stage]
        rows.append(["QUEST compute energy", stage, format_joules(_get(c, "quest", "total_j"))])
        rows.append(
            ["CMOS ANN / QUEST", stage, f"{c['ann_over_quest']:.3g}×" if _is_num(c.get("ann_over_quest")) else "–"]
        )
        rows.append(
            ["DIET-SNN / QUEST", stage, f"{c['diet_over_quest']:.3g}×" if _is_num(c.get("diet_over_quest")) else "–"]
        )
    write = _get(summary, "energy", "write", default={}) or {}
    for stage, entry in write.items():
        idx = entry.get("pattern_index")
        total = _get(entry, "report", "total", default={}) or {}
        at = _get(total, "per_pattern_j", idx) if isinstance(idx, int) else None
        rows.append(
            [f"write energy, pattern {entry.get('pattern', _pattern_label(summary, idx))}", stage, format_joules(at)]
        )
        rows.append(
            [
                "best write pattern (total)",
                stage,
                f"{total.get('best_label', '–')}: {format_joules(total.get('best_j'))}",
            ]
        )
    read = _get(summary, "energy", "read", default={}) or {}
    for stage in stage_order(read):
        entries = [e for e in read[stage] or [] if isinstance(e, Mapping) and e.get("report")]
        if entries:
            e = entries[-1]
            idx = e.get("pattern_index")
            at = _get(e, "report", "total", "per_pattern_j", idx) if isinstance(idx, int) else None
            rows.append(
                [f"read energy (epoch {e.get('epoch')}), pattern {e.get('pattern', '–')}", stage, format_joules(at)]
            )
    activity = summary.get("activity") if isinstance(summary.get("activity"), Mapping) else {}
    for stage in stage_order(activity):
        recs = activity[stage] or []
        if recs:
            last = recs[-1]
            for key, label in (("aor_mean", "mean AOR"), ("sparsity_mean", "mean weight sparsity"),
                               ("spike_rate_mean", "mean spike rate")):  # fmt: skip
                if _is_num(last.get(key)):
                    rows.append([f"{label} (epoch {last.get('epoch')})", stage, last[key]])
    if rows:
        sec.tables.append(Table(["quantity", "stage / source", "value"], rows))
    else:
        sec.notes.append(
            "Nothing to summarise: the summary holds no energy or activity figures and there is no metrics.csv."
        )
    return sec


def _training_section(b: _Builder, metrics: list[dict[str, float | None]] | None, metrics_path: Path | None) -> Section:
    sec = Section("training", SECTION_TITLES["training"])
    if metrics is None:
        sec.notes.append(f"Skipped: no {METRICS_FILE} next to the summary (log with Lightning's CSVLogger to get one).")
        return sec
    caption = f"Metrics logged by the LightningModule, read from {metrics_path}; one panel per metric."
    if not b.add(sec, plots.training_figure(metrics), ["training"], "Training metrics", caption):
        sec.notes.append(f"Skipped: {METRICS_FILE} holds no model metrics (loss, accuracy) to plot.")
    return sec


_ACTIVITY_CAPTIONS = {
    "spike_rate": "Spikes per neuron per sample, summed over the T time steps and averaged over the epoch; one line "
    "per spiking layer, one panel per stage. Dashed: the mean over layers.",
    "sparsity": "Share of zero codes among each quantized layer's weights at the end of the epoch (full-precision "
    "layers have no codes and are left out). Dashed: the mean over the inner quantized layers.",
    "aor": "Activation Operation Rate: the share of the ANN-equivalent operations × T in which an input spike meets a "
    "non-zero weight, i.e. the reads the device makes. The first layer sees the analog input, so its AOR is the share "
    "of its MACs that meet a non-zero weight; it is left out of the dashed mean.",
}


def _activity_section(b: _Builder, summary: Mapping[str, Any]) -> Section:
    sec = Section("activity", SECTION_TITLES["activity"])
    activity = summary.get("activity") if isinstance(summary.get("activity"), Mapping) else {}
    stages = [s for s in stage_order(activity) if activity.get(s)]
    if not stages:
        sec.notes.append("Skipped: the summary has no activity records (attach AORMeter to the Trainer).")
        return sec
    if "val" not in stages:
        sec.notes.append("No val records (no validation loop, or AORMeter(on=('train',))): training stage only.")
    if "train" not in stages:
        sec.notes.append("No train records (AORMeter(on=('val',))): validation stage only.")
    for metric, spec in plots.ACTIVITY_METRICS.items():
        fig = plots.activity_figure({s: activity[s] for s in stages}, metric)
        if not b.add(sec, fig, ["activity", metric], spec["title"], _ACTIVITY_CAPTIONS[metric]):
            sec.notes.append(f"Skipped {spec['title'].lower()}: no values recorded.")
    for stage in stages:
        last = activity[stage][-1]
        rows = [
            [short_name(r.get("layer", "?")), r.get("quantized"), r.get("input_layer"), r.get("aor"),
             r.get("synaptic_rate"), r.get("sparsity"), r.get("ops")]
            for r in last.get("layers") or []
        ]  # fmt: skip
        rows += [[short_name(n.get("neuron", "?")) + " (spikes)", None, None, None, n.get("rate"), None, None]
                 for n in last.get("neurons") or []]  # fmt: skip
        if rows:
            title = f"{stage}, epoch {last.get('epoch')} (T = {last.get('timesteps')})"
            cols = ["layer", "quantized", "analog input", "AOR", "synaptic / spike rate", "sparsity", "ANN ops/sample"]
            sec.tables.append(Table(cols, rows, title))
    return sec


def _transitions_section(b: _Builder, summary: Mapping[str, Any]) -> Section:
    sec = Section(
        "transitions",
        SECTION_TITLES["transitions"],
        intro="How the integer weight codes moved between consecutive optimizer steps inside each monitored stage "
        "(WeightTransitionMonitor): every change of level is a device write.",
    )
    transitions = summary.get("transitions") if isinstance(summary.get("transitions"), Mapping) else {}
    stages = [s for s, r in transitions.items() if isinstance(r, Mapping) and r.get("layers")]
    if not stages:
        sec.notes.append(
            "Skipped: the summary has no transition counts (attach WeightTransitionMonitor, and train past the first "
            "batch of a stage)."
        )
        return sec
    if len(stages) >= 2:
        b.add(
            sec,
            plots.transition_overview_figure({s: transitions[s] for s in stages}),
            ["transitions", "overview"],
            "Transitions by stage",
            "Left: share of weights whose level changed per observed step. Right: share of those changes that skip a "
            "level (e.g. −1 → +1 at 2 bits); such writes cost more on devices that move one state at a time.",
        )
    shown = _spread(stages)
    if len(shown) < len(stages):
        sec.notes.append(
            f"{len(stages)} stages: per-stage figures are shown for {len(shown)} of them ({', '.join(shown)})."
        )
    for stage in shown:
        res = transitions[stage]
        where = f"epoch {res.get('epoch')}, {res.get('steps')} observed steps, {res.get('samples')} samples"
        b.add(
            sec,
            plots.transition_figure(stage, res["layers"]),
            ["transitions", stage],
            f"Transition histogram, stage {stage}",
            f"Off-diagonal level-to-level transitions ({where}) as a share of weight-steps, per layer; the legend "
            "gives the share of weights that kept their level per step.",
        )
        if not b.add(
            sec,
            plots.trajectory_figure(stage, res["layers"]),
            ["trajectories", stage],
            f"Weight trajectories, stage {stage}",
            "Codes of a random sample of weights after each optimizer step of the stage (cf. QUEST Fig. 7a); lines are "
            "offset slightly so that weights on the same level stay apart.",
        ):
            sec.notes.append(
                f"Stage {stage}: no weight trajectories recorded (WeightTransitionMonitor(trajectories=0))."
            )
    rows = []
    for stage in stages:
        for name, info in transitions[stage]["layers"].items():
            rows.append(
                [stage, short_name(name), info.get("steps"), _pct(info.get("frozen_fraction")),
                 _pct(info.get("changed_fraction")), _pct(info.get("non_adjacent_fraction"))]
            )  # fmt: skip
    cols = ["stage", "layer", "steps", "kept level / step", "changed / step", "changes skipping a level"]
    sec.tables.append(Table(cols, rows, "Transition fractions"))
    return sec


def _write_section(b: _Builder, summary: Mapping[str, Any]) -> Section:
    sec = Section(
        "write-energy",
        SECTION_TITLES["write-energy"],
        intro="Device write energy per sample, Σ_{i≠j} C[i,j] E_w^p[i,j] / (steps × batch), for every R-S pattern p "
        "(which device state holds which weight level).",
    )
    write = _get(summary, "energy", "write", default={}) or {}
    stages = [s for s, e in write.items() if isinstance(e, Mapping) and isinstance(e.get("report"), Mapping)]
    if not stages:
        sec.notes.append(
            "Skipped: the summary has no write energy (attach DeviceEnergyCallback and let a transition stage finish)."
        )
        return sec
    labels = summary.get("patterns") or None
    device = _get(summary, "device", "name", default="the device")
    if len(stages) >= 2:
        b.add(
            sec,
            plots.write_overview_figure({s: write[s] for s in stages}),
            ["write-energy", "overview"],
            "Write energy by stage",
            "Write energy per sample of each stage at the reported pattern (log scale), per layer and in total.",
        )
    shown = _spread(stages)
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
                f"{entry.get('pattern', _pattern_label(summary, idx))}."
            )
            b.add(
                sec,
                plots.pattern_energy_figure(report, f"Write energy per pattern, stage {stage!r}", labels, idx),
                ["write-energy", stage],
                f"Write energy per pattern, stage {stage}",
                caption,
            )
        at = _get(total, "per_pattern_j", idx) if isinstance(idx, int) else None
        per_layer = report.get("per_layer") or {}
        same = len({r.get("best_index") for r in per_layer.values()}) == 1 if per_layer else None
        rows.append(
            [stage, entry.get("steps"), entry.get("batch_size"), entry.get("pattern", "–"), format_joules(at),
             total.get("best_label", "–"), format_joules(total.get("best_j")), format_joules(total.get("worst_j")),
             same]
        )  # fmt: skip
        for name, r in per_layer.items():
            layer_at = _get(r, "per_pattern_j", idx) if isinstance(idx, int) else None
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


def _read_section(b: _Builder, summary: Mapping[str, Any]) -> Section:
    sec = Section(
        "read-energy",
        SECTION_TITLES["read-energy"],
        intro="Device read energy per sample, Σ_v N(v) E_r^p[v], from the operations that met a weight at level v "
        "(AORMeter); the analog-input layer and full-precision layers are not priced as device reads.",
    )
    read = _get(summary, "energy", "read", default={}) or {}
    stages = [
        s
        for s in stage_order(read)
        if any(isinstance(e, Mapping) and isinstance(e.get("report"), Mapping) for e in read.get(s) or [])
    ]
    if not stages:
        sec.notes.append(
            "Skipped: the summary has no read energy (DeviceEnergyCallback with AORMeter records it at the end of each "
            "epoch; a model with no quantized inner layer has none)."
        )
        return sec
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
        for name, r in (report.get("per_layer") or {}).items():
            at = _get(r, "per_pattern_j", idx) if isinstance(idx, int) else None
            rows.append(
                [stage, last.get("epoch"), short_name(name), last.get("pattern", "–"), format_joules(at),
                 r.get("best_label", "–"), format_joules(r.get("best_j"))]
            )  # fmt: skip
        at = _get(total, "per_pattern_j", idx) if isinstance(idx, int) else None
        rows.append([stage, last.get("epoch"), "total", last.get("pattern", "–"), format_joules(at),
                     total.get("best_label", "–"), format_joules(total.get("best_j"))])  # fmt: skip
    cols = ["stage", "epoch", "layer", "reported pattern", "at reported", "best pattern", "best"]
    sec.tables.append(Table(cols, rows, "Read energy per sample, last epoch"))
    return sec


def _compute_section(b: _Builder, summary: Mapping[str, Any]) -> Section:
    sec = Section(
        "compute-energy",
        SECTION_TITLES["compute-energy"],
        intro="Arithmetic energy per sample on the CMOS reference: the ANN (every operation a MAC), a DIET-SNN-style "
        "SNN (an accumulate per input spike) and QUEST (an accumulate per spike that meets a non-zero weight, AOR).",
    )
    compute = _get(summary, "energy", "compute", default={}) or {}
    stages = [s for s in stage_order(compute) if isinstance(compute.get(s), Mapping)]
    if not stages:
        sec.notes.append("Skipped: the summary has no compute comparison (DeviceEnergyCallback with AORMeter).")
        return sec
    cmos = summary.get("cmos") if isinstance(summary.get("cmos"), Mapping) else {}
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
            [stage, format_joules(_get(c, "ann", "total_j")), format_joules(_get(c, "diet_snn", "total_j")),
             format_joules(_get(c, "quest", "total_j")), c.get("ann_over_quest"), c.get("diet_over_quest"),
             c.get("timesteps"), convention]
        )  # fmt: skip
    cols = ["stage", "CMOS ANN", "DIET-SNN", "QUEST", "ANN / QUEST", "DIET-SNN / QUEST", "T", "first-layer convention"]
    sec.tables.append(Table(cols, rows, "Compute energy per sample"))
    return sec


# --------------------------------------------------------------------------------------------------------------------
# entry points


def _guarded(sid: str, make: Callable[[], Section]) -> Section:
    try:
        return make()
    except Exception as err:  # a malformed part of the summary must not cost the rest of the report
        title = SECTION_TITLES[sid]
        warnings.warn(f"report section {title!r} failed: {type(err).__name__}: {err}", stacklevel=3)
        sec = Section(sid, title)
        sec.warnings.append(f"This section could not be built: {type(err).__name__}: {err}")
        return sec


def build_sections(
    summary: Mapping[str, Any],
    out_dir: str | Path,
    metrics: list[dict[str, float | None]] | None = None,
    summary_path: str | Path = SUMMARY_FILE,
    metrics_path: str | Path | None = None,
    dpi: int = 100,
) -> list[Section]:
    """Draw every figure of ``summary`` into ``out_dir`` (PNG) and return the page's sections.

    Sections whose data are missing are kept, with a note saying what was skipped and why.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    b = _Builder(out, dpi)
    metrics_path = Path(metrics_path) if metrics_path is not None else None
    makers: dict[str, Callable[[], Section]] = {
        "run": lambda: _run_section(summary, Path(summary_path), metrics_path),
        "key-numbers": lambda: _key_section(summary, metrics),
        "training": lambda: _training_section(b, metrics, metrics_path),
        "activity": lambda: _activity_section(b, summary),
        "transitions": lambda: _transitions_section(b, summary),
        "write-energy": lambda: _write_section(b, summary),
        "read-energy": lambda: _read_section(b, summary),
        "compute-energy": lambda: _compute_section(b, summary),
    }
    return [_guarded(sid, make) for sid, make in makers.items()]


def build_report(run_dir: str | Path, out_dir: str | Path | None = None) -> Path:
    """Build the report of a finished run: PNG plots and one self-contained ``report.html``.

    Args:
        run_dir: The run's folder (e.g. ``lightning_logs/version_0``), searched recursively for
            ``quest_summary.json`` (the newest wins), or the summary file itself. ``metrics.csv`` next to the
            summary, if any, adds the training curves.
        out_dir: Where to write the PNGs and ``report.html``; default ``RUN_DIR/report``.

    Returns:
        The path of ``report.html``.

    Raises:
        FileNotFoundError: If no summary is found.
        ValueError: If the summary is not a JSON object.
    """
    summary_path = find_summary(run_dir)
    with open(summary_path, encoding="utf-8") as f:
        summary = json.load(f)
    if not isinstance(summary, dict):
        raise ValueError(f"{summary_path} holds a JSON {type(summary).__name__}, not the object of a run summary")
    base = Path(run_dir) if Path(run_dir).is_dir() else summary_path.parent
    out = Path(out_dir) if out_dir is not None else base / "report"
    metrics_path = summary_path.with_name(METRICS_FILE)
    metrics = read_metrics_csv(metrics_path) if metrics_path.is_file() else None
    sections = build_sections(
        summary, out, metrics, summary_path=summary_path, metrics_path=metrics_path if metrics is not None else None
    )
    device = _get(summary, "device", "name")
    title = "QUEST run report" + (f": {device}" if device else "")
    bits = summary.get("bits")
    stamp = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    subtitle = f"{summary_path}" + (f" · {bits}-bit weights" if bits else "") + f" · generated {stamp}"
    page = out / REPORT_FILE
    page.write_text(render_page(title, subtitle, sections), encoding="utf-8")
    return page
