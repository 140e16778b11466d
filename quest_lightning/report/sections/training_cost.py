"""The section on training: the energy-aware knobs the run trained with, and what its training steps cost
(``TrainingCostMeter``), per layer for the last measured epoch and over the epochs."""

from __future__ import annotations

from typing import Any

from quest_lightning.report import plots
from quest_lightning.report.html import Section, Table
from quest_lightning.report.plots import code_label, counted, format_joules, short_name
from quest_lightning.report.plots.training_cost import PASS_LABELS
from quest_lightning.report.sections.common import FigureWriter, new_section
from quest_lightning.summary import EnergyAwareSettings, RunSummary, TrainingCost

NO_SETTINGS = (
    "The run record holds no energy-aware settings: the run trained with its energy-aware knobs off (QuestModule's "
    "write_aware and read_aware at 0, no EnergyAwareTraining with a knob on), or its summary was written before they "
    "were recorded."
)
NO_COST = (
    "This run did not measure what a training step costs: attach TrainingCostMeter (quest_lightning.lightning."
    "callbacks.training_ops) beside DeviceEnergyCallback to count the forward, backward and weight-gradient passes."
)


def _settings_rows(s: EnergyAwareSettings) -> list[list[Any]]:
    by = f"{s.device}, R-S pattern {s.pattern_index}: {s.pattern}" if s.device is not None else "none (unweighted)"
    write = "off"
    if s.write_on:
        write = "weighted by the pattern's write energy" if s.write_weighted else "the same for every move"
    read = "off"
    if s.read_on:
        read = "each level by the pattern's read energy" if s.read_weighted else "every non-zero weight costs 1 (AOR)"
    rows: list[list[Any]] = [
        ["knobs set by", s.source],
        ["write-aware hysteresis margin h (grid steps)", s.write_margin if s.write_on else "off (0)"],
        ["margin per transition", write],
        ["read penalty weight λ", s.read_weight if s.read_on else "off (0)"],
        ["read penalty weighting", read],
    ]
    if s.read_costs is not None:
        rows.append(["read cost per level c[v], most negative first", ", ".join(f"{c:.4g}" for c in s.read_costs)])
        rows.append(["zero-level reads charged", s.count_zero_level_reads])
    rows += [["pattern asked for", str(s.pattern_selection)], ["weighted by (device, pattern)", by]]
    return rows


def _margin_table(margins: tuple[tuple[float, ...], ...]) -> Table:
    q = (len(margins) - 1) // 2
    codes = [code_label(i - q) for i in range(len(margins))]
    rows = [[f"from {codes[i]}", *(f"{h:.3g}" if i != j else "–" for j, h in enumerate(row))] for i, row in
            enumerate(margins)]  # fmt: skip
    return Table(["held code", *(f"to {c}" for c in codes)], rows, "Hysteresis margin h_ij per transition (grid steps)")


def _energy_aware(sec: Section, settings: EnergyAwareSettings | None) -> None:
    if settings is None:
        sec.notes.append(NO_SETTINGS)
        return
    sec.warnings.append(
        f"This run trained energy-aware ({settings.describe()}): its writes and reads figures are those of a network "
        "trained to cost less on the device, not of plain QUEST training."
    )
    sec.tables.append(Table(["energy-aware setting", "value"], _settings_rows(settings), "Energy-aware knobs"))
    if settings.write_margins is not None:
        sec.tables.append(_margin_table(settings.write_margins))


def _ops(value: float) -> str:
    return f"{value:,.1f}"


def _layer_table(cost: TrainingCost) -> Table:
    step = cost.latest
    rows = []
    for layer in step.layers:
        energy = step.energy.layers.get(layer.layer)
        density = layer.delta_density_mean
        rows.append([
            short_name(layer.layer),
            "analog" if layer.analog_input else "spikes",
            "yes" if layer.quantized else "no",
            layer.delta_point,
            *(_ops(layer.total(name)) for name in PASS_LABELS),
            f"{density:.3f}" if density is not None else "–",
            format_joules(energy.compute_j) if energy is not None else "–",
            format_joules(energy.device_read_j) if energy is not None else "–",
        ])  # fmt: skip
    cols = ["layer", "input", "quantized", "δ taken at", *(f"{label} ops" for label in PASS_LABELS.values()),
            "mean δ density", "CMOS arithmetic", "device reads"]  # fmt: skip
    return Table(cols, rows, f"Per layer and sample, epoch {step.epoch} (operations summed over the T time steps)")


def _epoch_table(cost: TrainingCost) -> Table:
    rows = []
    for e in cost.epochs:
        en = e.energy
        rows.append([
            e.epoch, e.step, *(_ops(e.total(name)) for name in PASS_LABELS), format_joules(en.compute_j),
            format_joules(en.device_read_j), format_joules(en.device_write_j), format_joules(en.total_j),
        ])  # fmt: skip
    cols = ["epoch", "global step", *(f"{label} ops" for label in PASS_LABELS.values()), "CMOS arithmetic",
            "device reads", "device writes", "total"]  # fmt: skip
    return Table(cols, rows, "Per sample, network total, per measured epoch")


def training_cost_section(b: FigureWriter, summary: RunSummary) -> Section:
    """The energy-aware knobs (a table, the margin table of a weighted write knob), and what a training step cost:
    per layer for the last measured epoch (a table and a figure) and over the epochs (a table, and a figure with two
    epochs or more)."""
    sec = new_section("training-cost")
    _energy_aware(sec, summary.energy_aware)
    cost = summary.training_cost
    if cost is None:
        sec.notes.append(NO_COST)
        return sec
    last = cost.latest
    counted_batches = "every training batch" if last.every_n_steps == 1 else f"one batch in {last.every_n_steps}"
    reads = (
        f"device reads of the quantized layers priced on {last.device} at the meter's R-S pattern {last.pattern}"
        if last.device is not None
        else "no device reads priced (the quantized layers use several bit widths)"
    )
    sec.notes.append(
        f"Counted over {counted_batches}, T = {last.timesteps} time steps; δ counted as {last.delta_rule}; {reads}; "
        f"CMOS arithmetic on {last.energy.cmos}."
    )
    if last.energy.device_write_j is None:
        sec.notes.append(
            "The meter's total leaves out the device writes: the write energy per sample seen of the weight updates "
            "is in the section 'Write energy per R-S pattern'."
        )
    b.add(
        sec,
        plots.training_cost_layers_figure(last),
        ["training-cost-layers"],
        "A training step per layer",
        "Non-zero operations per sample of the forward pass (input spike × non-zero weight), the backward pass "
        "(non-zero δ × non-zero weight; none where the layer's input needs no gradient) and the weight-gradient pass "
        f"(non-zero δ × input spike), summed over the T time steps, and their energy per sample, epoch {last.epoch}.",
    )
    sec.tables.append(_layer_table(cost))
    if not b.add(
        sec,
        plots.training_cost_epochs_figure(cost),
        ["training-cost-epochs"],
        "A training step over the epochs",
        "The network's non-zero operations per sample of each pass, each layer's share of non-zero δ (mean over the "
        "time steps) and the energy per sample of a training step, at the end of every measured epoch.",
    ):
        sec.notes.append(
            f"{counted(len(cost.epochs), 'epoch')} measured: the figure over the epochs needs two or more."
        )
    sec.tables.append(_epoch_table(cost))
    return sec
