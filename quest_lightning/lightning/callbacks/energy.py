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
from dataclasses import replace
from typing import Any, Literal

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_only, rank_zero_warn

from quest_lightning.devices import DeviceSpec, device_to_dict, pattern_energies, resolve_device
from quest_lightning.devices.capability import check_bits_fit, check_leak_allowed
from quest_lightning.energy import compare_compute, get_cmos, read_energy_report, write_energy_report
from quest_lightning.energy.device import PatternEnergyReport
from quest_lightning.lightning.callbacks.activity_counts import ActivitySettings
from quest_lightning.lightning.callbacks.base import CONFIGURED, DEFAULT, log_scalars, log_wandb_table, run_dir
from quest_lightning.lightning.callbacks.counts import RunCounts
from quest_lightning.lightning.callbacks.stages import TransitionSettings
from quest_lightning.nn.inspect import require_quantized_layers, spiking_neurons
from quest_lightning.summary import (
    SUMMARY_FILE,
    ActivityRecord,
    CmosReference,
    DevicePricing,
    ReadEnergy,
    RunSummary,
    WriteEnergy,
    write_summary,
)

__all__ = ["SUMMARY_FILE", "DeviceEnergyCallback"]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _pattern_arg(pattern: Any) -> str | int | tuple[int, ...]:
    if isinstance(pattern, str):
        if pattern != "best":
            raise ValueError(f"pattern={pattern!r} is unknown: use 'best', an index, or a mapping of device states.")
        return pattern
    if _is_int(pattern):
        return pattern
    if isinstance(pattern, Sequence) and pattern and all(_is_int(s) for s in pattern):
        return tuple(pattern)
    raise ValueError(
        f"pattern={pattern!r} is invalid: use 'best', an index (an int), or a mapping of device states (one int per "
        "weight level, most negative level first, e.g. (6, 0, 3))."
    )


def _states_arg(states: Any) -> tuple[int, ...] | None:
    if states is None:
        return None
    if isinstance(states, (str, bytes)) or not isinstance(states, Sequence) or not all(_is_int(s) for s in states):
        raise ValueError(f"states={states!r} is invalid: give device state indices, e.g. states=(0, 3, 6).")
    if not states:
        raise ValueError("states=() allows no device state: give at least 2**bits - 1 of them, e.g. (0, 3, 6).")
    if len(set(states)) != len(states):
        raise ValueError(f"states={tuple(states)} repeats a state: give each allowed state once, e.g. (0, 3, 6).")
    return tuple(states)


class DeviceEnergyCallback(Callback):
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
    ``energy/ann_over_quest``, ``energy/diet_over_quest`` (the val figures, or train when no val epoch is measured).
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
        self.pattern = _pattern_arg(pattern)
        self.states = _states_arg(states)
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

    def _select_pattern(self) -> int:
        patterns = self._energies.patterns
        if self.pattern == "best":
            return -1
        if isinstance(self.pattern, int):
            if not 0 <= self.pattern < len(patterns):
                raise ValueError(
                    f"pattern={self.pattern} is out of range: {self.device.name!r} with bits={self.bits} has "
                    f"{len(patterns)} patterns (0..{len(patterns) - 1})."
                )
            return self.pattern
        return patterns.index_of(self.pattern)

    def _driven(self, part: Any) -> Any:
        return part if self.counts is not None and part.driver is self else None

    # --- driving the counts when no monitor / meter does ------------------------------------------------------------
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if t := self._driven(self.counts.transitions):
            t.train_start(trainer)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
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

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx):
        if t := self._driven(self.counts.transitions):
            t.batch_end(trainer, outputs, batch, batch_idx)
        if a := self._driven(self.counts.activity):
            a.train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if a := self._driven(self.counts.activity):
            a.val_epoch_start(trainer, pl_module)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if a := self._driven(self.counts.activity):
            a.val_batch_end(batch)

    # --- pricing ----------------------------------------------------------------------------------------------------
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        counts = self.counts
        counts.transitions.epoch_end(trainer)  # idempotent: whichever callback comes first finishes the epoch
        counts.activity.finish(trainer, pl_module, "train")
        if a := self._driven(counts.activity):
            a.train_epoch_end(trainer, pl_module)
        if counts.curves_driver is self:
            counts.record_curve(trainer)
        self._price_writes(trainer)
        self._price_reads(trainer, "train")
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

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._price_writes(trainer)
        self._write_summary(trainer)

    def _chosen(self, report: PatternEnergyReport) -> int:
        return report.best_index if self.pattern_index < 0 else self.pattern_index

    def _price_writes(self, trainer: pl.Trainer) -> None:
        for key, result in self.counts.transitions.results.items():
            if key in self._pricing.write or result.steps == 0:
                continue
            counts = {name: info.counts for name, info in result.layers.items()}
            report = write_energy_report(counts, self._energies, samples=result.samples, steps=result.steps)
            chosen = self._chosen(report.total)
            entry = WriteEnergy(
                stage=key,
                steps=result.steps,
                samples=result.samples,
                pattern_index=chosen,
                pattern=self._energies.patterns[chosen].label,
                report=report.to_record(),
            )
            self._pricing = replace(self._pricing, write={**self._pricing.write, key: entry})
            at = f"{self.log_prefix}/write/{key}"
            scalars = {f"{at}/{n}": float(r.per_pattern_j[chosen]) for n, r in report.per_layer.items()}
            scalars[f"{at}/total"] = entry.total_j
            scalars[f"{at}/best_pattern"] = float(report.total.best_index)
            log_scalars(trainer, scalars)
            rows = [[i, p.label, float(report.total.per_pattern_j[i])] for i, p in enumerate(self._energies.patterns)]
            if len(rows) <= 1000:
                log_wandb_table(trainer, f"{at}/patterns", ["index", "pattern", "joule_per_sample"], rows)

    def _price_reads(self, trainer: pl.Trainer, stage: str) -> None:
        history = self.counts.activity.history.get(stage, [])
        for record in history[len(self._pricing.read.get(stage, ())) :]:  # every record is priced once, in order
            entry, scalars = self._price_read(record)
            read = {**self._pricing.read, stage: (*self._pricing.read.get(stage, ()), entry)}
            compute = {**self._pricing.compute, stage: entry.compute} if entry.compute else self._pricing.compute
            self._pricing = replace(self._pricing, read=read, compute=compute)
            log_scalars(trainer, scalars)

    def _price_read(self, record: ActivityRecord) -> tuple[ReadEnergy, dict[str, float]]:
        if record.empty is not None:
            return ReadEnergy(record.stage, record.epoch, empty=record.empty), {}
        stage, inner = record.stage, record.inner_layers
        samples = record.layers[0].samples
        entry = ReadEnergy(stage, record.epoch, samples=samples, compute=compare_compute(record, self.cmos,
                           first_layer=self.first_layer))  # fmt: skip
        scalars: dict[str, float] = {}
        if inner:
            report = read_energy_report(
                {r.layer: r.level_ops for r in inner},
                self._energies,
                samples=samples,
                count_zero_level_reads=self.count_zero_level_reads,
            )
            chosen = self._chosen(report.total)
            label = self._energies.patterns[chosen].label
            entry = replace(entry, pattern_index=chosen, pattern=label, report=report.to_record())
            at = f"{self.log_prefix}/read/{stage}"
            scalars = {f"{at}/{n}": float(r.per_pattern_j[chosen]) for n, r in report.per_layer.items()}
            scalars[f"{at}/total"] = float(report.total.per_pattern_j[chosen])
        compute = entry.compute
        if compute.silent_network:
            rank_zero_warn(
                f"{self._pricing.name}: the {stage} energy ratios of epoch {record.epoch} are not logged: the network "
                "never fired, so they are the cost of a dead network, not a saving (flagged in the summary)."
            )
            return entry, scalars
        headline = stage == "val" or not self.counts.activity.history.get("val")
        for name, value in compute.ratios().items():
            if value is not None:
                scalars[f"{self.log_prefix}/{stage}/{name}"] = value
                if headline:  # the val figures, or train ones when no val epoch was measured
                    scalars[f"{self.log_prefix}/{name}"] = value
        return entry, scalars

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
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"pricing": None if self._pricing is None else self._pricing.to_dict()}
        if self.counts is None:
            return {**(self._pending or {}), **state}
        for name in ("transitions", "activity"):
            if self._driven(getattr(self.counts, name)):
                state[name] = getattr(self.counts, name).state_dict()
        if self.counts.curves_driver is self:
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
