"""The typed run record: everything a run measured, as frozen dataclasses, and the file that holds it.

The callbacks build a :class:`RunSummary`; ``DeviceEnergyCallback`` writes it as JSON to :data:`SUMMARY_FILE` in the
run directory; the report, the CLI and the experiments read it back with :func:`read_summary`. This module is pure
(no torch, no Lightning) and is the only place where a figure is looked up by a string key.

Every record has ``to_dict()`` (JSON-ready) and ``from_dict()``, checks that its numbers are finite (a figure that
cannot be computed is ``None`` or an empty record with its reason, never NaN), and reads like its dict form
(``record["aor"]``) for code written against the untyped 0.1.0 summary. Schema :data:`SCHEMA` (``summary-v2``) keeps
the ``summary-v1`` layout for the first device at the top level and adds every device under ``"devices"``, the
per-epoch training curves and the flags; a ``summary-v1`` file still loads (flagged), or is refused with a message
that says how to regenerate it.

>>> curve = EpochCurve(epoch=0, step=8, metrics={"train/loss": 2.1, "val/acc": 0.4}, learning_rates=(0.01,))
>>> EpochCurve.from_dict(curve.to_dict()) == curve, curve.accuracy("val"), curve["step"]
(True, 0.4, 8)
"""

from __future__ import annotations

import json
import math
import os
import types
from dataclasses import dataclass, field, fields
from typing import Any, Union, get_args, get_origin, get_type_hints

__all__ = [
    "SCHEMA",
    "SCHEMA_V1",
    "SUMMARY_FILE",
    "ActivityRecord",
    "CmosReference",
    "ComputeComparison",
    "ComputeEnergy",
    "DevicePricing",
    "EnergyReport",
    "EpochCurve",
    "Flag",
    "LayerActivity",
    "LayerTransitions",
    "NeuronActivity",
    "PatternEnergy",
    "ReadEnergy",
    "RunSummary",
    "SummaryFormatError",
    "TransitionStage",
    "WriteEnergy",
    "read_summary",
    "write_summary",
]

SUMMARY_FILE = "quest_summary.json"
SCHEMA = "quest-lightning/summary-v2"
SCHEMA_V1 = "quest-lightning/summary-v1"
UNIT = "J/sample"
UNITS = {
    "energy": "joule per sample",
    "rates": "per neuron per sample, summed over T unless per_step",
    "aor": "operations over the ANN MACs x T (per time step)",
}
CONVENTIONS = {
    "levels": "index v + Q, most negative code first",
    "samples": "samples seen: the real sizes of the counted batches, summed over DDP ranks",
    "write_energy": "sum_{i!=j} C[i,j] E_w^p[i,j] / samples",
    "read_energy": "sum_v N(v) E_r^p[v] / samples",
}
REGENERATE = f"regenerate it by training again with DeviceEnergyCallback (this version writes {SCHEMA})"


class SummaryFormatError(ValueError):
    """A summary file or dict that this version cannot read; the message says why and how to regenerate it."""


def _check_finite(owner: str, value: Any) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{owner}={value!r} is not a finite number: a figure that cannot be computed is None")
    if isinstance(value, (tuple, list)):
        for k, v in enumerate(value):
            _check_finite(f"{owner}[{k}]", v)
    elif isinstance(value, dict):
        for k, v in value.items():
            _check_finite(f"{owner}[{k!r}]", v)


def _encode(value: Any) -> Any:
    if isinstance(value, _Record):
        return value.to_dict()
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_encode(v) for v in value]
    return value


def _fits(tp: Any, value: Any) -> bool:
    origin = get_origin(tp) or tp
    if origin is tuple:
        return isinstance(value, (list, tuple))
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, origin) if isinstance(origin, type) else True


def _decode(tp: Any, value: Any) -> Any:
    if value is None or tp is Any:
        return value
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        options = [a for a in get_args(tp) if a is not type(None)]
        choice = next((a for a in options if _fits(a, value)), options[0])
        return _decode(choice, value)
    if origin is tuple:
        return tuple(_decode(get_args(tp)[0], v) for v in value)
    if origin is dict:
        return {str(k): _decode(get_args(tp)[1], v) for k, v in value.items()}
    if isinstance(tp, type) and issubclass(tp, _Record):
        return tp.from_dict(value)
    if tp in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SummaryFormatError(f"expected a number, got {value!r}")
        return tp(value)
    return value


class _Record:
    """Shared behaviour of the records: validation, ``to_dict``/``from_dict`` and the dict-style legacy view."""

    def __post_init__(self) -> None:
        for f in fields(self):  # type: ignore[arg-type]
            _check_finite(f"{type(self).__name__}.{f.name}", getattr(self, f.name))

    def _derived(self) -> dict[str, Any]:
        return {}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: the fields, then the derived figures (``unit``, rates, means...)."""
        out = {f.name: _encode(getattr(self, f.name)) for f in fields(self)}  # type: ignore[arg-type]
        out.update(_encode(self._derived()))
        return out

    @classmethod
    def _upgrade(cls, data: dict[str, Any]) -> dict[str, Any]:
        """Fill fields that an older layout lacks from the keys it has (overridden where needed)."""
        return data

    @classmethod
    def from_dict(cls, data: Any) -> Any:
        """Rebuild the record from :meth:`to_dict` output (derived and unknown keys are ignored).

        Raises:
            SummaryFormatError: ``data`` is not a mapping, misses a field, or holds a value of the wrong kind.
        """
        if not isinstance(data, dict):
            raise SummaryFormatError(f"{cls.__name__}: expected a JSON object, got {type(data).__name__}")
        data = cls._upgrade(dict(data))
        hints = get_type_hints(cls)
        kwargs = {}
        for f in fields(cls):  # type: ignore[arg-type]
            if f.name in data:
                try:
                    kwargs[f.name] = _decode(hints[f.name], data[f.name])
                except (TypeError, ValueError, AttributeError) as err:
                    raise SummaryFormatError(f"{cls.__name__}.{f.name}: {err}") from None
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as err:
            raise SummaryFormatError(f"{cls.__name__}: {err}") from None

    def __getitem__(self, key: str) -> Any:
        """The value of ``key`` in :meth:`to_dict` (the summary-v1 dict layout, for code written against 0.1.0)."""
        return self.to_dict()[key]


def _mean(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None


def _ratio(a: float, b: float) -> float | None:
    return a / b if b > 0 else None


def _mean_batch(samples: int, steps: int) -> float | int:
    """Samples per optimizer step: an int when every step saw as many samples (it is not a divisor)."""
    mean = samples / steps if steps else 0
    return int(mean) if mean == int(mean) else mean


# --- activity -------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LayerActivity(_Record):
    """One synaptic layer over one epoch: ``level_ops`` is :math:`N(v)` summed over ``rows`` = T × ``samples``;
    ``ops`` the ANN MACs per sample and step; AOR and synaptic rate per time step; ``sparsity`` the share of zero
    codes at the end of the epoch (``None`` for a full-precision layer)."""

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

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.rows < 1 or self.samples < 1:
            raise ValueError(
                f"LayerActivity {self.layer!r}: rows={self.rows}, samples={self.samples}; a layer that recorded "
                "nothing has no activity (record the epoch as empty instead)"
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
class NeuronActivity(_Record):
    """One neuron group over one epoch: spikes per neuron per sample summed over T (``rate``) and per step."""

    neuron: str
    rate: float
    rate_per_step: float
    spikes: float | None = None


@dataclass(frozen=True)
class ActivityRecord(_Record):
    """One train or val epoch of :class:`LayerActivity` and :class:`NeuronActivity`, or an empty epoch and why."""

    stage: str
    epoch: int
    step: int
    layers: tuple[LayerActivity, ...] = ()
    neurons: tuple[NeuronActivity, ...] = ()
    empty: str | None = None

    @property
    def inner_layers(self) -> tuple[LayerActivity, ...]:
        """The quantized layers other than the analog-input layer (the ones the means and read energy cover)."""
        return tuple(r for r in self.layers if r.quantized and not r.input_layer)

    @property
    def timesteps(self) -> int | None:
        return round(self.layers[0].timesteps) if self.layers else None

    @property
    def aor_mean(self) -> float | None:
        return _mean([r.aor for r in self.inner_layers])

    @property
    def sparsity_mean(self) -> float | None:
        return _mean([r.sparsity for r in self.inner_layers])

    @property
    def spike_rate_mean(self) -> float | None:
        return _mean([n.rate for n in self.neurons])

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


# --- transitions ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LayerTransitions(_Record):
    """Level → level counts ``counts[i][j]`` of one layer over a stage's ``steps`` observed optimizer steps."""

    qmax: int
    counts: tuple[tuple[int, ...], ...]
    steps: int
    trajectory: tuple[tuple[int, ...], ...] = ()
    frozen_fraction: float | None = None
    changed_fraction: float | None = None
    non_adjacent_fraction: float | None = None

    def fractions(self) -> dict[str, float | None]:
        """The three fractions by name (``None`` where there was nothing to divide by)."""
        names = ("frozen_fraction", "changed_fraction", "non_adjacent_fraction")
        return {name: getattr(self, name) for name in names}


@dataclass(frozen=True)
class TransitionStage(_Record):
    """A finished stage: its epoch, observed steps, the ``samples`` of those steps, and every layer's counts."""

    stage: str
    epoch: int
    steps: int
    samples: int
    layers: dict[str, LayerTransitions] = field(default_factory=dict)
    note: str | None = None

    @property
    def batch_size(self) -> float | int:
        """The mean samples per observed step (an int when every step saw as many)."""
        return _mean_batch(self.samples, self.steps)


# --- energy ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PatternEnergy(_Record):
    """Joules per sample of one scope (a layer, or ``"total"``) under every R-S pattern, and the best one."""

    kind: str
    scope: str
    per_pattern_j: tuple[float, ...]
    best_index: int
    best_mapping: tuple[int, ...]
    best_label: str
    best_j: float
    worst_j: float

    def _derived(self) -> dict[str, Any]:
        return {"unit": UNIT}


@dataclass(frozen=True)
class EnergyReport(_Record):
    """Per-layer and total write or read energy per sample for every pattern, divided by ``samples`` seen."""

    kind: str
    device: str
    bits: int
    samples: int
    per_layer: dict[str, PatternEnergy]
    total: PatternEnergy
    steps: int | None = None
    count_zero_level_reads: bool | None = None

    @property
    def normalisation(self) -> dict[str, int]:
        """The divisor: ``{"samples": n}``, with the ``steps`` of a write."""
        return {"samples": self.samples} if self.steps is None else {"steps": self.steps, "samples": self.samples}

    def _derived(self) -> dict[str, Any]:
        return {"unit": UNIT, "normalisation": self.normalisation}

    @classmethod
    def _upgrade(cls, data: dict[str, Any]) -> dict[str, Any]:
        norm = data.get("normalisation") or {}
        if "samples" not in data:  # summary-v1: {"steps", "batch_size"} or {"samples"}
            data["samples"] = norm.get("samples", norm.get("steps", 0) * norm.get("batch_size", 0))
            data["steps"] = norm.get("steps")
        return data


@dataclass(frozen=True)
class WriteEnergy(_Record):
    """A stage's write (weight-update) energy, reported at pattern ``pattern_index``."""

    stage: str
    steps: int
    samples: int
    pattern_index: int
    pattern: str
    report: EnergyReport

    @property
    def total_j(self) -> float:
        """Joules per sample of the whole network at the reported pattern."""
        return self.report.total.per_pattern_j[self.pattern_index]

    def _derived(self) -> dict[str, Any]:
        return {"unit": UNIT, "batch_size": _mean_batch(self.samples, self.steps)}

    @classmethod
    def _upgrade(cls, data: dict[str, Any]) -> dict[str, Any]:
        data.setdefault("samples", data.get("steps", 0) * data.get("batch_size", 0))  # summary-v1
        return data


@dataclass(frozen=True)
class ComputeEnergy(_Record):
    """Arithmetic energy per sample on the CMOS reference under one convention (``ann``, ``diet-snn``, ``quest``)."""

    label: str
    cmos: str
    first_layer: str
    convention: str
    per_layer_j: tuple[float, ...]
    total_j: float
    ann_j: float

    @property
    def ann_over_this(self) -> float | None:
        return _ratio(self.ann_j, self.total_j)

    def _derived(self) -> dict[str, Any]:
        return {"unit": UNIT, "ann_over_this": self.ann_over_this}


@dataclass(frozen=True)
class ComputeComparison(_Record):
    """CMOS ANN, DIET-SNN-style and QUEST-style energy of one epoch's activity. ``silent_network`` marks a network
    that never fired: its ratios are then no saving, only the cost of a dead network."""

    stage: str
    epoch: int
    timesteps: int
    first_layer: str
    convention: str
    layers: tuple[str, ...]
    ann: ComputeEnergy
    diet_snn: ComputeEnergy
    quest: ComputeEnergy
    silent_network: bool = False

    @property
    def ann_over_quest(self) -> float | None:
        return _ratio(self.ann.total_j, self.quest.total_j)

    @property
    def diet_over_quest(self) -> float | None:
        return _ratio(self.diet_snn.total_j, self.quest.total_j)

    def ratios(self) -> dict[str, float | None]:
        """``ann_over_quest`` and ``diet_over_quest`` by name (``None`` when QUEST's energy is 0)."""
        return {"ann_over_quest": self.ann_over_quest, "diet_over_quest": self.diet_over_quest}

    def _derived(self) -> dict[str, Any]:
        return {"unit": UNIT, **self.ratios()}


@dataclass(frozen=True)
class ReadEnergy(_Record):
    """An epoch's read (weight-activation) energy and its CMOS comparison, or an empty epoch and why."""

    stage: str
    epoch: int
    samples: int | None = None
    pattern_index: int | None = None
    pattern: str | None = None
    report: EnergyReport | None = None
    compute: ComputeComparison | None = None
    empty: str | None = None

    @property
    def total_j(self) -> float | None:
        """Joules per sample of the priced layers at the reported pattern (``None`` when nothing was priced)."""
        if self.report is None or self.pattern_index is None:
            return None
        return self.report.total.per_pattern_j[self.pattern_index]

    def _derived(self) -> dict[str, Any]:
        return {"unit": UNIT}


@dataclass(frozen=True)
class CmosReference(_Record):
    """The CMOS costs of the comparison, in joules per operation."""

    name: str
    e_mac_j: float
    e_ac_j: float


@dataclass(frozen=True)
class DevicePricing(_Record):
    """One ``DeviceEnergyCallback``'s pricing of the run's counts on one device (``key`` is its ``state_key``)."""

    key: str
    device: dict[str, Any]
    bits: int
    patterns: tuple[str, ...]
    pattern_selection: str | int | tuple[int, ...]
    cmos: CmosReference
    first_layer: str
    count_zero_level_reads: bool
    write: dict[str, WriteEnergy] = field(default_factory=dict)
    read: dict[str, tuple[ReadEnergy, ...]] = field(default_factory=dict)
    compute: dict[str, ComputeComparison] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The device's name."""
        return str(self.device.get("name", "?"))

    def headline(self) -> ComputeComparison | None:
        """The comparison the run is summed up by: the last val epoch's, else the last train epoch's."""
        return self.compute.get("val") or self.compute.get("train")

    def last_read(self, stage: str) -> ReadEnergy | None:
        """The most recent priced read energy of ``stage`` (train or val), if any."""
        priced = [r for r in self.read.get(stage, ()) if r.report is not None]
        return priced[-1] if priced else None


@dataclass(frozen=True)
class EpochCurve(_Record):
    """The training curves at the end of one epoch: every finite scalar in ``trainer.callback_metrics`` and the
    learning rate of every optimizer parameter group."""

    epoch: int
    step: int
    metrics: dict[str, float] = field(default_factory=dict)
    learning_rates: tuple[float, ...] = ()

    def _find(self, stage: str, what: str) -> float | None:
        for key in (f"{stage}/{what}", f"{stage}_{what}", *((what,) if stage == "train" else ())):
            if key in self.metrics:
                return self.metrics[key]
        return None

    def loss(self, stage: str = "train") -> float | None:
        """The ``{stage}/loss`` (or ``{stage}_loss``, or for train ``loss``) value, if logged."""
        return self._find(stage, "loss")

    def accuracy(self, stage: str = "train") -> float | None:
        """The ``{stage}/acc`` (or ``{stage}_acc``, or for train ``acc``) value, if logged."""
        return self._find(stage, "acc")


@dataclass(frozen=True)
class Flag(_Record):
    """Something the reader must see next to the figures: a dead network, an empty epoch, an old file..."""

    code: str
    message: str
    stage: str | None = None
    epoch: int | None = None


# --- the run --------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunSummary(_Record):
    """The whole run: activity per epoch, transitions per stage, every priced device, curves and flags."""

    bits: int | None
    activity: dict[str, tuple[ActivityRecord, ...]] = field(default_factory=dict)
    transitions: dict[str, TransitionStage] = field(default_factory=dict)
    devices: tuple[DevicePricing, ...] = ()
    curves: tuple[EpochCurve, ...] = ()
    flags: tuple[Flag, ...] = ()
    format: str = SCHEMA

    @property
    def primary(self) -> DevicePricing | None:
        """The first priced device (the one the summary-v1 keys at the top level describe)."""
        return self.devices[0] if self.devices else None

    def device(self, name_or_key: str) -> DevicePricing:
        """A priced device by device name or state key.

        Raises:
            KeyError: No device matches; the message lists the priced ones.
        """
        for d in self.devices:
            if name_or_key in (d.name, d.key):
                return d
        raise KeyError(f"no priced device {name_or_key!r}; this run priced {[d.name for d in self.devices]}")

    def to_dict(self) -> dict[str, Any]:
        p = self.primary
        out: dict[str, Any] = {"format": self.format, "units": dict(UNITS), "conventions": dict(CONVENTIONS)}
        if p is not None:
            out["conventions"].update(first_layer=p.first_layer, count_zero_level_reads=p.count_zero_level_reads)
            primary = p.to_dict()
            out.update({k: primary[k] for k in ("device", "bits", "patterns", "pattern_selection", "cmos")})
            out["energy"] = {k: primary[k] for k in ("write", "read", "compute")}
        out.update({"bits": self.bits, "activity": _encode(self.activity), "transitions": _encode(self.transitions)})
        out.update(devices=_encode(self.devices), curves=_encode(self.curves), flags=_encode(self.flags))
        return out

    @classmethod
    def from_dict(cls, data: Any) -> RunSummary:
        """Read a summary dict: ``summary-v2``, or ``summary-v1`` (as 0.1.0 wrote it, flagged as such).

        Raises:
            SummaryFormatError: An unknown format, or a file this version cannot read; the message says how to
                regenerate it.
        """
        if not isinstance(data, dict):
            raise SummaryFormatError(f"a summary is a JSON object, got {type(data).__name__}; {REGENERATE}")
        fmt = data.get("format")
        if fmt == SCHEMA_V1:
            try:
                return _from_v1(data)
            except (SummaryFormatError, TypeError, KeyError, AttributeError, ValueError) as err:
                raise SummaryFormatError(f"cannot read this {SCHEMA_V1} file ({err}); {REGENERATE}") from None
        if fmt != SCHEMA:
            raise SummaryFormatError(f"unknown summary format {fmt!r} (this version reads {SCHEMA} and {SCHEMA_V1})")
        return super().from_dict(data)


def _from_v1(d: dict[str, Any]) -> RunSummary:
    """A summary-v1 dict as a :class:`RunSummary` with one device, and a flag on every write divisor it got wrong."""
    energy, conventions = d.get("energy") or {}, d.get("conventions") or {}
    activity = {s: [dict(r, stage=s) for r in recs] for s, recs in (d.get("activity") or {}).items()}
    transitions = {k: dict(v, stage=k) for k, v in (d.get("transitions") or {}).items()}
    read = {
        s: [dict(e, stage=s, compute=e.get("compute") and dict(e["compute"], stage=s, epoch=e["epoch"])) for e in es]
        for s, es in (energy.get("read") or {}).items()
    }
    epochs = {s: es[-1]["epoch"] for s, es in read.items() if es}
    pricing = {
        "key": "DeviceEnergyCallback",
        "first_layer": conventions.get("first_layer", "mac"),
        "count_zero_level_reads": conventions.get("count_zero_level_reads", False),
        "write": {k: dict(v, stage=k) for k, v in (energy.get("write") or {}).items()},
        "read": read,
        "compute": {s: dict(c, stage=s, epoch=epochs.get(s, -1)) for s, c in (energy.get("compute") or {}).items()},
        **{k: d[k] for k in ("device", "bits", "patterns", "pattern_selection", "cmos") if k in d},
    }
    flags = [Flag("summary_v1", f"read from a {SCHEMA_V1} file; {REGENERATE} for per-epoch curves and all devices")]
    for key, w in pricing["write"].items():
        seen = (d.get("transitions") or {}).get(key, {}).get("samples")
        steps, batch = w.get("steps"), w.get("batch_size")
        divisor = steps * batch if all(isinstance(v, int) for v in (steps, batch)) else None
        if isinstance(seen, int) and divisor and seen != divisor:
            flags.append(
                Flag(
                    "v1_write_divisor",
                    f"stage {key!r}: {SCHEMA_V1} divided the write energy by steps x batch = {divisor} samples but "
                    f"{seen} were seen, so it is {seen / divisor:.4f}x the exact figure; {REGENERATE}",
                    stage=key,
                )
            )
    return RunSummary.from_dict(
        {
            "format": SCHEMA,
            "bits": d.get("bits"),
            "activity": activity,
            "transitions": transitions,
            "devices": [pricing] if "device" in d else [],
            "flags": [f.to_dict() for f in flags],
        }
    )


def write_summary(path: str | os.PathLike[str], summary: RunSummary) -> None:
    """Write ``summary`` to ``path`` as JSON, through a temporary file and a rename (never half-written)."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(summary.to_dict(), f, indent=2, allow_nan=False)
    os.replace(tmp, path)


def read_summary(path: str | os.PathLike[str]) -> RunSummary:
    """Read a run summary file (``summary-v2``, or a ``summary-v1`` file written by 0.1.0).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        SummaryFormatError: The file is not a summary this version can read; the message says how to regenerate it.
    """
    with open(path, encoding="utf-8") as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as err:
            raise SummaryFormatError(f"{os.fspath(path)} is not valid JSON ({err}); {REGENERATE}") from None
    return RunSummary.from_dict(data)
