"""Activity records: what every synaptic layer and neuron group did over one train or val epoch."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from quest_lightning.summary.record import Record, mean_or_none

__all__ = ["INPUT_KINDS", "KIND_SOURCES", "ActivityRecord", "LayerActivity", "NeuronActivity", "SkippedLayer"]

INPUT_KINDS = ("spikes", "analog")
KIND_SOURCES = ("recorded", "override", "first_layer_analog")


@dataclass(frozen=True)
class LayerActivity(Record):
    """One synaptic layer over one epoch: ``level_ops`` is :math:`N(v)` summed over ``rows`` = T × ``samples``;
    ``ops`` the ANN MACs per sample and step; AOR and synaptic rate per time step; ``sparsity`` the share of zero
    codes at the end of the epoch (``None`` for a full-precision layer).

    ``input_kind`` says how the operations were counted: ``"spikes"`` (an input spike meeting a non-zero weight is a
    read) or ``"analog"`` (every MAC that meets a non-zero weight is a read); ``input_kind_source`` says who decided
    it: ``"recorded"`` (from what the layer saw: analog as soon as one input element was neither 0 nor 1),
    ``"override"`` (the layer's ``input_kind``) or ``"first_layer_analog"`` (``AORMeter``'s argument).
    ``input_layer`` is ``input_kind == "analog"``. ``module`` is the layer's class (``"Conv2d"``, ``"Linear"``: a
    layer that is not quest-lightning's, counted as a full-precision layer). The last three are ``None`` in files
    written before them.

    ``nonzero_level_ops`` is, for a layer counted as analog input, :math:`N(v)` of its binarized input: the products
    of its non-zero input elements with the weights of level :math:`v` (index :math:`v + Q`), summed over the rows
    of the updates counted as analog (NeuroBench's ``Effective_MACs`` are their sum over :math:`v \ne 0`); ``None``
    for a layer counted as spikes (whose non-zero inputs are its spikes: ``level_ops``), and in files written before
    it.
    """

    layer: str
    quantized: bool
    input_layer: bool
    bits: int | None
    ops: int
    rows: int
    samples: int
    level_ops: tuple[float, ...]
    aor: float
    synaptic_rate: float
    sparsity: float | None = None
    input_kind: str | None = None
    input_kind_source: str | None = None
    module: str | None = None
    nonzero_level_ops: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.rows < 1 or self.samples < 1:
            raise ValueError(
                f"LayerActivity {self.layer!r}: rows={self.rows}, samples={self.samples}; a layer that recorded "
                "nothing has no activity (record the epoch as empty instead)"
            )
        if self.input_kind not in (None, *INPUT_KINDS) or self.input_kind_source not in (None, *KIND_SOURCES):
            raise ValueError(
                f"LayerActivity {self.layer!r}: input_kind={self.input_kind!r} (one of {INPUT_KINDS}) and "
                f"input_kind_source={self.input_kind_source!r} (one of {KIND_SOURCES})"
            )
        if self.input_kind is not None and self.input_layer != (self.input_kind == "analog"):
            raise ValueError(f"LayerActivity {self.layer!r}: input_layer={self.input_layer} but {self.input_kind=}")
        if self.nonzero_level_ops is not None and len(self.nonzero_level_ops) != len(self.level_ops):
            raise ValueError(
                f"LayerActivity {self.layer!r}: nonzero_level_ops has {len(self.nonzero_level_ops)} levels, "
                f"level_ops {len(self.level_ops)}; both are indexed v + Q"
            )

    @property
    def level_ops_per_sample(self) -> tuple[float, ...]:
        """:math:`N(v)` / samples."""
        return tuple(v / self.samples for v in self.level_ops)

    @property
    def timesteps(self) -> float:
        """Recorded rows per sample (:math:`T`)."""
        return self.rows / self.samples

    def _derived(self) -> dict[str, Any]:
        return {"level_ops_per_sample": self.level_ops_per_sample, "timesteps": self.timesteps}

    @classmethod
    def _upgrade(cls, data: dict[str, Any]) -> dict[str, Any]:
        if "rows" not in data and "timesteps" in data:  # summary-v1
            samples = data["samples"]
            data.update(rows=round(data["timesteps"] * samples), samples=round(samples), ops=round(data["ops"]))
            data["level_ops"] = [v * samples for v in data.get("level_ops_per_sample", [])]
        return data


@dataclass(frozen=True)
class NeuronActivity(Record):
    """One neuron group over one epoch: spikes per neuron per sample summed over T (``rate``) and per step."""

    neuron: str
    rate: float
    rate_per_step: float
    spikes: float | None = None


@dataclass(frozen=True)
class SkippedLayer(Record):
    """A synaptic layer whose operations are not in an epoch's counts, and why: a kind of layer the operation count
    does not model (``nn.Conv3d``, a transposed convolution...), or a layer that did not run in the counted batches.
    Every such layer is listed, never silently left out."""

    layer: str
    module: str
    reason: str


@dataclass(frozen=True)
class ActivityRecord(Record):
    """One train or val epoch of :class:`LayerActivity` and :class:`NeuronActivity`, or an empty epoch and why.
    ``layers`` are in the order the network called them; ``skipped`` lists the synaptic layers left out."""

    stage: str
    epoch: int
    step: int
    layers: tuple[LayerActivity, ...] = ()
    neurons: tuple[NeuronActivity, ...] = ()
    empty: str | None = None
    skipped: tuple[SkippedLayer, ...] = ()

    @property
    def inner_layers(self) -> tuple[LayerActivity, ...]:
        """The quantized layers other than the analog-input ones (the ones the means and read energy cover)."""
        return tuple(r for r in self.layers if r.quantized and not r.input_layer)

    @property
    def timesteps(self) -> int | None:
        """The network's :math:`T`: the time steps per sample most layers recorded (the largest on a tie)."""
        if not self.layers:
            return None
        tally = Counter(round(r.timesteps) for r in self.layers)
        return max(tally, key=lambda t: (tally[t], t))

    @property
    def aor_mean(self) -> float | None:
        return mean_or_none([r.aor for r in self.inner_layers])

    @property
    def sparsity_mean(self) -> float | None:
        return mean_or_none([r.sparsity for r in self.inner_layers])

    @property
    def spike_rate_mean(self) -> float | None:
        return mean_or_none([n.rate for n in self.neurons])

    @property
    def silent(self) -> bool:
        """No spike reached any inner layer and no neuron fired: a dead network, whose energy is no saving."""
        rates = [n.rate for n in self.neurons] + [r.synaptic_rate for r in self.layers if not r.input_layer]
        return self.empty is None and bool(rates) and all(v == 0 for v in rates)

    def _derived(self) -> dict[str, Any]:
        return {
            "timesteps": self.timesteps,
            "aor_mean": self.aor_mean,
            "sparsity_mean": self.sparsity_mean,
            "spike_rate_mean": self.spike_rate_mean,
            "silent": self.silent,
        }
