"""The headline figures of a run, shared by the report (key numbers, devices side by side, the flags box) and the
end-of-fit summary of the recipe: for each priced device its write, read and compute energy at the reported and the
best R-S pattern, the last epoch's activity, and each flag as one line.

>>> from quest_lightning.summary import RunSummary
>>> device_headlines(RunSummary(bits=2)), last_activity(RunSummary(bits=2))
([], None)
"""

from __future__ import annotations

from dataclasses import dataclass

from quest_lightning.summary import (
    ActivityRecord,
    ComputeComparison,
    DevicePricing,
    Flag,
    ReadEnergy,
    RunSummary,
    WriteEnergy,
)

__all__ = ["HEADLINE_STAGES", "DeviceHeadline", "device_headline", "device_headlines", "flag_text", "last_activity"]

HEADLINE_STAGES = ("val", "train")
"""The stage a run is summed up by, in order of preference: the last val epoch, else the last train epoch."""


@dataclass(frozen=True)
class DeviceHeadline:
    """One priced device summed up in joules per sample: the last transition stage's write energy (per sample seen),
    the last epoch's read energy (val, else train) and compute comparison, at the reported pattern and at the best
    one, and the projected epochs to the first worn-out cell.

    Attributes:
        pricing: The device's record.
        write: The last transition stage's write energy (``None``: no stage finished).
        read: The last priced read energy of :data:`HEADLINE_STAGES` (``None``: nothing priced).
        compute: The comparison against CMOS the run is summed up by (``None``: no activity).
        epochs_to_first_failure: The projected epochs until the first cell wears out (``None``: no projection, or no
            cell written).
    """

    pricing: DevicePricing
    write: WriteEnergy | None
    read: ReadEnergy | None
    compute: ComputeComparison | None
    epochs_to_first_failure: float | None

    @property
    def name(self) -> str:
        return self.pricing.name

    @property
    def write_best(self) -> tuple[str, float] | None:
        """The best write pattern of the last stage and its joules per sample seen (network total)."""
        if self.write is None:
            return None
        total = self.write.report.total
        return total.best_label, total.best_j

    @property
    def read_best(self) -> tuple[str, float] | None:
        """The best read pattern of the last priced epoch and its joules per sample (network total)."""
        if self.read is None or self.read.report is None:
            return None
        total = self.read.report.total
        return total.best_label, total.best_j


def device_headline(pricing: DevicePricing) -> DeviceHeadline:
    """The headline figures of one priced device."""
    write = list(pricing.write.values())[-1] if pricing.write else None
    read = next((r for r in (pricing.last_read(s) for s in HEADLINE_STAGES) if r is not None), None)
    failure = pricing.endurance.epochs_to_first_failure if pricing.endurance is not None else None
    return DeviceHeadline(pricing, write, read, pricing.headline(), failure)


def device_headlines(summary: RunSummary) -> list[DeviceHeadline]:
    """The headline figures of every priced device, in the summary's order."""
    return [device_headline(p) for p in summary.devices]


def last_activity(summary: RunSummary) -> ActivityRecord | None:
    """The last recorded (non-empty) epoch of :data:`HEADLINE_STAGES`, in that order of preference."""
    for stage in HEADLINE_STAGES:
        records = [r for r in summary.activity.get(stage, ()) if r.empty is None]
        if records:
            return records[-1]
    return None


def flag_text(flag: Flag) -> str:
    """A flag's message, preceded by where it applies: ``"(stage a, epoch 3) message"``."""
    where = ([f"stage {flag.stage}"] if flag.stage is not None else []) + (
        [f"epoch {flag.epoch}"] if flag.epoch is not None else []
    )
    return f"({', '.join(where)}) {flag.message}" if where else flag.message
