"""A finished transition stage, logged: its fractions to every logger, and with W&B its histograms and trajectories."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl

from quest_lightning.functional.grid import level_codes
from quest_lightning.lightning.callbacks.base import log_scalars, log_wandb
from quest_lightning.summary import TransitionStage

__all__ = ["log_stage"]


def log_stage(trainer: pl.Trainer, result: TransitionStage) -> None:
    """Log ``transitions/{stage}/{layer}/{fraction}``; with W&B also the transition histogram and the followed
    weights' trajectories of every layer."""
    scalars = {}
    for name, info in result.layers.items():
        for stat, value in info.fractions().items():
            if value is not None:
                scalars[f"transitions/{result.stage}/{name}/{stat}"] = value
    log_scalars(trainer, scalars)
    try:
        import wandb
    except ImportError:  # pragma: no cover - wandb is a dependency
        return
    payload: dict[str, Any] = {}
    key = result.stage
    for name, info in result.layers.items():
        codes = list(level_codes(info.qmax))
        pairs = [(i, j) for i in range(len(codes)) for j in range(len(codes)) if i != j]
        data = [[f"{codes[i]:+d}→{codes[j]:+d}", info.counts[i][j]] for i, j in pairs]
        table = wandb.Table(data=data, columns=["transition", "count"])
        payload[f"transitions/{key}/{name}/histogram"] = wandb.plot.bar(
            table, "transition", "count", title=f"{name} transitions ({key})"
        )
        if info.trajectory:
            payload[f"transitions/{key}/{name}/trajectories"] = wandb.plot.line_series(
                xs=list(range(len(info.trajectory[0]))),
                ys=[list(t) for t in info.trajectory],
                keys=[f"w{i}" for i in range(len(info.trajectory))],
                title=f"{name} weight codes ({key})",
                xname="step in stage",
            )
    if payload:
        log_wandb(trainer, payload)
