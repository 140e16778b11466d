"""Glue shared by the quest-lightning callbacks: finding layers, batch sizes, rank-zero logging and W&B extras."""

from __future__ import annotations

import json
import os
import warnings
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.data import extract_batch_size
from torch import Tensor
from torchmetrics import Metric

from quest_lightning.nn.layers import QuantLayerMixin


def batch_size_of(batch: Any) -> int:
    """Number of samples in ``batch`` (the first dimension of its first tensor)."""
    return int(extract_batch_size(batch))


def world_size(trainer: pl.Trainer) -> int:
    return int(getattr(trainer, "world_size", 1) or 1)


def layer_codes(layer: QuantLayerMixin) -> tuple[Tensor, int]:
    """Codes and :math:`Q` to count operations with: a quantized layer's integer codes from its last forward pass,
    or, for a full-precision layer, the sign of its weights on a ternary grid (so non-zero weights count as reads)."""
    if layer.enabled:
        return layer.codes, layer.qmax
    return torch.sign(layer.weight.detach()).to(torch.int8), 1


def compute_quietly(metric: Metric) -> Any:
    """``metric.compute()`` without torchmetrics' "compute before update" warning: a meter restored from a checkpoint
    holds its sums but has seen no ``update`` in this process. Emptiness is read from the computed sums."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*was called before the ``update`` method.*")
        return metric.compute()


def to_float(value: Tensor | float) -> float:
    return float(value.item()) if isinstance(value, Tensor) else float(value)


@rank_zero_only
def log_scalars(trainer: pl.Trainer, metrics: dict[str, float], step: int | None = None) -> None:
    """Send scalars to every logger of ``trainer`` (rank zero only), at ``step`` (default: the global step)."""
    if not metrics:
        return
    step = trainer.global_step if step is None else step
    for logger in trainer.loggers:
        logger.log_metrics(metrics, step=step)


def wandb_loggers(trainer: pl.Trainer) -> list[WandbLogger]:
    return [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]


@rank_zero_only
def log_wandb_table(trainer: pl.Trainer, key: str, columns: list[str], rows: list[list[Any]]) -> None:
    """Log a table to every W&B logger of ``trainer`` (rank zero only)."""
    for logger in wandb_loggers(trainer):
        logger.log_table(key=key, columns=columns, data=rows, step=trainer.global_step)


@rank_zero_only
def log_wandb(trainer: pl.Trainer, payload: dict[str, Any]) -> None:
    """Log raw W&B objects (histograms, plots) to every W&B logger (rank zero only)."""
    for logger in wandb_loggers(trainer):
        logger.experiment.log({**payload, "trainer/global_step": trainer.global_step})


def run_dir(trainer: pl.Trainer) -> str:
    """The run's own log directory, on rank zero: for W&B the run's ``files`` folder (uploaded by ``wandb sync``),
    otherwise the first logger's ``log_dir`` (or ``save_dir``), else ``default_root_dir``."""
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger) and trainer.is_global_zero:
            return str(logger.experiment.dir)
        path = getattr(logger, "log_dir", None) or getattr(logger, "save_dir", None)
        if path:
            return str(path)
    return str(trainer.default_root_dir)


@rank_zero_only
def write_json(path: str, payload: dict[str, Any]) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=2, default=_json_default)
    os.replace(tmp, path)


def _json_default(value: Any) -> Any:
    if isinstance(value, Tensor):
        return value.tolist()
    if hasattr(value, "to_dict"):
        return value.to_dict()
    raise TypeError(f"cannot serialise {type(value).__name__}")
