"""``DeviceEnergyCallback``: device write and read energy per sample for every R-S pattern, and the CMOS comparison.

It reads the transition counts of a :class:`WeightTransitionMonitor` and the operation counts of an
:class:`AORMeter`. If the Trainer has none, it runs its own (with default settings), so it can be attached alone.
At the end of every epoch and of fit it writes ``quest_summary.json`` into the run's log directory: every figure
with its unit and convention, readable without W&B (``quest-lightning report`` turns it into plots).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback

from quest_lightning.devices import DeviceSpec, device_to_dict, pattern_energies, resolve_device
from quest_lightning.devices.capability import check_bits_fit, check_leak_allowed
from quest_lightning.energy import compare_energy, diet_snn_energy, quest_energy, read_energy_report
from quest_lightning.energy.cmos import ann_energy, get_cmos
from quest_lightning.energy.device import write_energy_report
from quest_lightning.lightning.callbacks.aor import AORMeter
from quest_lightning.lightning.callbacks.base import log_scalars, log_wandb_table, run_dir, write_json
from quest_lightning.lightning.callbacks.transitions import WeightTransitionMonitor
from quest_lightning.nn.inspect import require_quantized_layers, spiking_neurons

SUMMARY_FILE = "quest_summary.json"


class DeviceEnergyCallback(Callback):
    """Price a training run on a multi-state memory device.

    * Write energy per sample of every stage of the :class:`WeightTransitionMonitor`, per layer and for every R-S
      pattern: :math:`\\sum_{i \\ne j} C[i,j] E_w^p[i,j] / (\\text{steps} \\cdot B)`, and the best pattern.
    * Read energy per sample of every epoch, per layer: :math:`\\sum_v N(v) E_r^p[v]`.
    * Compute energy against the CMOS ANN and a DIET-SNN-style SNN (spike-rate accumulates) for the QUEST count
      (AOR accumulates), with the first-layer convention stated.

    Logged keys (joules per sample): ``energy/write/{stage}/{layer}``, ``energy/write/{stage}/total``,
    ``energy/write/{stage}/best_pattern``, ``energy/read/{stage}/{layer}``, ``energy/read/{stage}/total``;
    ratios: ``energy/{stage}/ann_over_quest``, ``energy/{stage}/diet_over_quest`` and the headline
    ``energy/ann_over_quest``, ``energy/diet_over_quest`` (the val figures, or train when no val epoch is measured).

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
    """

    def __init__(
        self,
        device: DeviceSpec | str | dict | None = None,
        pattern: Literal["best"] | int | Sequence[int] = "best",
        states: Sequence[int] | None = None,
        cmos: str = "45nm_fp32",
        first_layer: Literal["mac", "reads"] = "mac",
        count_zero_level_reads: bool = False,
    ) -> None:
        self.device = resolve_device(device) if device is not None else None
        if isinstance(pattern, str) and pattern != "best":
            raise ValueError(f"pattern={pattern!r} is unknown: use 'best', an index, or a mapping of device states.")
        if first_layer not in ("mac", "reads"):
            raise ValueError(f"first_layer={first_layer!r} is unknown: use 'mac' or 'reads'.")
        self.pattern = pattern if isinstance(pattern, (str, int)) else tuple(pattern)
        self.states = None if states is None else tuple(states)
        self.cmos = get_cmos(cmos)
        self.first_layer = first_layer
        self.count_zero_level_reads = count_zero_level_reads
        self.summary: dict[str, Any] = {"write": {}, "read": {}, "compute": {}}
        self._energies = None
        self._owned: list[Callback] = []
        self.monitor: WeightTransitionMonitor | None = None
        self.meter: AORMeter | None = None

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
        # the Trainer's own monitor/meter if it has them, else the ones this callback made in an earlier setup
        self.monitor = next((c for c in trainer.callbacks if isinstance(c, WeightTransitionMonitor)), None)
        self.meter = next((c for c in trainer.callbacks if isinstance(c, AORMeter)), None)
        if self.monitor is None:
            self.monitor = next((c for c in self._owned if isinstance(c, WeightTransitionMonitor)), None)
            if self.monitor is None:
                self.monitor = WeightTransitionMonitor()
                self._owned.append(self.monitor)
        if self.meter is None:
            self.meter = next((c for c in self._owned if isinstance(c, AORMeter)), None)
            if self.meter is None:
                self.meter = AORMeter()
                self._owned.append(self.meter)
        self._owned = [cb for cb in self._owned if cb is self.monitor or cb is self.meter]
        for cb in self._owned:
            cb.setup(trainer, pl_module, stage)
        # run after the monitor and the meter so that their epoch results are final when we read them. The Trainer
        # is iterating over its callback list to call ``setup`` right now: give it a reordered copy instead of
        # editing that list in place (which would skip the callbacks we move past).
        callbacks = list(trainer.callbacks)
        others = [i for i, c in enumerate(callbacks) if c is self.monitor or c is self.meter]
        if others and callbacks.index(self) < max(others):
            callbacks.remove(self)
            callbacks.insert(max(others), self)
            trainer.callbacks = callbacks

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

    # the counting hooks are forwarded to the monitor/meter this callback owns (when the Trainer has none)
    def _forward(self, hook: str, *args: Any) -> None:
        for cb in self._owned:
            getattr(cb, hook)(*args)

    def on_train_start(self, trainer, pl_module) -> None:
        self._forward("on_train_start", trainer, pl_module)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._forward("on_train_epoch_start", trainer, pl_module)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._forward("on_train_batch_start", trainer, pl_module, batch, batch_idx)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._forward("on_train_batch_end", trainer, pl_module, outputs, batch, batch_idx)

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self._forward("on_validation_epoch_start", trainer, pl_module)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._forward("on_validation_batch_end", trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)

    # ----------------------------------------------------------------------------------------------------------------
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for cb in self._owned:
            cb.on_train_epoch_end(trainer, pl_module)
        self._price_writes(trainer)
        self._price_reads(trainer, "train")
        self._write_summary(trainer)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._forward("on_validation_epoch_end", trainer, pl_module)
        if not trainer.sanity_checking:
            self._price_reads(trainer, "val")
            if trainer.state.fn == "validate":  # a stand-alone trainer.validate(): no fit end will write the file
                self._write_summary(trainer)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._write_summary(trainer)

    # ----------------------------------------------------------------------------------------------------------------
    def _chosen(self, report) -> int:
        return report.best_index if self.pattern_index < 0 else self.pattern_index

    def _price_writes(self, trainer: pl.Trainer) -> None:
        for stage, result in self.monitor.results.items():
            if stage in self.summary["write"] or result["steps"] == 0:
                continue
            counts = {name: info["counts"] for name, info in result["layers"].items()}
            steps = result["steps"]
            batch = max(result["samples"] // steps, 1)
            report = write_energy_report(counts, self._energies, steps=steps, batch_size=batch)
            chosen = self._chosen(report.total)
            self.summary["write"][stage] = {
                "unit": "J/sample",
                "steps": steps,
                "batch_size": batch,
                "pattern_index": chosen,
                "pattern": self._energies.patterns[chosen].label,
                "report": report.to_dict(),
            }
            scalars = {f"energy/write/{stage}/{n}": float(r.per_pattern_j[chosen]) for n, r in report.per_layer.items()}
            scalars[f"energy/write/{stage}/total"] = float(report.total.per_pattern_j[chosen])
            scalars[f"energy/write/{stage}/best_pattern"] = float(report.total.best_index)
            log_scalars(trainer, scalars)
            rows = [[i, p.label, float(report.total.per_pattern_j[i])] for i, p in enumerate(self._energies.patterns)]
            if len(rows) <= 1000:
                log_wandb_table(
                    trainer, f"energy/write/{stage}/patterns", ["index", "pattern", "joule_per_sample"], rows
                )

    def _price_reads(self, trainer: pl.Trainer, stage: str) -> None:
        record = self.meter.latest(stage) if stage in self.meter.on else None
        if record is None or not record["layers"]:
            return
        layers = record["layers"]
        quantized = {r["layer"]: r["level_ops_per_sample"] for r in layers if r["quantized"] and not r["input_layer"]}
        entry: dict[str, Any] = {"epoch": record["epoch"], "unit": "J/sample"}
        scalars: dict[str, float] = {}
        if quantized:
            report = read_energy_report(
                quantized, self._energies, samples=1, count_zero_level_reads=self.count_zero_level_reads
            )
            chosen = self._chosen(report.total)
            entry.update(pattern_index=chosen, pattern=self._energies.patterns[chosen].label, report=report.to_dict())
            scalars = {f"energy/read/{stage}/{n}": float(r.per_pattern_j[chosen]) for n, r in report.per_layer.items()}
            scalars[f"energy/read/{stage}/total"] = float(report.total.per_pattern_j[chosen])
        compute = self._compare(record)
        entry["compute"] = compute
        for ratio in ("ann_over_quest", "diet_over_quest"):
            scalars[f"energy/{stage}/{ratio}"] = compute[ratio]
            # the unscoped headline: the val figures, or the train figures when no val epoch was measured
            # (both stages end at the same step, so one key must not carry both)
            if stage == "val" or self.meter.latest("val") is None:
                scalars[f"energy/{ratio}"] = compute[ratio]
        self.summary["read"].setdefault(stage, []).append(entry)
        self.summary["compute"][stage] = compute
        log_scalars(trainer, scalars)

    def _compare(self, record: dict[str, Any]) -> dict[str, Any]:
        layers = record["layers"]
        ops = [r["ops"] for r in layers]
        timesteps = record.get("timesteps") or 1
        reads = None
        if self.first_layer == "reads":
            # an analog-input layer reads each non-zero weight once per sample (its input is the same at every
            # step and is computed once); a spike-input first layer reads at every step
            first = layers[0]
            reads = first["aor"] * first["ops"] * (1 if first["input_layer"] else timesteps)
        diet = diet_snn_energy(
            ops,
            [None] + [r["synaptic_rate"] * timesteps for r in layers[1:]],
            self.cmos,
            first_layer=self.first_layer,
            first_layer_reads=reads,
        )
        quest = quest_energy(
            ops,
            [None] + [r["aor"] for r in layers[1:]],
            self.cmos,
            timesteps=timesteps,
            first_layer=self.first_layer,
            first_layer_reads=reads,
        )
        ann = ann_energy(ops, self.cmos)
        return {
            "unit": "J/sample",
            "timesteps": timesteps,
            "first_layer": self.first_layer,
            "convention": quest.convention,
            "layers": [r["layer"] for r in layers],
            "ann": ann.to_dict(),
            "diet_snn": diet.to_dict(),
            "quest": quest.to_dict(),
            "ann_over_quest": ann.total_j / quest.total_j,
            "diet_over_quest": diet.total_j / quest.total_j,
            "comparison": compare_energy(ann, diet, quest).to_dict(),
        }

    # ----------------------------------------------------------------------------------------------------------------
    def summary_payload(self) -> dict[str, Any]:
        """Everything this run measured, JSON-ready (what ``quest_summary.json`` holds)."""
        return {
            "format": "quest-lightning/summary-v1",
            "units": {"energy": "joule per sample", "rates": "per neuron per sample, summed over T unless per_step"},
            "conventions": {
                "levels": "index v + Q, most negative code first",
                "first_layer": self.first_layer,
                "count_zero_level_reads": self.count_zero_level_reads,
                "write_energy": "sum_{i!=j} C[i,j] E_w^p[i,j] / (steps * batch size)",
                "read_energy": "sum_v N(v) E_r^p[v] per sample",
            },
            "device": device_to_dict(self.device),
            "bits": self.bits,
            "patterns": self._energies.patterns.labels if self._energies is not None else [],
            "pattern_selection": self.pattern if isinstance(self.pattern, (str, int)) else list(self.pattern),
            "cmos": {"name": self.cmos.name, "e_mac_j": self.cmos.e_mac_j, "e_ac_j": self.cmos.e_ac_j},
            "energy": self.summary,
            "activity": self.meter.history if self.meter is not None else {},
            "transitions": self.monitor.results if self.monitor is not None else {},
        }

    def _write_summary(self, trainer: pl.Trainer) -> None:
        if self._energies is None:
            return
        self.summary_path = f"{run_dir(trainer)}/{SUMMARY_FILE}"
        write_json(self.summary_path, self.summary_payload())

    # ----------------------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"summary": self.summary, "owned": [cb.state_dict() for cb in self._owned]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.summary = state_dict.get("summary", self.summary)
        self._owned_state = state_dict.get("owned", [])
        for cb, st in zip(self._owned, self._owned_state, strict=False):
            cb.load_state_dict(st)
