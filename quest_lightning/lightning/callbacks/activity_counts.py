"""The activity part of the run's counts: per epoch and per layer, the exact AOR and per-level operation counts, the
spike rate of every neuron group and the weight sparsity; each epoch's sums carry the epoch they belong to.

**Samples** are those the layers met (:mod:`~quest_lightning.lightning.callbacks.samples`), never Lightning's
batch-size guess. **Input kind.** A layer's operations are counted as spikes (an input spike meeting a non-zero
weight is a read) or as analog input (every MAC meeting a non-zero weight is a read) by what the layer saw: analog as
soon as one recorded input element is neither 0 nor 1, decided on the device with no host synchronisation. The
layer's own ``input_kind`` overrides that, and ``AORMeter(first_layer_analog=...)`` sets the first layer the network
calls. The record says which kind each layer was counted as, and who decided. A layer counted as analog input also
gets the per-level operations of its binarized input (its non-zero input elements, as the layer recorded them, meeting
the weights of each level), what NeuroBench's ``Effective_MACs`` count; a layer declared ``input_kind="spikes"`` never
needs them.

**Per weight update.** The layers accumulate their input counts while the weights stay the same (the batches of a
gradient-accumulation window, a whole validation run), and the counts are turned into per-level operations once per
weight update, with the codes of that update's forward passes; a linear layer's per-level counts come from per-column
level counts kept current from the codes that changed (:class:`~quest_lightning.metrics.column_levels.ColumnLevels`,
fed by the transition count's comparison when it runs). ``ActivityCounts.fast = False`` selects the reference path
(every count from the codes, once per counted batch), which the tests compare with.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor

from quest_lightning.functional.grid import levels_of_qmax
from quest_lightning.lightning.callbacks.activity_record import (
    STAGES,
    ActivitySettings,
    layer_activity,
    log_activity,
    neuron_activity,
)
from quest_lightning.lightning.callbacks.base import (
    Part,
    compute_quietly,
    layer_codes,
    load_metric_state,
    metric_state,
)
from quest_lightning.metrics import ActivationOperationRate, InputKindTally, LayerGeometry, SpikeRate
from quest_lightning.metrics.column_levels import ColumnLevels
from quest_lightning.metrics.transitions import TransitionChanges
from quest_lightning.nn.inspect import reset_recording, set_recording, spiking_neurons
from quest_lightning.nn.layers import QuantLayerMixin
from quest_lightning.summary import ActivityRecord, SkippedLayer

__all__ = ["STAGES", "ActivityCounts", "ActivitySettings"]


class ActivityCounts(Part):
    """Per-epoch activity of every synaptic layer and neuron group (see the module docstring).

    Attributes:
        history: ``{stage: [ActivityRecord, ...]}``, one record per finished epoch (or validation run).
        mixed: ``[(stage, epoch, message)]``, layers that saw spikes in some updates and analog input in others.
        fast: class attribute; ``False`` turns the counts into operations per counted batch (the reference path).
    """

    what = "activity settings"
    owner = "AORMeter"
    fast = True

    def __init__(self, counts: Any) -> None:
        super().__init__(counts)
        self.history: dict[str, list[ActivityRecord]] = {}
        self.mixed: list[tuple[str, int, str]] = []
        self.layers: list[tuple[str, Any, Any]] = []  # (name, module, its recording)
        self.neurons: list[tuple[str, Any]] = []
        self._aor: dict[str, dict[str, ActivationOperationRate]] = {}
        self._nonzero: dict[str, dict[str, ActivationOperationRate]] = {}  # binarized analog input
        self._kinds: dict[str, dict[str, InputKindTally]] = {}
        self._rates: dict[str, dict[str, SpikeRate]] = {}
        self._open: dict[str, int | None] = {}  # the epoch whose sums the meters hold (None: nothing in flight)
        self._pending: dict[str, dict[str, int]] = {}  # samples recorded since the last update, per layer ("": net)
        self._flushed_step: int | None = None
        self._module: Any = None
        self._columns: dict[str, ColumnLevels] = {}  # fast path: per-column level counts of the linear layers

    def bind(self, pl_module: pl.LightningModule) -> None:
        taps = self.counts.taps
        self.layers = [(name, tap.module, tap.recording) for name, tap in taps.layers.items()]
        self.neurons = spiking_neurons(pl_module)
        self._module = pl_module
        self._columns = {}
        for name, module, _ in self.layers:
            qmax = layer_codes(module)[1] if isinstance(module, QuantLayerMixin) and module.enabled else None
            if qmax is not None and LayerGeometry.of(module).kind == "linear" and levels_of_qmax(qmax) <= 16:
                self._columns[name] = ColumnLevels(qmax)
        self._make_meters()

    def offer_changes(self, name: str, previous: Tensor, current: Tensor, changes: TransitionChanges) -> None:
        """The codes of layer ``name`` that changed from ``previous`` to ``current``, as the transition count found
        them: the per-column level counts follow them instead of comparing the codes again."""
        column = self._columns.get(name) if self.fast and self.measures("train") else None
        if column is not None and changes.index is not None:
            column.offer(previous, current, changes.index, changes.before, changes.after)

    def claim(self, driver: Any, settings: ActivitySettings, priority: int) -> None:
        before = self.settings
        super().claim(driver, settings, priority)
        if self.settings != before:  # claims are made in setup, before anything is counted
            self._aor, self._nonzero, self._kinds, self._rates = {}, {}, {}, {}
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
                    name: ActivationOperationRate(LayerGeometry.of(m), layer_codes(m)[1]) for name, m, _ in self.layers
                }
                self._nonzero[s] = {
                    name: ActivationOperationRate(LayerGeometry.of(m), layer_codes(m)[1]) for name, m, _ in self.layers
                }
                self._kinds[s] = {name: InputKindTally() for name, _, _ in self.layers}
                self._rates[s] = {name: SpikeRate() for name, _ in self.neurons}

    @property
    def input_layer(self) -> str | None:
        """Name of the first layer counted as seeing analog input in the latest record, or ``None``."""
        for stage in ("train", "val"):
            records = self.history.get(stage) or []
            if records and records[-1].layers:
                return next((r.layer for r in records[-1].layers if r.input_layer), None)
        return None

    def measures(self, stage: str) -> bool:
        return self.settings is not None and stage in self.settings.on

    def kind_of(self, name: str, recording: Any) -> tuple[str | None, str]:
        """The kind a layer's operations are counted as when fixed in advance, and who fixed it: its own
        ``input_kind``, else ``first_layer_analog`` for the first layer called; ``(None, "recorded")`` otherwise."""
        kind = recording.input_kind
        if kind != "auto":
            return kind, "override"
        first = self.settings.first_layer_analog
        if first is not None and self.layers and name == self.counts.taps.order([n for n, _, _ in self.layers])[0]:
            return ("analog" if first else "spikes"), "first_layer_analog"
        return None, "recorded"

    # --- recording --------------------------------------------------------------------------------------------------
    def _record(self, on: bool) -> None:
        set_recording(self._module, on)
        for rec in self.counts.taps.foreign:
            rec.record = on

    def _reset(self) -> None:
        reset_recording(self._module)
        for rec in self.counts.taps.foreign:
            rec.reset_recording()

    def _add_samples(self, stage: str) -> int:
        """Add the batch in flight's samples to every layer that ran in it (and to the network's)."""
        samples = self.counts.batch_samples()
        pending = self._pending.setdefault(stage, {})
        for name, _, _ in self.layers:
            if self.counts.taps.ran(name, "batch"):
                pending[name] = pending.get(name, 0) + samples
        pending[""] = pending.get("", 0) + samples
        return samples

    def _flush(self, stage: str) -> None:
        """Turn what the layers recorded since the last update into per-level operations, with the codes of their
        forward passes, and reset the records (no host synchronisation)."""
        pending = self._pending.pop(stage, {})
        if pending.get("", 0) and stage in self._aor:
            for name, module, rec in self.layers:
                samples, rows = pending.get(name, 0), rec.recorded_rows
                if not samples or not rows:
                    continue
                codes, _ = layer_codes(module)
                counts, nonbinary = rec.input_counts, rec.nonbinary_inputs
                kind, _ = self.kind_of(name, rec)
                nonzero = None if kind == "spikes" else rec.nonzero_input_counts()
                if kind is None:  # decided by what the layer saw, on the device
                    analog = nonbinary > 0
                    counts = torch.where(analog, torch.full_like(counts, rows), counts)
                    nonzero = torch.where(analog, nonzero, torch.zeros_like(nonzero))
                else:
                    analog = torch.tensor(kind == "analog")
                    counts = torch.full_like(counts, rows) if kind == "analog" else counts
                meters = (self._aor[stage][name], self._kinds[stage][name], self._nonzero[stage][name])
                for meter in meters:
                    if meter.device != codes.device:
                        meter.to(codes.device)
                column = self._columns.get(name) if self.fast else None
                levels = column.counts(codes) if column is not None else None
                self._aor[stage][name].update(
                    counts, codes, rows, samples, None if kind == "spikes" else rows, column_levels=levels
                )
                if nonzero is not None:  # NeuroBench's binarized input: its non-zero elements
                    self._nonzero[stage][name].update(nonzero, codes, rows, samples, rows, column_levels=levels)
                self._kinds[stage][name].update(nonbinary, analog)
            for name, neuron in self.neurons:
                if neuron.spike_count is not None and neuron.recorded_rows:
                    meter = self._rates[stage][name]
                    if meter.device != neuron.spike_count.device:
                        meter.to(neuron.spike_count.device)
                    meter.update(neuron.spike_count, neuron.neurons, pending[""], neuron.recorded_rows)
        self._reset()

    # --- hooks (called by the driver) -------------------------------------------------------------------------------
    def train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._finish_stale(trainer, pl_module)
        self._pending.pop("train", None)
        self._reset()
        self._record(self.measures("train"))
        if self.measures("train"):
            self._open["train"] = trainer.current_epoch

    def _sampled(self, batch_idx: int) -> bool:
        return self.measures("train") and batch_idx % self.settings.train_every_n_batches == 0

    def train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch_idx: int) -> None:
        self.counts.open_batch(trainer, "train", batch_idx)
        # a resume skips the epoch-start hook: finish what a checkpoint at the last batch of an epoch left open
        self._finish_stale(trainer, pl_module)
        if self.measures("train"):
            self._open["train"] = trainer.current_epoch
        if self._flushed_step is None:
            self._flushed_step = trainer.global_step
        # recording follows the sampled batches; this also restores it after a validation run inside the epoch
        sampled = self._sampled(batch_idx)
        if self.layers and self.layers[0][2].record != sampled:
            self._record(sampled)

    def train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not self._sampled(batch_idx):
            return
        self.counts.check_finite(trainer, outputs, batch_idx)
        self._add_samples("train")
        # the weights change at an optimizer step: count the window's operations with the codes it ran with
        if not self.fast or trainer.global_step != self._flushed_step:
            self._flush("train")
            self._flushed_step = trainer.global_step

    def train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.finish(trainer, pl_module, "train")
        self._record(False)

    def val_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._pending.get("train"):
            self._flush("train")  # a validation run inside a gradient-accumulation window
        counting = self.measures("val") and not trainer.sanity_checking
        if counting:
            self.counts.check_finite(trainer)
            self.counts.guard.check(trainer)
            self.counts.note_padding(trainer, "val")
            self._open["val"] = trainer.current_epoch
        self._pending.pop("val", None)
        self._reset()
        self._record(counting)

    def val_batch_start(self, trainer: pl.Trainer, batch_idx: int, dataloader_idx: int = 0) -> None:
        self.counts.open_batch(trainer, "val", batch_idx, dataloader_idx)

    def val_batch_end(self, trainer: pl.Trainer) -> None:
        if self._open.get("val") is not None:
            self._add_samples("val")  # weights are fixed: counts accumulate in the layers until the epoch ends

    def val_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.finish(trainer, pl_module, "val")
        self._reset()
        self._record(self.measures("train") and trainer.training)

    # ----------------------------------------------------------------------------------------------------------------
    def _finish_stale(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._open.get("train") not in (None, trainer.current_epoch):
            self.finish(trainer, pl_module, "train")

    def finish(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> ActivityRecord | None:
        """Close the epoch of ``stage`` in flight: its record (empty, with the reason, if nothing ran), logged.
        Idempotent: a closed stage returns ``None``. A collective under DDP (every rank calls it).

        Raises:
            DegenerateRunError: A counted step was not finite (see :mod:`~quest_lightning.lightning.callbacks.guard`).
        """
        epoch = self._open.get(stage)
        if epoch is None:
            return None
        self._open[stage] = None
        self.counts.guard.check(trainer)
        self._flush(stage)
        taps = self.counts.taps
        layers, not_run = [], []
        modules = {name: (module, rec) for name, module, rec in self.layers}
        for name in taps.order(list(modules)):
            module, rec = modules[name]
            result = compute_quietly(self._aor[stage][name])
            nonzero = compute_quietly(self._nonzero[stage][name])
            kinds = [int(v) for v in compute_quietly(self._kinds[stage][name])]
            for meters in (self._aor, self._nonzero, self._kinds):
                meters[stage][name].reset()
            if int(result.rows) == 0:
                not_run.append(SkippedLayer(name, type(module).__name__, "did not run in the counted batches"))
                continue
            kind, source = self.kind_of(name, rec)
            _, analog_updates, updates = kinds
            if kind is None:
                kind = "analog" if analog_updates else "spikes"
                if 0 < analog_updates < updates:
                    msg = (
                        f"{stage} epoch {epoch}: layer {name!r} saw analog input in {analog_updates} of {updates} "
                        "counted updates and spikes in the others; each update is counted as what it saw. Set the "
                        "layer's input_kind to count them all one way."
                    )
                    self.mixed.append((stage, epoch, msg))
            kept = kind == "analog" and int(nonzero.rows) == int(result.rows)  # every update (resumes too)
            layers.append(layer_activity(name, module, result, kind, source, nonzero if kept else None))
        neurons = []
        for name, _ in self.neurons:
            result = compute_quietly(self._rates[stage][name])
            self._rates[stage][name].reset()
            if int(result.neuron_samples):
                neurons.append(neuron_activity(name, result))
        empty = None
        if not layers:
            what = "validation_step" if stage == "val" else "training_step"
            empty = f"no forward pass through the network was recorded ({what} did not run the network)"
            neurons, not_run = [], []
        skipped = (*taps.skipped, *not_run)
        record = ActivityRecord(stage, epoch, trainer.global_step, tuple(layers), tuple(neurons), empty, skipped)
        self.history.setdefault(stage, []).append(record)
        log_activity(trainer, record)
        return record

    # --- checkpoint -------------------------------------------------------------------------------------------------
    @staticmethod
    def initial_state(settings: ActivitySettings) -> dict[str, Any]:
        """The state of a count that has seen nothing (what a callback saves before ``setup``)."""
        history = {s: [] for s in settings.on}
        return {"settings": settings.to_state(), "history": history, "meters": {}, "open": {}, "mixed": []}

    @staticmethod
    def check_state(state: dict[str, Any], settings: ActivitySettings) -> None:
        """Accept any checkpoint of this part (its records carry their own stage and epoch)."""

    def state_dict(self) -> dict[str, Any]:
        for stage in list(self._pending):
            self._flush(stage)  # what the layers hold is not in the checkpoint: count it now
        meters = {
            s: {
                "aor": {n: metric_state(m) for n, m in self._aor.get(s, {}).items()},
                "nonzero": {n: metric_state(m) for n, m in self._nonzero.get(s, {}).items()},
                "kind": {n: metric_state(m) for n, m in self._kinds.get(s, {}).items()},
                "rate": {n: metric_state(m) for n, m in self._rates.get(s, {}).items()},
            }
            for s in self.settings.on
        }
        return {
            "settings": self.settings.to_state(),
            "history": {s: [r.to_dict() for r in h] for s, h in self.history.items()},
            "meters": meters,
            "open": dict(self._open),
            "mixed": [list(m) for m in self.mixed],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history = {s: [ActivityRecord.from_dict(r) for r in h] for s, h in state["history"].items()}
        self._open = dict(state["open"])
        self.mixed = [tuple(m) for m in state.get("mixed", [])]
        for s, groups in state["meters"].items():
            for kind, meters in (
                ("aor", self._aor.get(s, {})),
                ("nonzero", self._nonzero.get(s, {})),
                ("kind", self._kinds.get(s, {})),
                ("rate", self._rates.get(s, {})),
            ):
                for name, st in groups.get(kind, {}).items():
                    if name in meters:
                        load_metric_state(meters[name], st, self.rank)
