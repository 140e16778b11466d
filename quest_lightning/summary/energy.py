"""Energy records: device write and read energy for every R-S pattern, the CMOS comparison, the projected wear of
the cells, and one device's pricing of the run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from quest_lightning.summary.record import UNIT, Record, mean_batch, ratio_or_none

__all__ = [
    "CmosReference",
    "ComputeComparison",
    "ComputeEnergy",
    "DeviceEndurance",
    "DevicePricing",
    "EnergyReport",
    "LayerEndurance",
    "PatternEnergy",
    "ReadEnergy",
    "WriteEnergy",
]


@dataclass(frozen=True)
class PatternEnergy(Record):
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
class EnergyReport(Record):
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
class WriteEnergy(Record):
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
        return {"unit": UNIT, "batch_size": mean_batch(self.samples, self.steps)}

    @classmethod
    def _upgrade(cls, data: dict[str, Any]) -> dict[str, Any]:
        data.setdefault("samples", data.get("steps", 0) * data.get("batch_size", 0))  # summary-v1
        return data


@dataclass(frozen=True)
class ComputeEnergy(Record):
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
        return ratio_or_none(self.ann_j, self.total_j)

    def _derived(self) -> dict[str, Any]:
        return {"unit": UNIT, "ann_over_this": self.ann_over_this}


@dataclass(frozen=True)
class ComputeComparison(Record):
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
        return ratio_or_none(self.ann.total_j, self.quest.total_j)

    @property
    def diet_over_quest(self) -> float | None:
        return ratio_or_none(self.diet_snn.total_j, self.quest.total_j)

    def ratios(self) -> dict[str, float | None]:
        """``ann_over_quest`` and ``diet_over_quest`` by name (``None`` when QUEST's energy is 0)."""
        return {"ann_over_quest": self.ann_over_quest, "diet_over_quest": self.diet_over_quest}

    def _derived(self) -> dict[str, Any]:
        return {"unit": UNIT, **self.ratios()}


@dataclass(frozen=True)
class ReadEnergy(Record):
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
class CmosReference(Record):
    """The CMOS costs of the comparison, in joules per operation."""

    name: str
    e_mac_j: float
    e_ac_j: float


@dataclass(frozen=True)
class LayerEndurance(Record):
    """When the first cell of one layer wears out (:class:`~quest_lightning.devices.endurance.EnduranceProjection`):
    epochs from the start of training at the measured write rate (``None``: no cell was written)."""

    max_writes: int
    max_writes_per_epoch: float
    epochs_to_first_failure: float | None
    remaining_epochs: float | None
    worn_out_cells: int


@dataclass(frozen=True)
class DeviceEndurance(Record):
    """The projected wear of the run's cells on one device whose cells survive ``endurance_cycles`` writes
    (``nonideal.endurance_cycles``; the median :math:`N_{50}` when ``endurance_sigma > 0``, which the projection
    uses for every cell), from the writes per cell counted over ``epochs`` epochs
    (:func:`~quest_lightning.devices.endurance.endurance_report`)."""

    endurance_cycles: float
    endurance_sigma: float
    epochs: float
    epochs_to_first_failure: float | None
    first_layer: str | None
    layers: dict[str, LayerEndurance] = field(default_factory=dict)


@dataclass(frozen=True)
class DevicePricing(Record):
    """One ``DeviceEnergyCallback``'s pricing of the run's counts on one device (``key`` is its ``state_key``);
    ``endurance`` is the projected wear when the writes per cell are counted and the device has an endurance limit."""

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
    endurance: DeviceEndurance | None = None

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
