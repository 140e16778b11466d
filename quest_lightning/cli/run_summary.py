"""The end-of-fit summary of a recipe run: test accuracy, activity, device and compute energy, and where the run's
files are (summary JSON, HTML report, W&B run and the ``wandb sync`` line)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import WandbLogger

from quest_lightning.lightning.callbacks import AORMeter, DeviceEnergyCallback
from quest_lightning.report.plots import format_joules

__all__ = ["find_callback", "print_summary", "run_summary"]


def find_callback(trainer, cls):
    """The first callback of ``trainer`` that is a ``cls``, or None."""
    return next((c for c in trainer.callbacks if isinstance(c, cls)), None)


def run_summary(trainer, test_metrics: dict[str, Any]) -> dict[str, Any]:
    """The end-of-fit figures as a flat dict (what :func:`print_summary` shows)."""
    out: dict[str, Any] = {"test_acc": test_metrics.get("test/acc")}
    meter = find_callback(trainer, AORMeter)
    if meter is not None:
        record = meter.latest("val") or meter.latest("train")
        if record:
            out.update(spike_rate_mean=record["spike_rate_mean"], aor_mean=record["aor_mean"])
            out["sparsity_mean"] = record["sparsity_mean"]
    energy = find_callback(trainer, DeviceEnergyCallback)
    if energy is not None:
        compute = energy.summary["compute"].get("val") or energy.summary["compute"].get("train")
        if compute:
            out.update(
                quest_j=compute["quest"]["total_j"],
                ann_j=compute["ann"]["total_j"],
                ann_over_quest=compute["ann_over_quest"],
                diet_over_quest=compute["diet_over_quest"],
                convention=compute["convention"],
            )
        writes = energy.summary["write"]
        if writes:
            last = list(writes.values())[-1]
            chosen = last["report"]["total"]["per_pattern_j"][last["pattern_index"]]
            out.update(best_pattern=last["pattern"], write_j=chosen)
        reads = energy.summary["read"].get("val") or energy.summary["read"].get("train")
        if reads and "report" in reads[-1]:
            out["read_j"] = reads[-1]["report"]["total"]["per_pattern_j"][reads[-1]["pattern_index"]]
        out["device"] = energy.device.name if energy.device is not None else None
        out["summary_file"] = getattr(energy, "summary_path", None)
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            run_path = Path(logger.experiment.dir).parent
            out["wandb_dir"] = str(run_path)
    if out.get("summary_file"):
        out["report_command"] = f"quest-lightning report {Path(out['summary_file']).parent}"
    return out


def print_summary(trainer, test_metrics: dict[str, Any], report: str | None = None) -> dict[str, Any]:
    """Print the end-of-fit summary with rich and return it."""
    from rich.console import Console
    from rich.table import Table

    s = run_summary(trainer, test_metrics)
    table = Table(title="quest-lightning run summary", show_header=False)

    def row(name: str, value: Any, fmt=str) -> None:
        if value is not None:
            table.add_row(name, fmt(value))

    row("test accuracy", s.get("test_acc"), lambda v: f"{100 * float(v):.2f} %")
    row("mean spike rate (per neuron per sample, over T)", s.get("spike_rate_mean"), lambda v: f"{v:.4f}")
    row("mean AOR (quantized layers)", s.get("aor_mean"), lambda v: f"{v:.4f}")
    row("mean weight sparsity", s.get("sparsity_mean"), lambda v: f"{100 * v:.1f} %")
    row("device", s.get("device"))
    row("best R-S pattern (writes)", s.get("best_pattern"))
    row("device write energy per sample", s.get("write_j"), format_joules)
    row("device read energy per sample", s.get("read_j"), format_joules)
    row("compute energy per sample (QUEST, AOR)", s.get("quest_j"), format_joules)
    row("compute energy per sample (CMOS ANN)", s.get("ann_j"), format_joules)
    row("ANN / QUEST", s.get("ann_over_quest"), lambda v: f"{v:.2f}×")
    row("DIET-SNN / QUEST", s.get("diet_over_quest"), lambda v: f"{v:.2f}×")
    row("first-layer convention", s.get("convention"))
    console = Console()
    console.print(table)
    paths = [
        ("summary JSON", s.get("summary_file")),
        ("HTML report", report or s.get("report_command")),
        ("W&B offline run", s.get("wandb_dir")),
        ("upload it later with", f"wandb sync {s['wandb_dir']}" if s.get("wandb_dir") else None),
    ]
    for label, value in paths:  # unwrapped lines, so that paths and commands can be copied
        if value:
            console.print(f"{label}: {value}", soft_wrap=True, highlight=False, markup=False)
    return s
