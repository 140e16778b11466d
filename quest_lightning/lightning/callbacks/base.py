"""Glue shared by the quest-lightning callbacks: codes to count with, sums over ranks, rank-zero logging and W&B
extras."""

from __future__ import annotations

import warnings
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_only
from torch import Tensor
from torchmetrics import Metric

from quest_lightning.nn.layers import QuantLayerMixin


def world_size(trainer: pl.Trainer) -> int:
    return int(getattr(trainer, "world_size", 1) or 1)


def sum_over_ranks(trainer: pl.Trainer | None, values: list[int]) -> list[int]:
    """``values`` summed over the DDP ranks (a collective: every rank calls it); themselves in one process."""
    if trainer is None or world_size(trainer) <= 1 or not values:
        return list(values)
    local = torch.tensor(values, dtype=torch.int64, device=trainer.strategy.root_device)
    return [int(v) for v in trainer.strategy.reduce(local, reduce_op="sum").tolist()]


def layer_codes(layer: QuantLayerMixin | Any) -> tuple[Tensor, int]:
    """Codes and :math:`Q` to count operations with: a quantized layer's integer codes from its last forward pass,
    or, for a full-precision layer (ours with ``enabled=False``, or a plain ``nn.Conv2d``/``nn.Linear``), the sign
    of its weights on a ternary grid (so non-zero weights count as reads)."""
    if isinstance(layer, QuantLayerMixin) and layer.enabled:
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


# a driver's claim: the owning callback beats an energy callback given settings, which beats the defaults
OWNER, CONFIGURED, DEFAULT = 2, 1, 0


def metric_state(metric: Metric) -> dict[str, Tensor]:
    """The metric's states summed over DDP ranks (every rank must call this together), on the CPU."""
    with metric.sync_context(should_sync=metric.sync_on_compute):
        return {k: v.detach().cpu().clone() for k, v in metric.state_dict().items()}


def load_metric_state(metric: Metric, state: dict[str, Tensor], rank: int) -> Metric:
    """Restore :func:`metric_state`: the global sums go to rank 0 only, so that the next sync counts them once."""
    metric.load_state_dict(state)
    if rank and metric.sync_on_compute:
        metric.reset()
    return metric.to(metric.device)  # loaded states arrive on the CPU


class Part:
    """What a part of the counts shares: its driver, the driver's claim and the settings it counts with."""

    what = ""  # e.g. "transition stages"
    owner = ""  # the callback that owns this part, e.g. "WeightTransitionMonitor"

    def __init__(self, counts: Any) -> None:  # a RunCounts
        self.counts = counts
        self.driver: Any = None
        self.priority = -1
        self.settings: Any = None

    def claim(self, driver: Any, settings: Any, priority: int) -> None:
        """Make ``driver`` feed this part with ``settings``, unless a stronger claim holds it.

        Raises:
            ValueError: Two callbacks both set this part's settings (they must be given to one of them).
        """
        if self.driver is not None and self.driver is not driver and min(priority, self.priority) >= CONFIGURED:
            if max(priority, self.priority) == OWNER:
                raise ValueError(
                    f"DeviceEnergyCallback(stages=...) and a {self.owner} both set the {self.what}; give them to the "
                    f"{self.owner} only (DeviceEnergyCallback uses its stages)."
                )
            if settings != self.settings:
                raise ValueError(
                    f"two DeviceEnergyCallbacks set different {self.what}; give the stages to one of them, or to a "
                    f"{self.owner} (every DeviceEnergyCallback prices the same counts)."
                )
        if self.driver is None or self.driver is driver or priority > self.priority:
            self.driver, self.priority, self.settings = driver, priority, settings

    @property
    def rank(self) -> int:
        trainer = self.counts.trainer
        return int(getattr(trainer, "global_rank", 0) or 0) if trainer is not None else 0
