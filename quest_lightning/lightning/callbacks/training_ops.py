"""``TrainingCostMeter``: what each training step costs, per layer and pass, counted exactly and priced per sample.

It attaches a :class:`~quest_lightning.metrics.training_recorder.TrainingOpsRecorder` to the LightningModule and, at
the end of every training epoch, logs and keeps (in :attr:`TrainingCostMeter.history`) the non-zero operation
counts of the forward, backward and weight-gradient passes per sample, per time step and summed, the density of
:math:`\\delta` at each layer's neuron, and their price
(:func:`~quest_lightning.metrics.training.price_training_step`): CMOS arithmetic and the device reads of the quantized
layers. It works alone or beside ``WeightTransitionMonitor``, ``AORMeter`` and ``DeviceEnergyCallback``, and changes
neither the model's outputs nor its gradients.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback

from quest_lightning.devices import DeviceSpec, pattern_energies, resolve_device
from quest_lightning.energy.aware import choose_pattern
from quest_lightning.energy.cmos import get_cmos
from quest_lightning.lightning.callbacks.base import log_scalars
from quest_lightning.metrics.training import TrainingOpsResult, price_training_step
from quest_lightning.metrics.training_recorder import TrainingOpsRecorder
from quest_lightning.nn.inspect import quantized_layers

__all__ = ["TrainingCostMeter"]


class TrainingCostMeter(Callback):
    """Count and price the forward, backward and weight-gradient passes of the training steps.

    Logged at the end of each training epoch (per sample, summed over the time steps):
    ``train_ops/{layer}/forward``, ``.../backward``, ``.../weight_grad``, ``.../delta_density`` (mean over the
    steps), and ``train_energy/compute``, ``train_energy/device_read``, ``train_energy/total`` (joules per sample).

    Args:
        every_n_steps: count one training batch in ``n`` (each counted batch exactly).
        delta_at: where :math:`\\delta` is taken: ``"neuron"`` (after a BatchNorm between the layer and its neuron)
            or ``"layer"`` (the layer's output).
        delta_threshold: :math:`\\tau` for the non-zero count of :math:`\\delta`; ``None``: exact zeros with
            bounded-support surrogates, else a relative threshold (the record says which).
        norms: ``{layer name: module name}`` to take :math:`\\delta` at a module of your choice.
        timesteps: :math:`T`; ``None`` takes the module's ``timesteps``.
        cmos: CMOS preset for the arithmetic.
        device: the memory device for the reads (``None``: the module's ``device_spec``, else ``"skmtj7"``).
        pattern: the R-S pattern of the reads: ``"best"`` (lowest mean read energy), an index or a mapping.
        states: restrict the patterns to these device states.

    Raises:
        ValueError: a bad argument (at construction), or a module without ``timesteps`` when none is given (at
            ``setup``).
    """

    def __init__(
        self,
        every_n_steps: int = 1,
        delta_at: Literal["neuron", "layer"] = "neuron",
        delta_threshold: float | None = None,
        norms: Mapping[str, str] | None = None,
        timesteps: int | None = None,
        cmos: str = "45nm_fp32",
        device: DeviceSpec | str | dict | None = None,
        pattern: Literal["best"] | int | Sequence[int] = "best",
        states: Sequence[int] | None = None,
    ) -> None:
        if isinstance(every_n_steps, bool) or not isinstance(every_n_steps, int) or every_n_steps < 1:
            raise ValueError(f"every_n_steps={every_n_steps!r} must be an integer >= 1 (1 counts every batch).")
        if delta_at not in ("neuron", "layer"):
            raise ValueError(f"delta_at={delta_at!r} is unknown: use 'neuron' or 'layer'.")
        self.every_n_steps, self.delta_at, self.delta_threshold = every_n_steps, delta_at, delta_threshold
        self.norms, self.timesteps, self.cmos = dict(norms or {}), timesteps, get_cmos(cmos)
        self.device = resolve_device(device) if device is not None else None
        self.pattern = pattern if isinstance(pattern, (str, int)) else tuple(pattern)
        self.states = None if states is None else tuple(states)
        self.recorder: TrainingOpsRecorder | None = None
        self.history: list[dict[str, Any]] = []
        self._pending: dict[str, Any] | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        timesteps = self.timesteps or getattr(pl_module, "timesteps", None)
        if not isinstance(timesteps, int) or timesteps < 1:
            raise ValueError(
                f"TrainingCostMeter needs the number of time steps: {type(pl_module).__name__} has no `timesteps`; "
                "pass TrainingCostMeter(timesteps=T)."
            )
        if self.recorder is not None:
            self.recorder.detach()
        self.recorder = TrainingOpsRecorder(
            pl_module, timesteps, delta_at=self.delta_at, delta_threshold=self.delta_threshold, norms=self.norms
        ).attach()
        self._quantized = {name for name, _ in quantized_layers(pl_module)}
        self._energies = self._pattern = None
        bits = sorted({layer.bits for _, layer in quantized_layers(pl_module)})
        if len(bits) == 1:
            device = self.device or getattr(pl_module, "device_spec", None) or resolve_device("skmtj7")
            self.device = resolve_device(device)
            self._energies = pattern_energies(self.device, bits[0], self.states)
            self._pattern = choose_pattern(self._energies, self.pattern, by="read")
        if self._pending is not None:
            self._restore(self._pending)
            self._pending = None

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.recorder is not None:
            self.recorder.detach()

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int):
        self.recorder.start_step()
        self.recorder.active = batch_idx % self.every_n_steps == 0

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx):
        self.recorder.active = False

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        results = self.recorder.compute()
        self.recorder.reset()
        if not results:
            return
        record = self.record(results, pl_module, trainer.current_epoch, trainer.global_step)
        self.history.append(record)
        scalars: dict[str, float] = {}
        for layer in record["layers"]:
            for key in ("forward", "backward", "weight_grad"):
                scalars[f"train_ops/{layer['layer']}/{key}"] = layer[f"{key}_total"]
            density = layer["delta_density"]
            scalars[f"train_ops/{layer['layer']}/delta_density"] = sum(density) / len(density)
        energy = record["energy"]
        scalars.update(
            {
                "train_energy/compute": energy["compute_j"],
                "train_energy/device_read": energy["device_read_j"],
                "train_energy/total": energy["total_j"],
            }
        )
        log_scalars(trainer, scalars)

    # ----------------------------------------------------------------------------------------------------------------
    def record(
        self, results: Mapping[str, TrainingOpsResult], pl_module: pl.LightningModule, epoch: int, step: int
    ) -> dict[str, Any]:
        """The epoch's record, JSON-ready: per layer the counts per sample (per step and summed), the
        :math:`\\delta` density and where :math:`\\delta` was taken, and the energy per sample."""
        modules = dict(pl_module.named_modules())
        analog = set()
        layers = []
        for name, r in results.items():
            kind = modules[name].input_kind
            is_analog = kind == "analog" or (kind == "auto" and int(r.nonbinary_inputs) > 0)
            if is_analog:
                analog.add(name)
            totals = r.totals()
            layers.append(
                {
                    "layer": name,
                    "quantized": name in self._quantized,
                    "analog_input": is_analog,
                    "delta_point": self.recorder.delta_points[name],
                    "samples": int(r.samples),
                    "macs": float(r.macs),
                    "forward": r.forward.tolist(),
                    "backward": r.backward.tolist(),
                    "weight_grad": r.weight_grad.tolist(),
                    **{f"{k}_total": v for k, v in totals.items()},
                    "forward_levels": r.forward_levels.tolist(),
                    "backward_levels": r.backward_levels.tolist(),
                    "delta_density": r.delta_density.tolist(),
                }
            )
        device_layers = self._quantized & set(results) if self._energies is not None else set()
        energy = price_training_step(
            results,
            self.cmos,
            analog=analog,
            energies=self._energies,
            pattern_index=self._pattern,
            device_layers=device_layers,
        )
        return {
            "epoch": epoch,
            "step": step,
            "every_n_steps": self.every_n_steps,
            "timesteps": self.recorder.timesteps,
            "delta_rule": self.recorder.delta_note,
            "device": None if self.device is None or self._energies is None else self.device.name,
            "pattern": None if self._pattern is None else self._energies.patterns[self._pattern].label,
            "layers": layers,
            "energy": energy,
        }

    def latest(self) -> dict[str, Any] | None:
        """The most recent epoch record, or ``None``."""
        return self.history[-1] if self.history else None

    # ----------------------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        meters = {} if self.recorder is None else {n: m.state_dict() for n, m in self.recorder.meters.items()}
        return {"history": self.history, "meters": meters}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict.get("history", []))
        if self.recorder is None:
            self._pending = state_dict
        else:
            self._restore(state_dict)

    def _restore(self, state: dict[str, Any]) -> None:
        for name, meter_state in state.get("meters", {}).items():
            if name in self.recorder.meters:
                self.recorder.meters[name].load_state_dict(meter_state)
