"""Lightning callbacks that attach QUEST's energy-aware analysis to any training run."""

from quest_lightning.lightning.callbacks.aor import AORMeter
from quest_lightning.lightning.callbacks.energy import SUMMARY_FILE, DeviceEnergyCallback
from quest_lightning.lightning.callbacks.transitions import PAPER_STAGES, Stage, WeightTransitionMonitor

__all__ = ["AORMeter", "DeviceEnergyCallback", "WeightTransitionMonitor", "Stage", "PAPER_STAGES", "SUMMARY_FILE"]
