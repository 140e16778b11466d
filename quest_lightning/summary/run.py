"""The whole run: per-epoch training curves, flags, and :class:`RunSummary`, which holds every record (and reads the
summary-v1 layout of quest-lightning 0.1.0)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from quest_lightning.summary.activity import ActivityRecord
from quest_lightning.summary.energy import DevicePricing
from quest_lightning.summary.neurobench import NeuroBenchRecord
from quest_lightning.summary.record import (
    CONVENTIONS,
    REGENERATE,
    SCHEMA,
    SCHEMA_V1,
    UNITS,
    Record,
    SummaryFormatError,
    encode,
)
from quest_lightning.summary.training import EnergyAwareSettings, TrainingCost
from quest_lightning.summary.transitions import TransitionStage, WritesPerCell

__all__ = ["EpochCurve", "Flag", "RunSummary"]


@dataclass(frozen=True)
class EpochCurve(Record):
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
class Flag(Record):
    """Something the reader must see next to the figures. ``code`` is one of ``silent_network``, ``empty_epoch``,
    ``stage_left_out``, ``layer_skipped`` (a synaptic layer not in the counts), ``mixed_input_kind`` (a layer whose
    input was spikes in some counted batches and analog in others), ``padded_samples`` (DDP padding the counts
    could not leave out), ``energy_aware`` (the run trained with an energy-aware knob on: its writes and reads
    figures are of that network), ``summary_v1`` and ``v1_write_divisor``."""

    code: str
    message: str
    stage: str | None = None
    epoch: int | None = None


@dataclass(frozen=True)
class RunSummary(Record):
    """The whole run: activity per epoch, transitions per stage, every priced device, curves and flags; the writes
    per cell when the transition monitor counts them, the energy-aware knobs when one was on, and what the training
    steps cost when a ``TrainingCostMeter`` measured them, and NeuroBench's metrics of the latest measured epoch
    when the activity counts hold one (each ``None`` otherwise)."""

    bits: int | None
    activity: dict[str, tuple[ActivityRecord, ...]] = field(default_factory=dict)
    transitions: dict[str, TransitionStage] = field(default_factory=dict)
    devices: tuple[DevicePricing, ...] = ()
    curves: tuple[EpochCurve, ...] = ()
    flags: tuple[Flag, ...] = ()
    format: str = SCHEMA
    writes: WritesPerCell | None = None
    energy_aware: EnergyAwareSettings | None = None
    training_cost: TrainingCost | None = None
    neurobench: NeuroBenchRecord | None = None

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
        out.update({"bits": self.bits, "activity": encode(self.activity), "transitions": encode(self.transitions)})
        out.update(devices=encode(self.devices), curves=encode(self.curves), flags=encode(self.flags))
        out["writes"] = encode(self.writes)
        out.update(energy_aware=encode(self.energy_aware), training_cost=encode(self.training_cost))
        out["neurobench"] = encode(self.neurobench)
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
