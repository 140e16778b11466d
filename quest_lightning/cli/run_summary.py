"""The end-of-fit summary of a recipe run: test accuracy, activity, the energy-aware knobs and the energy of a
training step when the run has them, every priced device's write, read and compute energy, the run's flags, and
where the run's files are (summary JSON, HTML report, W&B run and the ``wandb sync`` line).

The figures come from the typed run record: the ``quest_summary.json`` the run wrote (read back with
:func:`~quest_lightning.summary.read_summary`, so that the summary and the report show the same numbers), else the
energy callback's record in memory; the headline of each device is the report's
(:func:`~quest_lightning.report.headline.device_headline`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import WandbLogger

from quest_lightning.lightning.callbacks import AORMeter, DeviceEnergyCallback
from quest_lightning.report.headline import DeviceHeadline, device_headlines, flag_text, last_activity
from quest_lightning.report.plots import format_joules
from quest_lightning.summary import ActivityRecord, Flag, RunSummary, read_summary

__all__ = ["FitSummary", "find_callback", "print_summary", "run_summary"]

TEST_ACCURACY = "test/acc"
"""The metric ``trainer.test`` returns the test accuracy under (``QuestModule``'s name)."""


def find_callback(trainer, cls):
    """The first callback of ``trainer`` that is a ``cls``, or None."""
    return next((c for c in trainer.callbacks if isinstance(c, cls)), None)


@dataclass(frozen=True)
class FitSummary:
    """What :func:`print_summary` shows.

    Attributes:
        test_accuracy: The test accuracy (fraction), if the test ran.
        record: The run record (``None`` without a ``DeviceEnergyCallback``).
        activity: The last val (else train) epoch's activity.
        devices: Every priced device's headline figures.
        summary_file: The run's ``quest_summary.json``.
        wandb_dir: The W&B run's folder.
    """

    test_accuracy: float | None
    record: RunSummary | None = None
    activity: ActivityRecord | None = None
    devices: list[DeviceHeadline] = field(default_factory=list)
    summary_file: str | None = None
    wandb_dir: str | None = None

    @property
    def flags(self) -> tuple[Flag, ...]:
        """The run's flags (none without a record)."""
        return self.record.flags if self.record is not None else ()

    @property
    def report_command(self) -> str | None:
        """The command that builds the run's report."""
        return f"quest-lightning report {Path(self.summary_file).parent}" if self.summary_file else None


def _record(energy: DeviceEnergyCallback) -> tuple[RunSummary, str | None]:
    """The run record as written to disk (what the report reads), else the callback's record in memory."""
    path = getattr(energy, "summary_path", None)
    if path is not None and os.path.isfile(path):
        return read_summary(path), path
    return energy.run_summary(), None


def run_summary(trainer, test_metrics: dict[str, Any]) -> FitSummary:
    """The end-of-fit figures (what :func:`print_summary` shows)."""
    accuracy = test_metrics.get(TEST_ACCURACY)
    energy = find_callback(trainer, DeviceEnergyCallback)
    record, path = _record(energy) if energy is not None else (None, None)
    activity = last_activity(record) if record is not None else None
    meter = find_callback(trainer, AORMeter)
    if activity is None and meter is not None:
        activity = next((r for r in (meter.latest("val"), meter.latest("train")) if r is not None), None)
    wandb_dir = next(
        (str(Path(lg.experiment.dir).parent) for lg in trainer.loggers if isinstance(lg, WandbLogger)), None
    )
    return FitSummary(
        test_accuracy=float(accuracy) if accuracy is not None else None,
        record=record,
        activity=activity,
        devices=device_headlines(record) if record is not None else [],
        summary_file=path,
        wandb_dir=wandb_dir,
    )


def _ratio(value: float | None, silent: bool) -> str | None:
    if value is None:
        return None
    return f"{value:.2f}×" + (" (silent network: not a saving)" if silent else "")


def _device_rows(h: DeviceHeadline) -> list[tuple[str, str | None]]:
    """The rows of one device: best write pattern, write/read energy, compute energy and the ratios."""
    rows: list[tuple[str, str | None]] = []
    if h.write_best is not None and h.write is not None:
        rows.append(("best R-S pattern (writes)", f"{h.write_best[0]} (stage {h.write.stage})"))
        if h.write.pattern != h.write_best[0]:
            rows.append(("reported R-S pattern (writes)", h.write.pattern))
        rows.append(("device write energy per sample seen", format_joules(h.write.total_j)))
    if h.read is not None and h.read.total_j is not None:
        where = f" ({h.read.stage}, epoch {h.read.epoch})"
        rows.append(("device read energy per sample" + where, format_joules(h.read.total_j)))
    c = h.compute
    if c is not None:
        rows += [
            ("compute energy per sample (QUEST, AOR)", format_joules(c.quest.total_j)),
            ("compute energy per sample (CMOS ANN)", format_joules(c.ann.total_j)),
            ("ANN / QUEST", _ratio(c.ann_over_quest, c.silent_network)),
            ("DIET-SNN / QUEST", _ratio(c.diet_over_quest, c.silent_network)),
            ("first-layer convention", c.convention),
        ]
    if h.pricing.endurance is not None:
        epochs = h.epochs_to_first_failure
        rows.append(("epochs to the first worn-out cell", f"{epochs:.4g}" if epochs is not None else "no cell written"))
    return rows


def print_summary(trainer, test_metrics: dict[str, Any], report: str | None = None) -> FitSummary:
    """Print the end-of-fit summary with rich (a table, the flags, then the run's files) and return it."""
    from rich.console import Console
    from rich.table import Table

    s = run_summary(trainer, test_metrics)
    table = Table(title="quest-lightning run summary", show_header=False)

    def row(name: str, value: str | None) -> None:
        if value is not None:
            table.add_row(name, value)

    row("test accuracy", f"{100 * s.test_accuracy:.2f} %" if s.test_accuracy is not None else None)
    a = s.activity
    if a is not None:
        row(f"mean spike rate (per neuron per sample, over T; {a.stage})", _fixed(a.spike_rate_mean, 4))
        row(f"mean AOR (quantized layers; {a.stage})", _fixed(a.aor_mean, 4))
        row("mean weight sparsity", f"{100 * a.sparsity_mean:.1f} %" if a.sparsity_mean is not None else None)
    record = s.record
    if record is not None and record.energy_aware is not None:
        row(f"energy-aware knobs ({record.energy_aware.source})", record.energy_aware.describe())
    if record is not None and record.training_cost is not None:
        last = record.training_cost.latest
        row(f"training step energy per sample (epoch {last.epoch})", format_joules(last.energy.total_j))
    for h in s.devices:
        table.add_section()
        row("device", h.name)
        for name, value in _device_rows(h):
            row(name, value)
    console = Console()
    console.print(table)
    for f in s.flags:  # unwrapped, so that a flag reads as one line
        console.print(f"flag {f.code}: {flag_text(f)}", soft_wrap=True, highlight=False, markup=False, style="bold")
    paths = [
        ("summary JSON", s.summary_file),
        ("HTML report", report or s.report_command),
        ("W&B offline run", s.wandb_dir),
        ("upload it later with", f"wandb sync {s.wandb_dir}" if s.wandb_dir else None),
    ]
    for label, value in paths:  # unwrapped lines, so that paths and commands can be copied
        if value:
            console.print(f"{label}: {value}", soft_wrap=True, highlight=False, markup=False)
    return s


def _fixed(value: float | None, digits: int) -> str | None:
    return f"{value:.{digits}f}" if value is not None else None
