"""``RunCounts``: the one set of counts of a run, shared by the callbacks through the LightningModule.

The counting (transition counters per stage, AOR and spike-rate meters per epoch, per-epoch training curves) lives in
one :class:`RunCounts` attached to the LightningModule. Whichever callback needs it first creates it in ``setup``;
the others find it. Each part has one *driver*, the callback whose hooks feed it: ``WeightTransitionMonitor`` drives
the transition part and ``AORMeter`` the activity part; without them the first ``DeviceEnergyCallback`` drives them
with their default settings. Every ``DeviceEnergyCallback`` reads the same counts, so several devices are priced
from one counting pass per step. The driver of a part saves it in its checkpoint entry.

Finishing an epoch or a stage is idempotent: the first callback that needs the result finishes it, whatever the
order of the callbacks in the Trainer.

The counts also hold what both parts share: the forward hooks that give every batch's samples and time steps
(:class:`~quest_lightning.lightning.callbacks.samples.LayerTaps`), the finiteness guard
(:class:`~quest_lightning.lightning.callbacks.guard.FiniteGuard`), and the batch in flight (its samples, and the
padded samples its loader reports).
"""

from __future__ import annotations

import math
import weakref
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from torch import Tensor

from quest_lightning.energy.aware import EnergyAware
from quest_lightning.lightning.callbacks.activity_counts import ActivityCounts
from quest_lightning.lightning.callbacks.activity_record import silent_neurons, silent_neurons_message
from quest_lightning.lightning.callbacks.base import OWNER, world_size
from quest_lightning.lightning.callbacks.energy_aware import EnergyAwareTraining
from quest_lightning.lightning.callbacks.guard import DegenerateRunError, FiniteGuard
from quest_lightning.lightning.callbacks.resume import validate_after_resume
from quest_lightning.lightning.callbacks.samples import LayerTaps, loader_of, loader_padding, loaders_of, padding_note
from quest_lightning.lightning.callbacks.training_ops import TrainingCostMeter
from quest_lightning.lightning.callbacks.transition_counts import TransitionCounts
from quest_lightning.metrics.neurobench import neurobench_record
from quest_lightning.nn.inspect import require_quantized_layers
from quest_lightning.summary import (
    ENERGY_AWARE_FLAG,
    EnergyAwareSettings,
    EpochCurve,
    Flag,
    NeuroBenchRecord,
    RunSummary,
    TrainingCost,
)

__all__ = ["DegenerateRunError", "PartOwner", "RunCounts"]


class RunCounts:
    """The shared counts of one Trainer's run on one LightningModule (see the module docstring).

    Attributes:
        transitions: The transition part (:class:`TransitionCounts`).
        activity: The activity part (:class:`ActivityCounts`).
        curves: One :class:`~quest_lightning.summary.EpochCurve` per finished training epoch.
        pricers: The ``DeviceEnergyCallback`` s reading these counts, in ``setup`` order.
    """

    ATTRIBUTE = "_quest_run_counts"

    def __init__(self, trainer: pl.Trainer) -> None:
        self._trainer = weakref.ref(trainer)
        self.layers: list[tuple[str, Any]] = []
        self.taps: LayerTaps | None = None
        self.guard = FiniteGuard([])
        self.padding_notes: dict[str, str] = {}
        self._batch: tuple[Any, ...] | None = None  # (stage, epoch, batch_idx, dataloader_idx, global step)
        self._batch_samples: int | None = None
        self.transitions = TransitionCounts(self)
        self.activity = ActivityCounts(self)
        self.curves: list[EpochCurve] = []
        self.curves_driver: Any = None
        self.pricers: list[Any] = []
        self._checked: tuple[int, int, int] | None = None
        self._rates: tuple[int, tuple[float, ...]] | None = None  # the learning rates an epoch started with
        self._curve_due: tuple[int, int, tuple[float, ...]] | None = None  # (epoch, step, rates) of an ended epoch
        self._restored_metrics: dict[str, float] = {}  # the logged scalars a checkpoint held
        self._neurobench: tuple[tuple[Any, ...], NeuroBenchRecord | None] | None = None

    @property
    def trainer(self) -> pl.Trainer | None:
        """The Trainer these counts belong to (``None`` once it is gone)."""
        return self._trainer()

    @classmethod
    def find(cls, pl_module: pl.LightningModule) -> RunCounts | None:
        """The counts attached to ``pl_module``, if any."""
        return pl_module.__dict__.get(cls.ATTRIBUTE)

    @classmethod
    def attach(cls, trainer: pl.Trainer, pl_module: pl.LightningModule, who: str) -> RunCounts:
        """The counts of ``trainer``'s run on ``pl_module``: found, or created and attached (a new Trainer starts
        new counts).

        Raises:
            ValueError: ``pl_module`` has no quantized layer (the message, naming ``who``, says what to change).
        """
        layers = require_quantized_layers(pl_module, who)
        counts = cls.find(pl_module)
        if counts is None or counts.trainer is not trainer:
            if counts is not None and counts.taps is not None:
                counts.taps.remove()
            counts = cls(trainer)
            pl_module.__dict__[cls.ATTRIBUTE] = counts  # not a submodule: the model's state_dict stays the model's
        if counts.taps is None:
            counts.taps = LayerTaps(pl_module)
        counts.layers = layers
        counts.guard.layers = layers
        counts.transitions.bind(pl_module)
        counts.activity.bind(pl_module)
        return counts

    # --- the batch in flight ----------------------------------------------------------------------------------------
    def open_batch(self, trainer: pl.Trainer, stage: str, batch_idx: int, dataloader_idx: int = 0) -> None:
        """A batch of ``stage`` starts: mark the layers' tallies and arm the exclusion of the padded samples its loader
        reports (idempotent per batch)."""
        key = (stage, trainer.current_epoch, batch_idx, dataloader_idx, trainer.global_step)
        if key == self._batch:
            return
        self._batch, self._batch_samples = key, None
        self.taps.mark("batch")
        self.taps.exclude = loader_padding(loader_of(trainer, stage, dataloader_idx), batch_idx)

    def batch_samples(self) -> int:
        """The samples of the batch in flight, from the inputs its layers met (padded samples left out); the same
        for every caller until the next batch opens."""
        if self._batch_samples is None:
            self._batch_samples = self.taps.samples("batch")
            self.taps.exclude = 0
        return self._batch_samples

    def note_padding(self, trainer: pl.Trainer, stage: str) -> None:
        """Flag a loader whose padded samples the counts cannot leave out (see
        :func:`~quest_lightning.lightning.callbacks.samples.padding_note`)."""
        for loader in loaders_of(trainer, stage):
            note = padding_note(loader, world_size(trainer), stage)
            if note:
                self.padding_notes[stage] = note

    def check_finite(self, trainer: pl.Trainer, outputs: Any = None, batch_idx: int | None = None) -> None:
        """Note this counted step's loss and weights for the guard (on the device; the guard checks on the host only
        where the run synchronises anyway, see :mod:`~quest_lightning.lightning.callbacks.guard`)."""
        self.guard.note(trainer, outputs, batch_idx)

    @staticmethod
    def _learning_rates(trainer: pl.Trainer) -> tuple[float, ...]:
        return tuple(float(group["lr"]) for opt in trainer.optimizers for group in opt.param_groups)

    def note_learning_rates(self, trainer: pl.Trainer) -> None:
        """Keep the learning rates the epoch trains with (read at its first batch: an epoch-interval scheduler steps
        before the epoch-end hooks run)."""
        if self._rates is None or self._rates[0] != trainer.current_epoch:
            self._rates = (trainer.current_epoch, self._learning_rates(trainer))

    def end_curve(self, trainer: pl.Trainer) -> None:
        """A training epoch ends (in the callbacks' ``on_train_epoch_end``): its curve is due, with the epoch's step
        and learning rates. Its scalars are read later, by :meth:`record_curve`, once every epoch-end hook has logged:
        Lightning runs the LightningModule's ``on_train_epoch_end`` (where ``QuestModule`` logs ``train/acc``) after
        the callbacks' hooks."""
        epoch = trainer.current_epoch
        if (self.curves and self.curves[-1].epoch >= epoch) or (self._curve_due and self._curve_due[0] >= epoch):
            return
        rates = self._rates[1] if self._rates and self._rates[0] == epoch else self._learning_rates(trainer)
        self._curve_due = (epoch, trainer.global_step, rates)

    def record_curve(self, trainer: pl.Trainer) -> bool:
        """Keep the due epoch's scalars of ``trainer.callback_metrics`` (call it after the epoch-end hooks: at the next
        epoch's start, at the end of training, in a checkpoint). Returns whether a curve was recorded."""
        if self._curve_due is None:
            return False
        epoch, step, rates = self._curve_due
        self._curve_due = None
        self.curves.append(EpochCurve(epoch=epoch, step=step, metrics=self._scalars(trainer), learning_rates=rates))
        return True

    def _scalars(self, trainer: pl.Trainer) -> dict[str, float]:
        """The finite scalars of ``trainer.callback_metrics``, over those a checkpoint held: Lightning keeps every
        value logged in the fit (the latest of each key), and a resumed fit starts from what the checkpoint held."""
        out = dict(self._restored_metrics)
        for key, value in trainer.callback_metrics.items():
            if isinstance(value, Tensor) and value.numel() == 1 and math.isfinite(float(value)):
                out[key] = float(value)
        return out

    def curves_state(self) -> dict[str, Any]:
        """The curves, the learning rates the epoch in flight started with (a resume mid-epoch does not see the
        epoch's first batch again) and the scalars logged so far (a resume does not see them logged again)."""
        rates = None if self._rates is None else [self._rates[0], list(self._rates[1])]
        trainer = self.trainer
        metrics = self._scalars(trainer) if trainer is not None else dict(self._restored_metrics)
        return {"curves": [c.to_dict() for c in self.curves], "rates": rates, "metrics": metrics}

    def load_curves(self, state: dict[str, Any] | list[dict[str, Any]]) -> None:
        """Restore :meth:`curves_state` (or the bare list of curves that earlier checkpoints hold)."""
        if isinstance(state, list):
            state = {"curves": state, "rates": None}
        self.curves = [EpochCurve.from_dict(c) for c in state["curves"]]
        rates = state.get("rates")
        self._rates = None if rates is None else (int(rates[0]), tuple(float(r) for r in rates[1]))
        self._restored_metrics = {str(k): float(v) for k, v in (state.get("metrics") or {}).items()}

    # ----------------------------------------------------------------------------------------------------------------
    def flags(self) -> tuple[Flag, ...]:
        """What a reader must see next to the figures: empty and silent epochs, stages left out of a preset."""
        out = [Flag("stage_left_out", msg, stage=name) for name, msg in self.transitions.left_out.items()]
        out += [Flag("padded_samples", msg, stage=stage) for stage, msg in self.padding_notes.items()]
        skipped: dict[str, str] = {}
        for records in self.activity.history.values():
            for r in records:
                for s in r.skipped:
                    skipped.setdefault(s.layer, f"{s.module} {s.layer!r}: {s.reason}")
        out += [Flag("layer_skipped", msg) for msg in skipped.values()]
        out += [Flag("mixed_input_kind", msg, stage, epoch) for stage, epoch, msg in self.activity.mixed]
        for stage, records in self.activity.history.items():
            for r in records:
                if r.empty is not None:
                    out.append(Flag("empty_epoch", f"{stage} epoch {r.epoch}: {r.empty}", stage, r.epoch))
                elif r.silent:
                    msg = (
                        f"{stage} epoch {r.epoch}: no neuron fired and no spike reached an inner layer; the energy "
                        "ratios of this epoch are the cost of a dead network, not a saving"
                    )
                    out.append(Flag("silent_network", msg, stage, r.epoch))
        for stage, records in self.activity.history.items():  # the latest epoch that ran, not every epoch
            latest = next((r for r in reversed(records) if r.empty is None), None)
            if latest is not None and not latest.silent and (dead := silent_neurons(latest)):
                out.append(Flag("silent_neurons", silent_neurons_message(latest, dead), stage, latest.epoch))
        return tuple(out)

    def energy_aware(self) -> EnergyAwareSettings | None:
        """The energy-aware knobs the run trains with: the LightningModule's own (``QuestModule(write_aware=...,
        read_aware=...)``), else an ``EnergyAwareTraining``'s; ``None`` when no knob is on."""
        trainer = self.trainer
        if trainer is None:
            return None
        module = trainer.lightning_module
        own = getattr(module, "energy_aware", None)
        if isinstance(own, EnergyAware) and own.knobs.on:
            return EnergyAwareSettings.from_record(own.record(), type(module).__name__)
        for callback in trainer.callbacks:
            if isinstance(callback, EnergyAwareTraining) and callback.knobs.on:
                return EnergyAwareSettings.from_record(callback.record(), type(callback).__name__)
        return None

    def training_cost(self) -> TrainingCost | None:
        """What the training steps cost, from the first ``TrainingCostMeter``'s epochs; ``None`` without one, or
        before it measured an epoch."""
        trainer = self.trainer
        meter = next((c for c in trainer.callbacks if isinstance(c, TrainingCostMeter)), None) if trainer else None
        return TrainingCost.from_history(meter.history) if meter is not None else None

    def neurobench(self) -> NeuroBenchRecord | None:
        """NeuroBench's metrics of the latest measured epoch: the latest validation epoch (the weights fixed, as
        deployed), else the latest training epoch; ``None`` when no epoch ran the network. Computed once per epoch
        record and global step, however many devices write the run record."""
        trainer = self.trainer
        for stage in ("val", "train"):
            record = next((r for r in reversed(self.activity.history.get(stage, [])) if r.empty is None), None)
            if record is None or trainer is None:
                continue
            key = (stage, record.epoch, record.step, trainer.global_step)
            if self._neurobench is None or self._neurobench[0] != key:
                self._neurobench = (key, self._neurobench_of(record, trainer))
            return self._neurobench[1]
        return None

    def _neurobench_of(self, record: Any, trainer: pl.Trainer) -> NeuroBenchRecord | None:
        mixed = [m for s, e, m in self.activity.mixed if (s, e) == (record.stage, record.epoch)]
        shapes = {
            name: tuple(rec.input_counts.shape) for name, _, rec in self.activity.layers if rec.input_counts.numel()
        }
        neurons = {name: int(neuron.neurons) for name, neuron in self.activity.neurons}
        return neurobench_record(record, trainer.lightning_module, input_shapes=shapes, neurons=neurons, mixed=mixed)

    def run_summary(self) -> RunSummary:
        """The typed run record of everything counted and priced so far."""
        devices = tuple(p.summary for p in self.pricers if p.summary is not None)
        aware = self.energy_aware()
        flags = ((Flag(ENERGY_AWARE_FLAG, aware.caveat()),) if aware is not None else ()) + self.flags()
        return RunSummary(
            bits=devices[0].bits if devices else None,
            activity={s: tuple(h) for s, h in self.activity.history.items()},
            transitions=dict(self.transitions.results),
            devices=devices,
            curves=tuple(self.curves),
            flags=flags,
            writes=self.transitions.writes_record,
            energy_aware=aware,
            training_cost=self.training_cost(),
            neurobench=self.neurobench(),
        )


class PartOwner(Callback):
    """A callback that owns one part of the counts (``part`` is ``"transitions"`` or ``"activity"``) and drives it.

    Its ``state_dict`` is the part's; loaded before ``setup`` (a bare ``load_state_dict``), the state is kept and
    applied once the part exists."""

    part_name = ""

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.counts: RunCounts | None = None
        self._pending: dict[str, Any] | None = None

    @property
    def part(self) -> Any:
        """This callback's part of the shared counts (``None`` before ``setup``)."""
        return getattr(self.counts, self.part_name) if self.counts is not None else None

    def _drives(self) -> bool:
        return self.part is not None and self.part.driver is self

    def _part_class(self) -> type:
        return TransitionCounts if self.part_name == "transitions" else ActivityCounts

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.counts = RunCounts.attach(trainer, pl_module, type(self).__name__)
        self.part.claim(self, self.settings, OWNER)
        if self._pending is not None:
            self.part.load_state_dict(self._pending)
            self._pending = None

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        validate_after_resume(trainer, checkpoint)  # an epoch's last batch: its validation runs, as it did

    def state_dict(self) -> dict[str, Any]:
        if self._drives():
            return self.part.state_dict()
        return self._pending or self._part_class().initial_state(self.settings)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._part_class().check_state(state_dict, self.settings)
        if self._drives():
            self.part.load_state_dict(state_dict)
        else:
            self._pending = state_dict
