"""``QuestLightningCLI``: the LightningCLI behind the recipes, with the end-of-fit summary.

* With no arguments it runs ``fit`` with the recipe's default config (the paper's setup).
* The Trainer picks up the device count set by a launcher (``lightning run``/``quest-lightning run``/``fabric run``).
* After ``fit`` it tests the final model and prints a summary: test accuracy, mean spike rate, AOR, best R-S pattern,
  energy per sample, the ratios against CMOS, where the W&B run and the report are, and the ``wandb sync`` line.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import WandbLogger

from quest_lightning.launch import trainer_kwargs_from_launcher_env
from quest_lightning.lightning.callbacks import AORMeter, DeviceEnergyCallback
from quest_lightning.lightning.data import CIFAR10DataModule
from quest_lightning.lightning.vgg_module import QuestVGG


def _si(joules: float) -> str:
    for unit, scale in (("J", 1.0), ("mJ", 1e-3), ("µJ", 1e-6), ("nJ", 1e-9), ("pJ", 1e-12), ("fJ", 1e-15)):
        if abs(joules) >= scale:
            return f"{joules / scale:.3g} {unit}"
    return f"{joules:.3g} J"


class QuestLightningCLI(LightningCLI):
    """LightningCLI for :class:`QuestVGG` on :class:`CIFAR10DataModule` (both overridable with ``--model``/``--data``
    class paths), with recipe defaults and the end-of-fit summary."""

    def __init__(self, default_config: str | os.PathLike | None = None, args: Sequence[str] | None = None, **kwargs):
        given = sys.argv[1:] if args is None else list(args)
        if not given and default_config is not None:
            args = ["fit", "--config", str(default_config)]  # no arguments: the recipe's default run
        os.environ.setdefault("WANDB_X_DISABLE_STATS", "true")
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        defaults = dict(kwargs.pop("trainer_defaults", {}) or {})
        defaults.update(trainer_kwargs_from_launcher_env())
        super().__init__(QuestVGG, CIFAR10DataModule, args=args, trainer_defaults=defaults, **kwargs)

    def after_fit(self) -> None:
        trainer = self.trainer
        if trainer.interrupted:
            return
        results = trainer.test(self.model, datamodule=self.datamodule, verbose=False)
        if trainer.is_global_zero:
            report = _build_report(trainer)
            print_summary(trainer, results[0] if results else {}, report)


def _build_report(trainer) -> str | None:
    energy = _find(trainer, DeviceEnergyCallback)
    path = getattr(energy, "summary_path", None)
    if path is None:
        return None
    from quest_lightning.report import build_report

    html = build_report(Path(path).parent)
    for logger in trainer.loggers:  # W&B gets the report's charts too
        if isinstance(logger, WandbLogger):
            for png in sorted(html.parent.glob("*.png")):
                logger.log_image(key=f"report/{png.stem}", images=[str(png)])
    return str(html)


def _find(trainer, cls):
    return next((c for c in trainer.callbacks if isinstance(c, cls)), None)


def run_summary(trainer, test_metrics: dict[str, Any]) -> dict[str, Any]:
    """The end-of-fit figures as a flat dict (what :func:`print_summary` shows)."""
    out: dict[str, Any] = {"test_acc": test_metrics.get("test/acc")}
    meter = _find(trainer, AORMeter)
    if meter is not None:
        record = meter.latest("val") or meter.latest("train")
        if record:
            out.update(spike_rate_mean=record["spike_rate_mean"], aor_mean=record["aor_mean"])
            out["sparsity_mean"] = record["sparsity_mean"]
    energy = _find(trainer, DeviceEnergyCallback)
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
    row("device write energy per sample", s.get("write_j"), _si)
    row("device read energy per sample", s.get("read_j"), _si)
    row("compute energy per sample (QUEST, AOR)", s.get("quest_j"), _si)
    row("compute energy per sample (CMOS ANN)", s.get("ann_j"), _si)
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
