"""Multi-state memory devices: specs, presets, R-S mapping patterns.

The three pieces stay separate: a :class:`DeviceSpec` is the physics (states, RSTD, read energy),
:mod:`~quest_lightning.devices.patterns` maps weight levels onto states, and
:mod:`quest_lightning.energy` turns counts into joules.
"""

from quest_lightning.devices.capability import (
    DeviceCapability,
    check_bits_fit,
    check_leak_allowed,
    check_model,
)
from quest_lightning.devices.io import (
    device_from_dict,
    device_to_dict,
    load_device_yaml,
    resolve_device,
    save_device_yaml,
)
from quest_lightning.devices.patterns import (
    PatternEnergies,
    PatternSet,
    RSPattern,
    enumerate_patterns,
    format_mapping,
    pattern_energies,
)
from quest_lightning.devices.presets import PRESETS, ideal_device
from quest_lightning.devices.registry import get_device, list_devices, register_device, unregister_device
from quest_lightning.devices.spec import DeviceSpec, Transition
from quest_lightning.devices.transitions import ShortestPaths, UnreachableTransitionError, shortest_paths

__all__ = [
    "PRESETS",
    "DeviceCapability",
    "DeviceSpec",
    "PatternEnergies",
    "PatternSet",
    "RSPattern",
    "ShortestPaths",
    "Transition",
    "UnreachableTransitionError",
    "check_bits_fit",
    "check_leak_allowed",
    "check_model",
    "device_from_dict",
    "device_to_dict",
    "enumerate_patterns",
    "format_mapping",
    "get_device",
    "ideal_device",
    "list_devices",
    "load_device_yaml",
    "pattern_energies",
    "register_device",
    "resolve_device",
    "save_device_yaml",
    "shortest_paths",
    "unregister_device",
]
