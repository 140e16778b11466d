"""Lightning glue: :class:`QuestModule`, :class:`QuestVGG`, the analysis callbacks and the CIFAR-10 data module."""

from quest_lightning.lightning.callbacks import AORMeter, DeviceEnergyCallback, WeightTransitionMonitor
from quest_lightning.lightning.data import CIFAR10DataModule
from quest_lightning.lightning.module import QuestModule
from quest_lightning.lightning.vgg_module import QuestVGG, VGGConfig

__all__ = [
    "AORMeter",
    "CIFAR10DataModule",
    "DeviceEnergyCallback",
    "QuestModule",
    "QuestVGG",
    "VGGConfig",
    "WeightTransitionMonitor",
]
