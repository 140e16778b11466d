"""``AORMeter``: per-layer spike rate, weight sparsity and exact Activation Operation Rate, per epoch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl

from quest_lightning.lightning.callbacks.activity_counts import STAGES, ActivitySettings
from quest_lightning.lightning.callbacks.counts import PartOwner
from quest_lightning.summary import ActivityRecord

__all__ = ["STAGES", "AORMeter"]


class AORMeter(PartOwner):
    """Measure, per epoch and per layer, what the hardware will read.

    For every synaptic layer (``QuantConv2d``/``QuantLinear``): the exact AOR (input spike AND non-zero weight, over
    the ANN-equivalent operations × T), the synaptic operation rate, the per-level operation counts :math:`N(v)`
    and the weight sparsity (share of zero codes). For every neuron: the spike rate (spikes per neuron per sample
    over T, and per step). Counting runs on the device with no host synchronisation; values are logged at the end of
    each epoch as ``aor/{stage}/{layer}``, ``sparsity/{layer}``, ``spike_rate/{stage}/{neuron}`` and the means
    ``aor/{stage}/mean``, ``sparsity/mean``, ``spike_rate/{stage}/mean``. An epoch that never ran the network is
    recorded as empty, with the reason, and nothing is logged for it.

    **What a layer sees decides how it is counted**, not its position: a layer whose input holds a value that is
    neither 0 nor 1 (pixels under direct coding, graded values after average pooling) sees analog input, so every
    MAC that meets a non-zero weight counts as a read: its AOR is that share of the MACs, and it is left out of the
    means and of the read energy. A layer that sees only 0s and 1s is counted from its real spikes. A layer's own
    ``input_kind`` (``"spikes"``, ``"analog"``; ``"auto"`` by default) overrides this, and ``first_layer_analog``
    sets the first layer the network calls. Synaptic layers that are not quest-lightning's (a plain ``nn.Conv2d``,
    ``nn.Conv1d`` or ``nn.Linear``) are counted as full-precision layers; other kinds are listed as skipped in the
    record. Samples and time steps are those the layers met (the batch dimension of their input; the time axis of a
    multi-step call, or the calls of a single-step loop), whatever the batch layout.

    The counts live in the run's shared :class:`~quest_lightning.lightning.callbacks.counts.RunCounts`, which every
    ``DeviceEnergyCallback`` of the Trainer prices.

    Args:
        on: the stages to measure, a subset of ``("train", "val")``.
        first_layer_analog: ``None`` (the default: by what the first layer sees), ``True`` (count the first layer
            the network calls as analog input) or ``False`` (as spikes).
        train_every_n_batches: count one training batch in ``n`` (each counted batch exactly, with its own codes);
            the training figures are then those of the counted batches. Validation always counts every batch.
    """

    part_name = "activity"

    def __init__(
        self, on: Sequence[str] = STAGES, first_layer_analog: bool | None = None, train_every_n_batches: int = 1
    ) -> None:
        super().__init__(ActivitySettings(on, first_layer_analog, train_every_n_batches))

    @property
    def on(self) -> tuple[str, ...]:
        return self.settings.on

    @property
    def first_layer_analog(self) -> bool | None:
        return self.settings.first_layer_analog

    @property
    def input_layer(self) -> str | None:
        """Name of the first layer counted as seeing analog input in the latest record, or ``None``."""
        return self.part.input_layer if self.part is not None else None

    @property
    def history(self) -> dict[str, list[ActivityRecord]]:
        """``{stage: [ActivityRecord, ...]}`` of the measured stages (restored ones too, before ``setup``)."""
        if self.part is not None:
            return {s: self.part.history.get(s, []) for s in self.on}
        saved = (self._pending or {}).get("history", {})
        return {s: [ActivityRecord.from_dict(r) for r in saved.get(s, [])] for s in self.on}

    def latest(self, stage: str = "train") -> ActivityRecord | None:
        """The most recent epoch record of ``stage``, or ``None``."""
        records = self.history.get(stage) or []
        return records[-1] if records else None

    # ----------------------------------------------------------------------------------------------------------------
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._drives():
            self.part.train_epoch_start(trainer, pl_module)

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int):
        if self._drives():
            self.part.train_batch_start(trainer, pl_module, batch_idx)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx):
        if self._drives():
            self.part.train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._drives():
            self.part.train_epoch_end(trainer, pl_module)

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._drives():
            self.part.val_epoch_start(trainer, pl_module)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        if self._drives():
            self.part.val_batch_start(trainer, batch_idx, dataloader_idx)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self._drives():
            self.part.val_batch_end(trainer)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._drives():
            self.part.val_epoch_end(trainer, pl_module)
