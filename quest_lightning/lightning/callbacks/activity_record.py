"""The activity count's settings (``AORMeter``'s arguments), and an epoch's meters turned into the typed record and
logged."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_warn

from quest_lightning.lightning.callbacks.base import log_scalars, log_wandb_table, to_float
from quest_lightning.metrics import AORResult, SpikeRateResult, weight_sparsity
from quest_lightning.nn.layers import QuantLayerMixin
from quest_lightning.summary import ActivityRecord, LayerActivity, NeuronActivity

__all__ = ["STAGES", "ActivitySettings", "layer_activity", "log_activity", "neuron_activity"]

STAGES = ("train", "val")


@dataclass(frozen=True)
class ActivitySettings:
    """What the activity count measures (``AORMeter``'s arguments): the stages ``on``, how the first layer the
    network calls is counted (``None``: by what it sees, like every layer; ``True``: as analog input; ``False``: as
    spikes), and one training batch in ``train_every_n_batches``."""

    on: tuple[str, ...] = STAGES
    first_layer_analog: bool | None = None
    train_every_n_batches: int = 1

    def __post_init__(self) -> None:
        on = (self.on,) if isinstance(self.on, str) else tuple(self.on)
        if not on or any(s not in STAGES for s in on):
            raise ValueError(f"AORMeter(on={self.on!r}): stages must be a non-empty subset of {STAGES}.")
        object.__setattr__(self, "on", on)
        if self.first_layer_analog is not None and not isinstance(self.first_layer_analog, bool):
            raise ValueError(
                f"first_layer_analog={self.first_layer_analog!r} must be True (direct coding: the first layer sees "
                "analog input) or False (spike-coded input), or None (the default: every layer is counted by what it "
                "sees, analog as soon as an input element is neither 0 nor 1)."
            )
        n = self.train_every_n_batches
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"train_every_n_batches={n!r} must be >= 1 (an integer; 1 counts every batch).")

    def to_state(self) -> dict[str, Any]:
        """Plain data for a checkpoint."""
        return asdict(self)


def layer_activity(
    name: str, module: Any, result: AORResult, kind: str, source: str, nonzero: AORResult | None = None
) -> LayerActivity:
    """One layer's epoch record from its meter's result; ``kind`` is what its operations were counted as, ``source``
    who decided it, and ``nonzero`` the result of the meter of its binarized input (a layer counted as analog)."""
    quantized = isinstance(module, QuantLayerMixin) and bool(module.enabled)
    return LayerActivity(
        layer=name,
        quantized=quantized,
        input_layer=kind == "analog",
        bits=module.bits if quantized else None,
        ops=int(result.ops),
        rows=int(result.rows),
        samples=int(result.samples),
        level_ops=tuple(result.level_ops.tolist()),
        aor=to_float(result.aor),
        synaptic_rate=to_float(result.synaptic_rate),
        sparsity=to_float(weight_sparsity(module.current_codes())) if quantized else None,
        input_kind=kind,
        input_kind_source=source,
        module=type(module).__name__,
        nonzero_level_ops=tuple(nonzero.level_ops.tolist()) if nonzero is not None else None,
    )


def neuron_activity(name: str, result: SpikeRateResult) -> NeuronActivity:
    """One neuron group's epoch record from its meter's result."""
    return NeuronActivity(
        neuron=name,
        rate=to_float(result.rate),
        rate_per_step=to_float(result.rate_per_step),
        spikes=to_float(result.spikes),
    )


def silent_neurons(record: ActivityRecord) -> list[str]:
    """The neurons of an epoch record that never fired (no spike in any step of any sample)."""
    return [n.neuron for n in record.neurons if (n.spikes if n.spikes is not None else n.rate) == 0]


def silent_neurons_message(record: ActivityRecord, dead: list[str]) -> str:
    """What a reader must know about neurons that never fired in a network that did."""
    return (
        f"{record.stage} epoch {record.epoch}: neuron(s) {', '.join(repr(n) for n in dead)} never fired; what they "
        "feed sees no spikes, so its AOR and read energy are 0, a dead path rather than a saving. A quantized "
        "membrane is clipped to the feeding layer's ±alpha: a threshold far above alpha can only be crossed by one "
        "step's input (docs/quantization.md)."
    )


def log_activity(trainer: pl.Trainer, record: ActivityRecord) -> None:
    """Log an epoch record's figures (``aor/``, ``sparsity/``, ``spike_rate/``) and, with W&B, its table; an empty
    record logs nothing but a warning."""
    stage = record.stage
    if record.empty is not None:
        rank_zero_warn(f"{stage} epoch {record.epoch}: {record.empty}; recorded as empty, nothing logged.")
        return
    if record.silent:
        rank_zero_warn(
            f"{stage} epoch {record.epoch}: no neuron fired; the network is silent (its energy is no saving)."
        )
    elif dead := silent_neurons(record):
        rank_zero_warn(silent_neurons_message(record, dead))
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
