"""``WeightTransitionMonitor``: how the integer weight codes move between optimizer steps (the device writes)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor

from quest_lightning.lightning.callbacks.counts import PartOwner
from quest_lightning.lightning.callbacks.stages import (
    EVERY_STEP,
    PAPER_STAGES,
    Stage,
    TransitionSettings,
    resolve_stages,
)
from quest_lightning.summary import TransitionStage

__all__ = ["EVERY_STEP", "PAPER_STAGES", "Stage", "WeightTransitionMonitor", "resolve_stages"]


class WeightTransitionMonitor(PartOwner):
    """Count level → level transitions of every quantized layer's codes across optimizer steps.

    Each optimizer step inside a stage is compared, code by code, with the codes the next forward pass computes (no
    extra quantizer pass; the step that no forward pass follows inside the stage gets its codes from the weights):
    one comparison per layer finds the changed weights, a histogram of those gives the level → level counts, on the
    device. The samples of a step are those its layers met, summed over the DDP ranks. At the end of each stage it
    logs, per
    layer, ``transitions/{stage}/{layer}/frozen_fraction`` (share of weights that kept their level per step),
    ``.../non_adjacent_fraction`` (share of changes that skip a level, e.g. −1 ↔ +1 at 2 bits) and
    ``.../changed_fraction``; with W&B also the transition histogram and sampled weight trajectories.

    The counts live in the run's shared :class:`~quest_lightning.lightning.callbacks.counts.RunCounts`, which every
    ``DeviceEnergyCallback`` of the Trainer prices. Stages that can never run in this run (a first batch past the
    epoch's end, an epoch past ``max_epochs``, a step past ``max_steps``) are refused when training starts; with
    ``stages="paper"`` they are left out with a warning.

    Args:
        stages: ``"paper"``, ``"all"`` or a list of stages (see :func:`resolve_stages`).
        every_n_steps: observe one optimizer step in ``n`` inside the stages (the transition of that step).
        trajectories: how many weights per layer to follow step by step (QUEST Fig. 7a); 0 disables.
        seed: seed for choosing the followed weights.
        track_writes_per_cell: also count the writes of every weight (an ``int32`` counter per weight on its device,
            one addition per observed step in the same pass; 4 bytes per weight, in memory and in every checkpoint):
            the summary then holds each layer's maximum and percentiles of writes per cell
            (:class:`~quest_lightning.summary.WritesPerCell`), and every ``DeviceEnergyCallback`` whose device has an
            endurance limit projects the epochs until the first cell wears out at the measured write rate. Only the
            observed steps are counted; with ``stages="all"`` that is every step.

    Raises:
        ValueError: On malformed stages or a non-positive ``every_n_steps`` (at construction), or stages that can
            never run (when training starts).
    """

    part_name = "transitions"

    def __init__(
        self,
        stages: str | Sequence[Stage | Sequence | dict] = "paper",
        every_n_steps: int = 1,
        trajectories: int = 16,
        seed: int = 0,
        track_writes_per_cell: bool = False,
    ) -> None:
        super().__init__(TransitionSettings.make(stages, every_n_steps, trajectories, seed, track_writes_per_cell))

    @property
    def stages(self) -> tuple[Stage, ...]:
        return self.settings.stages

    @property
    def every_n_steps(self) -> int:
        return self.settings.every_n_steps

    @property
    def layer_names(self) -> list[str]:
        """The quantized layers whose transitions are counted."""
        return [n for n, _ in self.counts.layers] if self.counts is not None else []

    @property
    def results(self) -> dict[str, TransitionStage]:
        """Finished stages, ``{stage key: TransitionStage}`` (restored ones too, before ``setup``)."""
        if self.part is not None:
            return self.part.results
        return {k: TransitionStage.from_dict(r) for k, r in (self._pending or {}).get("results", {}).items()}

    @property
    def followed_weights(self) -> dict[str, Tensor]:
        """Per layer, the flat indices of the weights whose codes the trajectories follow."""
        return dict(self.part.indices) if self.part is not None else {}

    @property
    def track_writes_per_cell(self) -> bool:
        return self.settings.writes_per_cell

    @property
    def writes_per_cell(self) -> dict[str, Tensor]:
        """Per layer, the ``int32`` writes of every weight so far (empty when not tracked or before ``setup``)."""
        return dict(self.part.writes or {}) if self.part is not None else {}

    def transition_counts(self) -> dict[str, dict[str, Tensor]]:
        """Finished stages' counts: ``{stage: {layer: C [L, L]}}`` (int64 tensors)."""
        return {
            key: {name: torch.tensor(info.counts, dtype=torch.int64) for name, info in res.layers.items()}
            for key, res in self.results.items()
        }

    # ----------------------------------------------------------------------------------------------------------------
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._drives():
            self.part.train_start(trainer)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._drives():
            self.part.epoch_start(trainer)

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int):
        if self._drives():
            self.part.batch_start(trainer, batch_idx)

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any) -> None:
        if self._drives():
            self.part.before_optimizer_step(trainer)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx):
        if self._drives():
            self.part.batch_end(trainer, outputs, batch, batch_idx)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._drives():
            self.part.epoch_end(trainer)
