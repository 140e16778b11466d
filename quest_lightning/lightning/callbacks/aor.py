"""``AORMeter``: per-layer spike rate, weight sparsity and exact Activation Operation Rate, per epoch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback

from quest_lightning.lightning.callbacks.base import (
    batch_size_of,
    compute_quietly,
    layer_codes,
    log_scalars,
    log_wandb_table,
    to_float,
)
from quest_lightning.metrics import ActivationOperationRate, LayerGeometry, SpikeRate, weight_sparsity
from quest_lightning.nn.inspect import (
    require_quantized_layers,
    reset_recording,
    set_recording,
    spiking_neurons,
    synaptic_layers,
)

STAGES = ("train", "val")


class AORMeter(Callback):
    """Measure, per epoch and per layer, what the hardware will read.

    For every synaptic layer (``QuantConv2d``/``QuantLinear``): the exact AOR (input spike AND non-zero weight, over
    the ANN-equivalent operations × T), the synaptic operation rate, the per-level operation counts :math:`N(v)`
    and the weight sparsity (share of zero codes). For every neuron: the spike rate (spikes per neuron per sample
    over T, and per step). Counting runs on the device with no host synchronisation; values are logged at the end of
    each epoch as ``aor/{stage}/{layer}``, ``sparsity/{layer}``, ``spike_rate/{stage}/{neuron}`` and the means
    ``aor/{stage}/mean``, ``sparsity/mean``, ``spike_rate/{stage}/mean``.

    By default the first synaptic layer sees the analog input (direct coding); its inputs are not spikes, so every
    MAC that meets a non-zero weight counts as a read: its AOR is that share of the MACs, and it is excluded from the
    means. With spike-encoded inputs (rate or latency coding) pass ``first_layer_analog=False``.

    Args:
        on: the stages to measure, a subset of ``("train", "val")``.
        first_layer_analog: treat the first synaptic layer's input as analog (see above).
        train_every_n_batches: count one training batch in ``n`` (each counted batch exactly, with its own codes);
            the training figures are then those of the counted batches. Validation always counts every batch.
    """

    def __init__(
        self, on: Sequence[str] = ("train", "val"), first_layer_analog: bool = True, train_every_n_batches: int = 1
    ) -> None:
        on = (on,) if isinstance(on, str) else tuple(on)
        unknown = [s for s in on if s not in STAGES]
        if unknown or not on:
            raise ValueError(f"AORMeter(on={on!r}): stages must be a non-empty subset of {STAGES}.")
        self.on = on
        self.first_layer_analog = bool(first_layer_analog)
        if train_every_n_batches < 1:
            raise ValueError(f"train_every_n_batches={train_every_n_batches} must be >= 1 (1 counts every batch).")
        self.train_every_n_batches = int(train_every_n_batches)
        self.history: dict[str, list[dict[str, Any]]] = {s: [] for s in on}
        self._layers: list[tuple[str, Any]] = []
        self._neurons: list[tuple[str, Any]] = []
        self._aor: dict[str, dict[str, ActivationOperationRate]] = {}
        self._rates: dict[str, dict[str, SpikeRate]] = {}
        self._val_samples = 0
        self._pending: dict[str, Any] = {}

    # ----------------------------------------------------------------------------------------------------------------
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        require_quantized_layers(pl_module, "AORMeter")
        self._layers = synaptic_layers(pl_module)
        self._neurons = spiking_neurons(pl_module)
        for s in self.on:
            self._aor[s] = {
                name: ActivationOperationRate(LayerGeometry.of(layer), layer_codes(layer)[1]).to(pl_module.device)
                for name, layer in self._layers
            }
            self._rates[s] = {name: SpikeRate().to(pl_module.device) for name, _ in self._neurons}
        self._apply_pending()

    @property
    def input_layer(self) -> str | None:
        """Name of the layer that sees the analog input (the first synaptic layer), or ``None``."""
        return self._layers[0][0] if self._layers and self.first_layer_analog else None

    def _update(self, stage: str, samples: int) -> None:
        for name, layer in self._layers:
            rows = layer.recorded_rows
            if layer.input_counts.numel() == 0:
                continue
            counts = layer.input_counts
            if name == self.input_layer:  # analog input: every MAC that meets a non-zero weight is a read
                counts = torch.ones_like(counts) * rows
            codes, _ = layer_codes(layer)
            self._aor[stage][name].update(counts, codes, rows, samples)
        for name, neuron in self._neurons:
            if neuron.spike_count is not None:
                self._rates[stage][name].update(neuron.spike_count, neuron.neurons, samples, neuron.recorded_rows)

    def _start(self, pl_module: pl.LightningModule, stage: str) -> None:
        reset_recording(pl_module)
        set_recording(pl_module, stage in self.on)

    # ----------------------------------------------------------------------------------------------------------------
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start(pl_module, "train")

    def _sampled(self, batch_idx: int) -> bool:
        return "train" in self.on and batch_idx % self.train_every_n_batches == 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        # recording follows the sampled batches; this also restores it after a mid-epoch resume (Lightning skips
        # the epoch-start hook) or a validation run inside the epoch (one attribute read per batch)
        sampled = self._sampled(batch_idx)
        if self._layers and self._layers[0][1].record != sampled:
            set_recording(pl_module, sampled)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._sampled(batch_idx):
            self._update("train", batch_size_of(batch))  # weights change every step: count with this step's codes
            reset_recording(pl_module)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if "train" in self.on:
            self._finish(trainer, pl_module, "train")
        set_recording(pl_module, False)

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._val_samples = 0
        self._start(pl_module, "val" if not trainer.sanity_checking else "sanity")

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._val_samples += batch_size_of(batch)  # weights are fixed: counts accumulate in the layers

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if "val" in self.on and not trainer.sanity_checking:
            self._update("val", self._val_samples)
            self._finish(trainer, pl_module, "val")
        reset_recording(pl_module)
        set_recording(pl_module, "train" in self.on and trainer.training)

    # ----------------------------------------------------------------------------------------------------------------
    def _finish(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        layers, neurons = [], []
        for name, layer in self._layers:
            meter = self._aor[stage][name]
            codes = layer.current_codes() if layer.enabled else None
            sparsity = to_float(weight_sparsity(codes)) if codes is not None else None
            result = compute_quietly(meter)
            meter.reset()
            if int(result["rows"]) == 0:
                continue  # nothing recorded for this layer
            layers.append(
                {
                    "layer": name,
                    "quantized": bool(layer.enabled),
                    "input_layer": name == self.input_layer,
                    "bits": layer.bits if layer.enabled else None,
                    "aor": to_float(result["aor"]),
                    "synaptic_rate": to_float(result["synaptic_rate"]),
                    "sparsity": sparsity,
                    "ops": to_float(result["ops"]),
                    "level_ops_per_sample": [to_float(v) for v in result["level_ops_per_sample"]],
                    "samples": to_float(result["samples"]),
                    "timesteps": to_float(result["timesteps"]),
                }
            )
        for name, _ in self._neurons:
            meter = self._rates[stage][name]
            result = compute_quietly(meter)
            meter.reset()
            if int(result["neuron_samples"]) == 0:
                continue  # nothing recorded for this neuron group
            neurons.append(
                {"neuron": name, "rate": to_float(result["rate"]), "rate_per_step": to_float(result["rate_per_step"])}
            )
        record = {"epoch": trainer.current_epoch, "step": trainer.global_step, "layers": layers, "neurons": neurons}
        record["timesteps"] = round(layers[0]["timesteps"]) if layers else None
        record.update(_means(layers, neurons))
        self.history[stage].append(record)
        scalars = {f"aor/{stage}/{r['layer']}": r["aor"] for r in layers}
        scalars.update({f"sparsity/{r['layer']}": r["sparsity"] for r in layers if r["sparsity"] is not None})
        scalars.update({f"spike_rate/{stage}/{r['neuron']}": r["rate"] for r in neurons})
        scalars.update({f"aor/{stage}/mean": record["aor_mean"], f"spike_rate/{stage}/mean": record["spike_rate_mean"]})
        scalars["sparsity/mean"] = record["sparsity_mean"]  # a property of the weights, like sparsity/{layer}
        scalars = {k: v for k, v in scalars.items() if v is not None}
        scalars["epoch"] = trainer.current_epoch
        log_scalars(trainer, scalars)
        log_wandb_table(
            trainer,
            f"aor_table/{stage}",
            ["layer", "aor", "synaptic_rate", "sparsity", "ops"],
            [[r["layer"], r["aor"], r["synaptic_rate"], r["sparsity"], r["ops"]] for r in layers],
        )

    def latest(self, stage: str = "train") -> dict[str, Any] | None:
        """The most recent epoch record of ``stage``, or ``None``."""
        records = self.history.get(stage) or []
        return records[-1] if records else None

    # ----------------------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        meters = {
            s: {
                "aor": {n: m.state_dict() for n, m in self._aor.get(s, {}).items()},
                "rate": {n: m.state_dict() for n, m in self._rates.get(s, {}).items()},
            }
            for s in self.on
        }
        return {"on": list(self.on), "history": self.history, "meters": meters}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = {s: list(state_dict.get("history", {}).get(s, [])) for s in self.on}
        self._pending = state_dict.get("meters", {})
        self._apply_pending()

    def _apply_pending(self) -> None:
        """Restore meter states saved mid-epoch (once the meters exist, i.e. after ``setup``)."""
        if not self._pending or not self._aor:
            return
        for s, groups in self._pending.items():
            for kind, meters in (("aor", self._aor.get(s, {})), ("rate", self._rates.get(s, {}))):
                for name, state in groups.get(kind, {}).items():
                    if name in meters and state:
                        meters[name].load_state_dict(state)
        self._pending = {}


def _mean(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def _means(layers: list[dict], neurons: list[dict]) -> dict[str, float | None]:
    inner = [r for r in layers if r["quantized"] and not r["input_layer"]]
    return {
        "aor_mean": _mean([r["aor"] for r in inner]),
        "sparsity_mean": _mean([r["sparsity"] for r in inner]),
        "spike_rate_mean": _mean([r["rate"] for r in neurons]),
    }
