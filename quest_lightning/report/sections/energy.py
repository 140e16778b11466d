"""The energy sections: device write and read energy per R-S pattern, and compute energy against CMOS, for every
priced device."""

from __future__ import annotations

from quest_lightning.report import plots
from quest_lightning.report.html import Section, Table
from quest_lightning.report.plots import SILENT_NOTE, format_joules, short_name, stage_order
from quest_lightning.report.sections.common import (
    FigureWriter,
    at_pattern,
    device_tags,
    new_section,
    ratio,
    skipped,
    spread,
)
from quest_lightning.summary import DevicePricing, ReadEnergy, RunSummary, WriteEnergy


def _pattern_label(pricing: DevicePricing, index: int | None) -> str:
    """The label of R-S pattern ``index`` of ``pricing``, else ``#index``."""
    if index is not None and 0 <= index < len(pricing.patterns):
        return pricing.patterns[index]
    return f"#{index}" if index is not None else "–"


def _pattern_figure(
    b: FigureWriter,
    sec: Section,
    pricing: DevicePricing,
    entry: WriteEnergy | ReadEnergy,
    id_parts: list[str],
    title: str,
    caption: str,
) -> None:
    """The per-pattern figure of a write or read energy, the entry's reported pattern marked."""
    fig = plots.pattern_energy_figure(entry.report, title, pricing.patterns, entry.pattern_index)
    b.add(sec, fig, id_parts, title, caption)


def write_energy_section(b: FigureWriter, summary: RunSummary) -> Section:
    """Write energy per sample seen for every R-S pattern, per stage and per layer, for every device."""
    sec = new_section("write-energy")
    priced = [(p, fid, tag) for p, fid, tag in device_tags(summary.devices) if p.write]
    if not priced:
        return skipped(
            sec, "the summary has no write energy (attach DeviceEnergyCallback and let a transition stage finish)."
        )
    rows, layer_rows = [], []
    for pricing, fid, tag in priced:
        write = pricing.write
        stages = list(write)
        if len(stages) >= 2:
            b.add(
                sec,
                plots.write_overview_figure(write),
                ["write-energy", fid, "overview"],
                f"Write energy by stage{tag}",
                "Write energy per sample seen of each stage at the reported pattern (log scale), per layer and in "
                "total.",
            )
        shown = spread(stages)
        if len(shown) < len(stages):
            sec.notes.append(f"{len(stages)} stages{tag}: per-pattern figures are shown for {len(shown)} of them.")
        for stage in stages:
            entry = write[stage]
            report, idx, total = entry.report, entry.pattern_index, entry.report.total
            count = len(total.per_pattern_j)
            if stage in shown:
                kind = "grouped bars" if count <= plots.MANY_PATTERNS else "each curve sorted from cheapest to dearest"
                caption = (
                    f"Stage {stage}: {entry.steps} optimizer steps, {entry.samples} samples seen; {count} patterns of "
                    f"{pricing.name} at {report.bits} bits ({kind}). Left: joules per sample seen per layer and in "
                    f"total; right: relative to each layer's best pattern. Best total pattern: {total.best_label} "
                    f"({format_joules(total.best_j)}); reported pattern: {entry.pattern}."
                )
                title = f"Write energy per pattern, stage {stage}{tag}"
                _pattern_figure(b, sec, pricing, entry, ["write-energy", fid, stage], title, caption)
            same = len({r.best_index for r in report.per_layer.values()}) == 1 if report.per_layer else None
            rows.append(
                [pricing.name, stage, entry.steps, entry.samples, entry.pattern,
                 format_joules(at_pattern(total, idx)), total.best_label, format_joules(total.best_j),
                 format_joules(total.worst_j), same]
            )  # fmt: skip
            for name, r in report.per_layer.items():
                layer_rows.append(
                    [pricing.name, stage, short_name(name), format_joules(at_pattern(r, idx)), r.best_label,
                     format_joules(r.best_j), format_joules(r.worst_j)]
                )  # fmt: skip
    cols = ["device", "stage", "steps", "samples seen", "reported pattern", "total at reported", "best total pattern",
            "best", "worst", "same best in every layer"]  # fmt: skip
    sec.tables.append(Table(cols, rows, "Write energy per sample seen, totals"))
    cols = ["device", "stage", "layer", "at reported", "best pattern", "best", "worst"]
    sec.tables.append(Table(cols, layer_rows, "Write energy per sample seen, per layer"))
    return sec


def read_energy_section(b: FigureWriter, summary: RunSummary) -> Section:
    """Read energy per sample for every R-S pattern, over epochs and per layer, for every device."""
    sec = new_section("read-energy")
    rows, priced_any = [], False
    for pricing, fid, tag in device_tags(summary.devices):
        read = {s: es for s, es in pricing.read.items() if any(e.report is not None for e in es)}
        stages = stage_order(read)
        for s, entries in pricing.read.items():
            for e in entries:
                if e.empty is not None:
                    sec.notes.append(f"{s}, epoch {e.epoch}{tag}: no read energy ({e.empty}).")
        if not stages:
            continue
        priced_any = True
        if "val" not in stages:
            sec.notes.append(f"No val read energy{tag} (no validation loop): training stage only.")
        b.add(
            sec,
            plots.read_epochs_figure(read),
            ["read-energy", fid, "epochs"],
            f"Read energy over epochs{tag}",
            "Read energy per sample at the reported pattern of each epoch (log scale), per layer and in total; one "
            "panel per stage.",
        )
        for stage in stages:
            last = pricing.last_read(stage)
            if last is None or last.report is None:
                continue
            report, idx, total = last.report, last.pattern_index, last.report.total
            zero = "counted" if report.count_zero_level_reads else "not counted"
            _pattern_figure(
                b,
                sec,
                pricing,
                last,
                ["read-energy", fid, stage],
                f"Read energy per pattern, {stage}, epoch {last.epoch}{tag}",
                f"Last {stage} epoch ({last.epoch}, {last.samples} samples): read energy per sample of the "
                f"{len(total.per_pattern_j)} patterns of {pricing.name}, per layer and in total; right: relative to "
                f"each layer's best. Zero-level reads {zero}. Best total pattern: {total.best_label} "
                f"({format_joules(total.best_j)}).",
            )
            for name, r in [*report.per_layer.items(), ("total", total)]:
                rows.append(
                    [pricing.name, stage, last.epoch, short_name(name), last.pattern or _pattern_label(pricing, idx),
                     format_joules(at_pattern(r, idx)), r.best_label, format_joules(r.best_j)]
                )  # fmt: skip
    if not priced_any:
        return skipped(
            sec,
            "the summary has no read energy (DeviceEnergyCallback with AORMeter records it at the end of each "
            "epoch; a model with no quantized inner layer has none).",
        )
    cols = ["device", "stage", "epoch", "layer", "reported pattern", "at reported", "best pattern", "best"]
    sec.tables.append(Table(cols, rows, "Read energy per sample, last epoch"))
    return sec


def compute_energy_section(b: FigureWriter, summary: RunSummary) -> Section:
    """Compute energy per sample of the CMOS ANN, a DIET-SNN-style SNN and QUEST, for every device whose comparison
    differs from the ones before it (the CMOS reference and the first-layer convention are per device)."""
    sec = new_section("compute-energy")
    drawn: list[DevicePricing] = []
    rows = []
    for pricing, fid, tag in device_tags(summary.devices):
        if not pricing.compute:
            continue
        same = next((d for d in drawn if d.compute == pricing.compute and d.cmos == pricing.cmos), None)
        if same is not None:
            sec.notes.append(f"{pricing.name}: the same comparison as {same.name} (same counts, CMOS and convention).")
        cmos = pricing.cmos
        ref = f"CMOS {cmos.name}: E_MAC {format_joules(cmos.e_mac_j)}, E_AC {format_joules(cmos.e_ac_j)}."
        for stage in stage_order(pricing.compute):
            c = pricing.compute[stage]
            if c.silent_network:
                sec.warnings.append(f"{stage}, epoch {c.epoch}{tag}: {SILENT_NOTE}.")
            if same is None and not b.add(
                sec,
                plots.compute_figure(stage, c),
                ["compute-energy", fid, stage],
                f"Compute energy vs CMOS, {stage}{tag}",
                f"Energy per sample (log scale) of the last {stage} epoch ({c.epoch}), T = {c.timesteps}; the ratios "
                f"are annotated. First-layer convention: {c.convention}. {ref}",
            ):
                sec.notes.append(f"Stage {stage}{tag}: no totals to plot.")
            rows.append(
                [pricing.name, stage, c.epoch, format_joules(c.ann.total_j), format_joules(c.diet_snn.total_j),
                 format_joules(c.quest.total_j), ratio(c.ann_over_quest, c), ratio(c.diet_over_quest, c),
                 c.timesteps, c.convention]
            )  # fmt: skip
        drawn.append(pricing)
    if not rows:
        return skipped(sec, "the summary has no compute comparison (DeviceEnergyCallback with AORMeter).")
    cols = ["device", "stage", "epoch", "CMOS ANN", "DIET-SNN", "QUEST", "ANN / QUEST", "DIET-SNN / QUEST", "T",
            "first-layer convention"]  # fmt: skip
    sec.tables.append(Table(cols, rows, "Compute energy per sample"))
    return sec
