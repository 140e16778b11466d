"""How a ``DeviceEnergyCallback`` turns the run's counts into its :class:`~quest_lightning.summary.DevicePricing`:
its arguments checked, the pattern it reports, write energy per stage, read energy and the CMOS comparison per
epoch, and the projected wear of the cells (each figure priced once, in order, and logged)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_warn

from quest_lightning.devices.endurance import endurance_report
from quest_lightning.energy import compare_compute, read_energy_report, write_energy_report
from quest_lightning.energy.device import PatternEnergyReport
from quest_lightning.lightning.callbacks.base import log_scalars, log_wandb_table
from quest_lightning.summary import (
    ActivityRecord,
    DeviceEndurance,
    DevicePricing,
    LayerEndurance,
    ReadEnergy,
    WriteEnergy,
)

__all__ = ["DevicePricer", "pattern_arg", "states_arg"]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def pattern_arg(pattern: Any) -> str | int | tuple[int, ...]:
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


def states_arg(states: Any) -> tuple[int, ...] | None:
    if states is None:
        return None
    if isinstance(states, (str, bytes)) or not isinstance(states, Sequence) or not all(_is_int(s) for s in states):
        raise ValueError(f"states={states!r} is invalid: give device state indices, e.g. states=(0, 3, 6).")
    if not states:
        raise ValueError("states=() allows no device state: give at least 2**bits - 1 of them, e.g. (0, 3, 6).")
    if len(set(states)) != len(states):
        raise ValueError(f"states={tuple(states)} repeats a state: give each allowed state once, e.g. (0, 3, 6).")
    return tuple(states)


class DevicePricer:
    """The pricing half of ``DeviceEnergyCallback`` (which sets ``counts``, ``device``, ``bits``, ``pattern``,
    ``pattern_index``, ``cmos``, ``first_layer``, ``count_zero_level_reads``, ``log_prefix``, ``_energies`` and
    ``_pricing``)."""

    counts: Any
    device: Any
    bits: int | None
    pattern: Any
    pattern_index: int | None
    cmos: Any
    first_layer: str
    count_zero_level_reads: bool
    log_prefix: str
    _energies: Any
    _pricing: DevicePricing | None

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

    def _price_endurance(self, trainer: pl.Trainer) -> None:
        """Project the wear of the cells on this device from the writes per cell, when the monitor counts them and
        the device has an endurance limit (``nonideal.endurance_cycles``)."""
        transitions = self.counts.transitions
        record, cycles = transitions.writes_record, self.device.nonideal.endurance_cycles
        if transitions.writes is None or record is None or not record.epochs or cycles is None:
            return
        report = endurance_report(transitions.writes, record.epochs, cycles)
        fields = ("max_writes", "max_writes_per_epoch", "epochs_to_first_failure", "remaining_epochs", "worn_out_cells")
        layers = {n: LayerEndurance(**{k: v["endurance"][k] for k in fields}) for n, v in report["layers"].items()}
        endurance = DeviceEndurance(
            endurance_cycles=float(cycles),
            endurance_sigma=float(self.device.nonideal.endurance_sigma),
            epochs=record.epochs,
            epochs_to_first_failure=report["epochs_to_first_failure"],
            first_layer=report["first_layer"],
            layers=layers,
        )
        if endurance == self._pricing.endurance:
            return
        self._pricing = replace(self._pricing, endurance=endurance)
        if endurance.epochs_to_first_failure is not None:
            log_scalars(
                trainer, {f"{self.log_prefix}/endurance/epochs_to_first_failure": endurance.epochs_to_first_failure}
            )
