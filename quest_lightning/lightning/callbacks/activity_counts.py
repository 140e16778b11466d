"""The activity part of the run's counts: per epoch and per layer, the exact AOR and per-level operation counts, the
spike rate of every neuron group and the weight sparsity; each epoch's sums carry the epoch they belong to."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_warn

from quest_lightning.lightning.callbacks.base import (
    Part,
    batch_size_of,
    compute_quietly,
    layer_codes,
    load_metric_state,
    log_scalars,
    log_wandb_table,
    metric_state,
    to_float,
)
from quest_lightning.metrics import ActivationOperationRate, LayerGeometry, SpikeRate, weight_sparsity
from quest_lightning.nn.inspect import reset_recording, set_recording, spiking_neurons, synaptic_layers
from quest_lightning.summary import ActivityRecord, LayerActivity, NeuronActivity

__all__ = ["STAGES", "ActivityCounts", "ActivitySettings"]

STAGES = ("train", "val")


@dataclass(frozen=True)
class ActivitySettings:
    """What the activity count measures (``AORMeter``'s arguments): the stages ``on``, whether the first synaptic
    layer sees analog input, and one training batch in ``train_every_n_batches``."""

    on: tuple[str, ...] = STAGES
    first_layer_analog: bool = True
    train_every_n_batches: int = 1

    def __post_init__(self) -> None:
        on = (self.on,) if isinstance(self.on, str) else tuple(self.on)
        if not on or any(s not in STAGES for s in on):
            raise ValueError(f"AORMeter(on={self.on!r}): stages must be a non-empty subset of {STAGES}.")
        object.__setattr__(self, "on", on)
        if not isinstance(self.first_layer_analog, bool):
            raise ValueError(
                f"first_layer_analog={self.first_layer_analog!r} must be True (direct coding: the first layer sees "
                "analog input) or False (spike-coded input)."
            )
        n = self.train_every_n_batches
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"train_every_n_batches={n!r} must be >= 1 (an integer; 1 counts every batch).")


class ActivityCounts(Part):
    """Per-epoch activity of every synaptic layer and neuron group (see the module docstring).

    Attributes:
        history: ``{stage: [ActivityRecord, ...]}``, one record per finished epoch (or validation run).
    """

    what = "activity settings"
    owner = "AORMeter"

    def __init__(self, counts: Any) -> None:
        super().__init__(counts)
        self.history: dict[str, list[ActivityRecord]] = {}
        self.layers: list[tuple[str, Any]] = []
        self.neurons: list[tuple[str, Any]] = []
        self._aor: dict[str, dict[str, ActivationOperationRate]] = {}
        self._rates: dict[str, dict[str, SpikeRate]] = {}
        self._open: dict[str, int | None] = {}  # the epoch whose sums the meters hold (None: nothing in flight)
        self._val_samples = 0

    def bind(self, pl_module: pl.LightningModule) -> None:
        self.layers = synaptic_layers(pl_module)
        self.neurons = spiking_neurons(pl_module)
        self._make_meters()

    def claim(self, driver: Any, settings: ActivitySettings, priority: int) -> None:
        before = self.settings
        super().claim(driver, settings, priority)
        if self.settings != before:  # claims are made in setup, before anything is counted
            self._aor, self._rates = {}, {}
            self.history = {s: self.history.get(s, []) for s in self.settings.on}
            self._open = {s: self._open.get(s) for s in self.settings.on}
        self._make_meters()

    def _make_meters(self) -> None:
        if self.settings is None:
            return
        for s in self.settings.on:
            self.history.setdefault(s, [])
            self._open.setdefault(s, None)
            if s not in self._aor:
                self._aor[s] = {
                    name: ActivationOperationRate(LayerGeometry.of(layer), layer_codes(layer)[1])
                    for name, layer in self.layers
                }
                self._rates[s] = {name: SpikeRate() for name, _ in self.neurons}

    @property
    def input_layer(self) -> str | None:
        """Name of the layer that sees the analog input (the first synaptic layer), or ``None``."""
        return self.layers[0][0] if self.layers and self.settings.first_layer_analog else None

    def measures(self, stage: str) -> bool:
        return self.settings is not None and stage in self.settings.on

    # --- hooks (called by the driver) -------------------------------------------------------------------------------
    def train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._finish_stale(trainer, pl_module)
        reset_recording(pl_module)
        set_recording(pl_module, self.measures("train"))
        if self.measures("train"):
            self._open["train"] = trainer.current_epoch

    def _sampled(self, batch_idx: int) -> bool:
        return self.measures("train") and batch_idx % self.settings.train_every_n_batches == 0

    def train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch_idx: int) -> None:
        # a resume skips the epoch-start hook: finish what a checkpoint at the last batch of an epoch left open
        self._finish_stale(trainer, pl_module)
        if self.measures("train"):
            self._open["train"] = trainer.current_epoch
        # recording follows the sampled batches; this also restores it after a validation run inside the epoch
        sampled = self._sampled(batch_idx)
        if self.layers and self.layers[0][1].record != sampled:
            set_recording(pl_module, sampled)

    def train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self._sampled(batch_idx):
            self.counts.check_finite(trainer, outputs, batch_idx)
            self._update("train", batch_size_of(batch))  # weights change every step: count with this step's codes
            reset_recording(pl_module)

    def train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.finish(trainer, pl_module, "train")
        set_recording(pl_module, False)

    def val_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._val_samples = 0
        counting = self.measures("val") and not trainer.sanity_checking
        if counting:
            self.counts.check_finite(trainer)
            self._open["val"] = trainer.current_epoch
        reset_recording(pl_module)
        set_recording(pl_module, counting)

    def val_batch_end(self, batch: Any) -> None:
        self._val_samples += batch_size_of(batch)  # weights are fixed: counts accumulate in the layers

    def val_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.finish(trainer, pl_module, "val")
        reset_recording(pl_module)
        set_recording(pl_module, self.measures("train") and trainer.training)

    # ----------------------------------------------------------------------------------------------------------------
    def _update(self, stage: str, samples: int) -> None:
        for name, layer in self.layers:
            counts, rows = layer.input_counts, layer.recorded_rows
            if name == self.input_layer and counts.numel():  # analog input: every MAC meeting a non-zero weight reads
                counts = torch.ones_like(counts) * rows
            codes, _ = layer_codes(layer)
            meter = self._aor[stage][name]
            if meter.device != codes.device:
                meter.to(codes.device)
            meter.update(counts, codes, rows, samples)
        for name, neuron in self.neurons:
            if neuron.spike_count is not None:
                meter = self._rates[stage][name]
                if meter.device != neuron.spike_count.device:
                    meter.to(neuron.spike_count.device)
                meter.update(neuron.spike_count, neuron.neurons, samples, neuron.recorded_rows)

    def _finish_stale(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._open.get("train") not in (None, trainer.current_epoch):
            self.finish(trainer, pl_module, "train")

    def finish(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> ActivityRecord | None:
        """Close the epoch of ``stage`` in flight: its record (empty, with the reason, if nothing ran), logged.
        Idempotent: a closed stage returns ``None``. A collective under DDP (every rank calls it)."""
        epoch = self._open.get(stage)
        if epoch is None:
            return None
        self._open[stage] = None
        if stage == "val":
            self._update("val", self._val_samples)
        layers, neurons = [], []
        for name, layer in self.layers:
            result = compute_quietly(self._aor[stage][name])
            self._aor[stage][name].reset()
            if int(result.rows) == 0:
                continue  # this layer did not run in the counted batches
            sparsity = to_float(weight_sparsity(layer.current_codes())) if layer.enabled else None
            layers.append(
                LayerActivity(
                    layer=name,
                    quantized=bool(layer.enabled),
                    input_layer=name == self.input_layer,
                    bits=layer.bits if layer.enabled else None,
                    ops=int(result.ops),
                    rows=int(result.rows),
                    samples=int(result.samples),
                    level_ops=tuple(result.level_ops.tolist()),
                    aor=to_float(result.aor),
                    synaptic_rate=to_float(result.synaptic_rate),
                    sparsity=sparsity,
                )
            )
        for name, _ in self.neurons:
            result = compute_quietly(self._rates[stage][name])
            self._rates[stage][name].reset()
            if int(result.neuron_samples) == 0:
                continue
            neurons.append(
                NeuronActivity(
                    neuron=name,
                    rate=to_float(result.rate),
                    rate_per_step=to_float(result.rate_per_step),
                    spikes=to_float(result.spikes),
                )
            )
        empty = None
        if not layers:
            what = "validation_step" if stage == "val" else "training_step"
            empty = f"no forward pass through the network was recorded ({what} did not run the network)"
            layers, neurons = [], []
        record = ActivityRecord(stage, epoch, trainer.global_step, tuple(layers), tuple(neurons), empty)
        self.history.setdefault(stage, []).append(record)
        self._log(trainer, record)
        return record

    def _log(self, trainer: pl.Trainer, record: ActivityRecord) -> None:
        stage = record.stage
        if record.empty is not None:
            rank_zero_warn(f"{stage} epoch {record.epoch}: {record.empty}; recorded as empty, nothing logged.")
            return
        if record.silent:
            rank_zero_warn(
                f"{stage} epoch {record.epoch}: no neuron fired; the network is silent (its energy is no saving)."
            )
        scalars = {f"aor/{stage}/{r.layer}": r.aor for r in record.layers}
        scalars.update({f"sparsity/{r.layer}": r.sparsity for r in record.layers if r.sparsity is not None})
        scalars.update({f"spike_rate/{stage}/{n.neuron}": n.rate for n in record.neurons})
        scalars.update({f"aor/{stage}/mean": record.aor_mean, f"spike_rate/{stage}/mean": record.spike_rate_mean})
        scalars["sparsity/mean"] = record.sparsity_mean  # a property of the weights, like sparsity/{layer}
        scalars = {k: v for k, v in scalars.items() if v is not None}
        scalars["epoch"] = record.epoch
        log_scalars(trainer, scalars)
        log_wandb_table(
            trainer,
            f"aor_table/{stage}",
            ["layer", "aor", "synaptic_rate", "sparsity", "ops"],
            [[r.layer, r.aor, r.synaptic_rate, r.sparsity, r.ops] for r in record.layers],
        )

    # --- checkpoint -------------------------------------------------------------------------------------------------
    @staticmethod
    def initial_state(settings: ActivitySettings) -> dict[str, Any]:
        """The state of a count that has seen nothing (what a callback saves before ``setup``)."""
        return {"settings": asdict(settings), "history": {s: [] for s in settings.on}, "meters": {}, "open": {}}

    @staticmethod
    def check_state(state: dict[str, Any], settings: ActivitySettings) -> None:
        """Accept any checkpoint of this part (its records carry their own stage and epoch)."""

    def state_dict(self) -> dict[str, Any]:
        meters = {
            s: {
                "aor": {n: metric_state(m) for n, m in self._aor.get(s, {}).items()},
                "rate": {n: metric_state(m) for n, m in self._rates.get(s, {}).items()},
            }
            for s in self.settings.on
        }
        return {
            "settings": asdict(self.settings),
            "history": {s: [r.to_dict() for r in h] for s, h in self.history.items()},
            "meters": meters,
            "open": dict(self._open),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history = {s: [ActivityRecord.from_dict(r) for r in h] for s, h in state["history"].items()}
        self._open = dict(state["open"])
        for s, groups in state["meters"].items():
            for kind, meters in (("aor", self._aor.get(s, {})), ("rate", self._rates.get(s, {}))):
                for name, st in groups.get(kind, {}).items():
                    if name in meters:
                        load_metric_state(meters[name], st, self.rank)
