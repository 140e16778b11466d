"""The typed run record: everything a run measured, as frozen dataclasses, and the file that holds it.

The callbacks build a :class:`RunSummary`; ``DeviceEnergyCallback`` writes it as JSON to :data:`SUMMARY_FILE` in the
run directory; the report, the CLI and the experiments read it back with :func:`read_summary`. This package is pure
(no torch, no Lightning) and is the only place where a figure is looked up by a string key. One module per record
family: :mod:`~quest_lightning.summary.activity`, :mod:`~quest_lightning.summary.transitions`,
:mod:`~quest_lightning.summary.energy`, :mod:`~quest_lightning.summary.training` (the energy-aware knobs and what a
training step costs), :mod:`~quest_lightning.summary.neurobench` (NeuroBench's metrics),
:mod:`~quest_lightning.summary.run` and the file, :mod:`~quest_lightning.summary.io`, over the shared machinery of
:mod:`~quest_lightning.summary.record`.

Every record has ``to_dict()`` (JSON-ready) and ``from_dict()``, checks that its numbers are finite (a figure that
cannot be computed is ``None`` or an empty record with its reason, never NaN), and reads like its dict form
(``record["aor"]``) for code written against the untyped 0.1.0 summary. Schema :data:`SCHEMA` (``summary-v2``) keeps
the ``summary-v1`` layout for the first device at the top level and adds every device under ``"devices"``, the
per-epoch training curves and the flags; a ``summary-v1`` file still loads (flagged), or is refused with a message
that says how to regenerate it. Fields added later have defaults, so every ``summary-v2`` file written before them
still loads.

>>> curve = EpochCurve(epoch=0, step=8, metrics={"train/loss": 2.1, "val/acc": 0.4}, learning_rates=(0.01,))
>>> EpochCurve.from_dict(curve.to_dict()) == curve, curve.accuracy("val"), curve["step"]
(True, 0.4, 8)
"""

from quest_lightning.summary.activity import ActivityRecord, LayerActivity, NeuronActivity, SkippedLayer
from quest_lightning.summary.energy import (
    CmosReference,
    ComputeComparison,
    ComputeEnergy,
    DeviceEndurance,
    DevicePricing,
    EnergyReport,
    LayerEndurance,
    PatternEnergy,
    ReadEnergy,
    WriteEnergy,
)
from quest_lightning.summary.io import read_summary, write_summary
from quest_lightning.summary.neurobench import NeuroBenchRecord
from quest_lightning.summary.record import SCHEMA, SCHEMA_V1, SUMMARY_FILE, SummaryFormatError
from quest_lightning.summary.run import EpochCurve, Flag, RunSummary
from quest_lightning.summary.training import (
    ENERGY_AWARE_FLAG,
    EnergyAwareSettings,
    LayerTrainingEnergy,
    LayerTrainingOps,
    TrainingCost,
    TrainingStepCost,
    TrainingStepEnergy,
)
from quest_lightning.summary.transitions import LayerTransitions, LayerWrites, TransitionStage, WritesPerCell

__all__ = [
    "ENERGY_AWARE_FLAG",
    "SCHEMA",
    "SCHEMA_V1",
    "SUMMARY_FILE",
    "ActivityRecord",
    "CmosReference",
    "ComputeComparison",
    "ComputeEnergy",
    "DeviceEndurance",
    "DevicePricing",
    "EnergyAwareSettings",
    "EnergyReport",
    "EpochCurve",
    "Flag",
    "LayerActivity",
    "LayerEndurance",
    "LayerTrainingEnergy",
    "LayerTrainingOps",
    "LayerTransitions",
    "LayerWrites",
    "NeuroBenchRecord",
    "NeuronActivity",
    "PatternEnergy",
    "ReadEnergy",
    "RunSummary",
    "SkippedLayer",
    "SummaryFormatError",
    "TrainingCost",
    "TrainingStepCost",
    "TrainingStepEnergy",
    "TransitionStage",
    "WriteEnergy",
    "WritesPerCell",
    "read_summary",
    "write_summary",
]
