"""``DeviceEnergyCallback``: device write and read energy per sample for every R-S pattern, and the CMOS comparison.

It prices the run's shared counts (:class:`~quest_lightning.lightning.callbacks.counts.RunCounts`): the transition
stages of a :class:`WeightTransitionMonitor` and the activity epochs of an :class:`AORMeter`. Without them in the
Trainer, the first ``DeviceEnergyCallback`` drives the counts itself with their default settings. Several
``DeviceEnergyCallback`` s (one per device or pattern setting) price the same counts, counted once per step. At the
end of every epoch and of fit the run record (:class:`~quest_lightning.summary.RunSummary`, every device side by
side) is written to ``quest_summary.json`` in the run's log directory, readable without W&B
(``quest-lightning report`` turns it into plots).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_only

from quest_lightning.devices import DeviceSpec, device_to_dict, pattern_energies, resolve_device
from quest_lightning.devices.capability import check_bits_fit, check_leak_allowed
from quest_lightning.energy import get_cmos
from quest_lightning.lightning.callbacks.activity_counts import ActivitySettings
from quest_lightning.lightning.callbacks.base import CONFIGURED, DEFAULT, run_dir
from quest_lightning.lightning.callbacks.counts import RunCounts
from quest_lightning.lightning.callbacks.pricing import DevicePricer, pattern_arg, states_arg
from quest_lightning.lightning.callbacks.resume import validate_after_resume
from quest_lightning.lightning.callbacks.stages import TransitionSettings
from quest_lightning.nn.inspect import require_quantized_layers, spiking_neurons
from quest_lightning.summary import SUMMARY_FILE, CmosReference, DevicePricing, RunSummary, write_summary

__all__ = ["SUMMARY_FILE", "DeviceEnergyCallback"]


class DeviceEnergyCallback(DevicePricer, Callback):
    """Price a training run on a multi-state memory device.

    * Write energy per sample of every transition stage, per layer and for every R-S pattern:
      :math:`\\sum_{i \\ne j} C[i,j] E_w^p[i,j] / M`, with :math:`M` the samples of the observed steps, and the best
      pattern.
    * Read energy per sample of every epoch, per layer: :math:`\\sum_v N(v) E_r^p[v] / M`, :math:`M` the samples
      counted (:mod:`quest_lightning.energy.price`).
    * Compute energy against the CMOS ANN and a DIET-SNN-style SNN (spike-rate accumulates) for the QUEST count
      (AOR accumulates), with the first-layer convention stated. A network that never fired is flagged, and its
      ratios are not logged (they would read as a saving).

    Logged keys (joules per sample): ``energy/write/{stage}/{layer}``, ``energy/write/{stage}/total``,
    ``energy/write/{stage}/best_pattern``, ``energy/read/{stage}/{layer}``, ``energy/read/{stage}/total``;
    ratios: ``energy/{stage}/ann_over_quest``, ``energy/{stage}/diet_over_quest`` and the headline
    ``energy/ann_over_quest``, ``energy/diet_over_quest`` (the val figures, or train when no val epoch is measured);
    ``energy/endurance/epochs_to_first_failure`` when a ``WeightTransitionMonitor(track_writes_per_cell=True)``
    counts the writes per cell and the device has an endurance limit (``nonideal.endurance_cycles``).
    With several callbacks in one Trainer, each logs the same keys for its own device.

    Args:
        device: a :class:`DeviceSpec`, a preset name (``"skmtj7"``), a dict or a YAML path; ``None`` takes the
            module's ``device_spec`` (as ``QuestVGG`` has), else ``"skmtj7"``.
        pattern: ``"best"``, a pattern index, or a mapping (one device state per level, most negative level first)
            used for the per-layer figures; every pattern is always computed.
        states: restrict the patterns to this subset of device states (e.g. ``(0, 3, 6)``, QUEST's six patterns).
        cmos: CMOS preset for the comparison (``"45nm_fp32"``: Horowitz 2014, E_MAC 4.6 pJ, E_AC 0.9 pJ).
        first_layer: ``"mac"`` (the analog-input layer charged as full MACs) or ``"reads"`` (charged by its reads of
            non-zero weights at E_AC).
        count_zero_level_reads: charge operations on zero weights as device reads too.
        stages: the transition stages to count when no :class:`WeightTransitionMonitor` is in the Trainer (default
            ``"paper"``); with a monitor, give the stages to the monitor.

    Raises:
        ValueError: On any invalid argument (at construction), or a model or device that cannot be priced (at
            ``setup``, before the first batch).
    """

    def __init__(
        self,
        device: DeviceSpec | str | dict | None = None,
        pattern: Literal["best"] | int | Sequence[int] = "best",
        states: Sequence[int] | None = None,
        cmos: str = "45nm_fp32",
        first_layer: Literal["mac", "reads"] = "mac",
        count_zero_level_reads: bool = False,
        stages: str | Sequence[Any] | None = None,
    ) -> None:
        self.device = resolve_device(device) if device is not None else None
        self.pattern = pattern_arg(pattern)
        self.states = states_arg(states)
        self.cmos = get_cmos(cmos)
        if first_layer not in ("mac", "reads"):
            raise ValueError(f"first_layer={first_layer!r} is unknown: use 'mac' or 'reads'.")
        self.first_layer = first_layer
        if not isinstance(count_zero_level_reads, bool):
            raise ValueError(f"count_zero_level_reads={count_zero_level_reads!r} must be True or False.")
        self.count_zero_level_reads = count_zero_level_reads
        self.stages = None if stages is None else TransitionSettings.make(stages)
        self._device_name = self.device.name if self.device is not None else "from the module"
        self.counts: RunCounts | None = None
        self.bits: int | None = None
        self.pattern_index: int | None = None
        self.summary_path: str | None = None
        self._energies = None
        self._pricing: DevicePricing | None = None
        self._pending: dict[str, Any] | None = None

    @property
    def state_key(self) -> str:
        """Unique per device and pricing settings, so that a Trainer can hold several of these callbacks."""
        return self._generate_state_key(
            device=self._device_name,
            pattern=self.pattern,
            states=self.states,
            cmos=self.cmos.name,
            first_layer=self.first_layer,
            count_zero_level_reads=self.count_zero_level_reads,
        )

    @property
    def log_prefix(self) -> str:
        """``energy`` for the first ``DeviceEnergyCallback`` of the Trainer; ``energy@{device}`` for the others
        (``energy@{device}#{k}`` when two of them price the same device), so that their keys never collide."""
        pricers = self.counts.pricers if self.counts is not None else [self]
        if not pricers or pricers[0] is self:
            return "energy"
        same = [p for p in pricers if p.device.name == self.device.name]
        return f"energy@{self.device.name}" + (f"#{same.index(self)}" if len(same) > 1 else "")

    @property
    def summary(self) -> DevicePricing | None:
        """This callback's priced figures (:class:`~quest_lightning.summary.DevicePricing`; ``None`` before
        ``setup`` unless restored)."""
        return self._pricing

    # ----------------------------------------------------------------------------------------------------------------
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        layers = require_quantized_layers(pl_module, "DeviceEnergyCallback")
        bits = sorted({layer.bits for _, layer in layers})
        if len(bits) != 1:
            raise ValueError(
                f"DeviceEnergyCallback prices one bit width per run, but the quantized layers use bits={bits}; "
                "use the same bits in every quantized layer."
            )
        self.bits = bits[0]
        if self.device is None:
            self.device = getattr(pl_module, "device_spec", None) or resolve_device("skmtj7")
        check_bits_fit(self.device, self.bits)
        leaky = [name for name, n in spiking_neurons(pl_module) if n.leaky]
        if leaky:
            check_leak_allowed(self.device, True, what=f"DeviceEnergyCallback: neuron {leaky[0]!r}")
        self._energies = pattern_energies(self.device, self.bits, self.states)
        self.pattern_index = self._select_pattern()
        counts = self.counts = RunCounts.attach(trainer, pl_module, "DeviceEnergyCallback")
        if self not in counts.pricers:
            counts.pricers.append(self)
        stages, priority = (self.stages, CONFIGURED) if self.stages else (TransitionSettings.make("paper"), DEFAULT)
        counts.transitions.claim(self, stages, priority)
        counts.activity.claim(self, ActivitySettings(), DEFAULT)
        counts.curves_driver = counts.curves_driver or self
        if self._pricing is None:
            self._pricing = DevicePricing(
                key=self.state_key,
                device=device_to_dict(self.device),
                bits=self.bits,
                patterns=tuple(self._energies.patterns.labels),
                pattern_selection=self.pattern,
                cmos=CmosReference(self.cmos.name, self.cmos.e_mac_j, self.cmos.e_ac_j),
                first_layer=self.first_layer,
                count_zero_level_reads=self.count_zero_level_reads,
            )
        if self._pending is not None:
            self._load_parts(self._pending)
            self._pending = None

    def _driven(self, part: Any) -> Any:
        return part if self.counts is not None and part.driver is self else None

    # --- driving the counts when no monitor / meter does ------------------------------------------------------------
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if t := self._driven(self.counts.transitions):
            t.train_start(trainer)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.counts.curves_driver is self and self.counts.record_curve(trainer):
            self._write_summary(trainer)  # the last epoch's curve, taken after every epoch-end hook logged
        if t := self._driven(self.counts.transitions):
            t.epoch_start(trainer)
        if a := self._driven(self.counts.activity):
            a.train_epoch_start(trainer, pl_module)

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int):
        if self.counts.curves_driver is self:
            self.counts.note_learning_rates(trainer)
        if t := self._driven(self.counts.transitions):
            t.batch_start(trainer, batch_idx)
        if a := self._driven(self.counts.activity):
            a.train_batch_start(trainer, pl_module, batch_idx)

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any) -> None:
        if t := self._driven(self.counts.transitions):
            t.before_optimizer_step(trainer)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx):
        if t := self._driven(self.counts.transitions):
            t.batch_end(trainer, outputs, batch, batch_idx)
        if a := self._driven(self.counts.activity):
            a.train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if a := self._driven(self.counts.activity):
            a.val_epoch_start(trainer, pl_module)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        if a := self._driven(self.counts.activity):
            a.val_batch_start(trainer, batch_idx, dataloader_idx)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if a := self._driven(self.counts.activity):
            a.val_batch_end(trainer)

    # --- pricing ----------------------------------------------------------------------------------------------------
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        counts = self.counts
        counts.transitions.epoch_end(trainer)  # idempotent: whichever callback comes first finishes the epoch
        counts.activity.finish(trainer, pl_module, "train")
        if a := self._driven(counts.activity):
            a.train_epoch_end(trainer, pl_module)
        if counts.curves_driver is self:
            counts.end_curve(trainer)
        self._price_writes(trainer)
        self._price_reads(trainer, "train")
        self._price_endurance(trainer)
        self._write_summary(trainer)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            if a := self._driven(self.counts.activity):
                a.val_epoch_end(trainer, pl_module)
            return
        self.counts.activity.finish(trainer, pl_module, "val")
        if a := self._driven(self.counts.activity):
            a.val_epoch_end(trainer, pl_module)
        self._price_reads(trainer, "val")
        if trainer.state.fn == "validate":  # a stand-alone trainer.validate(): no fit end will write the file
            self._write_summary(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.counts.curves_driver is self:
            self.counts.record_curve(trainer)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._price_writes(trainer)
        self._price_endurance(trainer)
        self._write_summary(trainer)

    # --- the run record ---------------------------------------------------------------------------------------------
    def run_summary(self) -> RunSummary:
        """The typed run record: the shared counts and every device priced in this Trainer."""
        if self.counts is not None:
            return self.counts.run_summary()
        return RunSummary(bits=self.bits, devices=(self._pricing,) if self._pricing is not None else ())

    def summary_payload(self) -> dict[str, Any]:
        """The run record as a dict (what ``quest_summary.json`` holds)."""
        return self.run_summary().to_dict()

    def _write_summary(self, trainer: pl.Trainer) -> None:
        if self._pricing is None:
            return
        self.summary_path = f"{run_dir(trainer)}/{SUMMARY_FILE}"
        _write(self.summary_path, self.run_summary())

    # --- checkpoint -------------------------------------------------------------------------------------------------
    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        validate_after_resume(trainer, checkpoint)  # an epoch's last batch: its validation runs, as it did

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"pricing": None if self._pricing is None else self._pricing.to_dict()}
        if self.counts is None:
            return {**(self._pending or {}), **state}
        for name in ("transitions", "activity"):
            if self._driven(getattr(self.counts, name)):
                state[name] = getattr(self.counts, name).state_dict()
        if self.counts.curves_driver is self:
            if self.counts.trainer is not None:  # a checkpoint after the epoch-end hooks holds the epoch's curve
                self.counts.record_curve(self.counts.trainer)
            state["curves"] = self.counts.curves_state()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "pricing" not in state_dict:
            raise ValueError(
                "this checkpoint's DeviceEnergyCallback state was written by quest-lightning 0.1.0, whose counts "
                "cannot be resumed exactly; start the run again (or load the weights only)."
            )
        if state_dict["pricing"] is not None:
            self._pricing = DevicePricing.from_dict(state_dict["pricing"])
        if self.counts is None:
            self._pending = state_dict
        else:
            self._load_parts(state_dict)

    def _load_parts(self, state: dict[str, Any]) -> None:
        for name in ("transitions", "activity"):
            if name not in state:
                continue
            part = getattr(self.counts, name)
            if part.driver is not self:
                raise ValueError(
                    f"the checkpoint's {name} counts were saved by a DeviceEnergyCallback, but a {part.owner} drives "
                    "them in this run; resume with the callbacks the checkpoint was written with."
                )
            part.load_state_dict(state[name])
        if "curves" in state and self.counts.curves_driver is self:
            self.counts.load_curves(state["curves"])


@rank_zero_only
def _write(path: str, summary: RunSummary) -> None:
    write_summary(path, summary)
