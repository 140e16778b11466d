"""Built-in device presets, one module per device family.

Every preset is illustrative: the QUEST paper publishes no device numbers. Each factory's docstring says which
numbers are placeholders and what they are modelled on. :data:`PRESETS` maps each registered name to its factory.
"""

from __future__ import annotations

from collections.abc import Callable

from quest_lightning.devices.presets.fefet import fefet8
from quest_lightning.devices.presets.ideal import ideal7, ideal_device
from quest_lightning.devices.presets.pcm import pcm8
from quest_lightning.devices.presets.rram import rram8
from quest_lightning.devices.presets.skmtj import skmtj7, skmtj7_vcma, skmtj_transitions
from quest_lightning.devices.spec import DeviceSpec

__all__ = [
    "PRESETS",
    "fefet8",
    "ideal7",
    "ideal_device",
    "pcm8",
    "rram8",
    "skmtj7",
    "skmtj7_vcma",
    "skmtj_transitions",
]

PRESETS: dict[str, Callable[[], DeviceSpec]] = {
    "skmtj7": skmtj7,
    "skmtj7_vcma": skmtj7_vcma,
    "ideal7": ideal7,
    "rram8": rram8,
    "pcm8": pcm8,
    "fefet8": fefet8,
}
