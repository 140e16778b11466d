"""Lightning callbacks that attach QUEST's energy-aware analysis to any training run, over one shared set of counts."""

from quest_lightning.lightning.callbacks.aor import AORMeter
from quest_lightning.lightning.callbacks.counts import DegenerateRunError, RunCounts
from quest_lightning.lightning.callbacks.energy import SUMMARY_FILE, DeviceEnergyCallback
from quest_lightning.lightning.callbacks.energy_aware import EnergyAwareTraining
from quest_lightning.lightning.callbacks.stages import PAPER_STAGES, Stage
from quest_lightning.lightning.callbacks.training_ops import TrainingCostMeter
from quest_lightning.lightning.callbacks.transitions import WeightTransitionMonitor

__all__ = [
    "AORMeter",
    "DegenerateRunError",
    "DeviceEnergyCallback",
    "EnergyAwareTraining",
    "PAPER_STAGES",
    "RunCounts",
    "SUMMARY_FILE",
    "Stage",
    "TrainingCostMeter",
    "WeightTransitionMonitor",
]
