"""quest-lightning: quantized, energy-aware SNN training for multi-state neuromorphic devices.

The front door: the names a user needs, imported on first use so that ``import quest_lightning`` stays light.

>>> import quest_lightning as ql
>>> net = ql.spiking_vgg("vgg6", bits=2)
>>> ql.get_device("skmtj7").num_states
7

* :func:`quantize`: convert an existing snnTorch or SpikingJelly network in place;
* :func:`spiking_vgg`: build the paper's VGG (and VGG9/11/16) from quantized layers;
* :class:`QuestModule`: a LightningModule that trains such a network;
* :class:`WeightTransitionMonitor`, :class:`AORMeter`, :class:`DeviceEnergyCallback`: the analysis, for any Lightning
  run;
* :func:`get_device`: a device preset by name;
* :func:`export`: the integer deployment bundle of a trained network, with its programming map;
* :func:`build_report`: a finished run's plots and HTML page.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "quantize": "quest_lightning.convert",
    "spiking_vgg": "quest_lightning.nn.vgg",
    "QuestModule": "quest_lightning.lightning.module",
    "QuestVGG": "quest_lightning.lightning.vgg_module",
    "VGGConfig": "quest_lightning.lightning.vgg_module",
    "WeightTransitionMonitor": "quest_lightning.lightning.callbacks",
    "AORMeter": "quest_lightning.lightning.callbacks",
    "DeviceEnergyCallback": "quest_lightning.lightning.callbacks",
    "get_device": "quest_lightning.devices",
    "DeviceSpec": "quest_lightning.devices",
    "build_report": "quest_lightning.report",
    "export": "quest_lightning.deploy",
    "read_summary": "quest_lightning.summary",
}

__all__ = [
    "AORMeter",
    "DeviceEnergyCallback",
    "DeviceSpec",
    "QuestModule",
    "QuestVGG",
    "VGGConfig",
    "WeightTransitionMonitor",
    "build_report",
    "export",
    "get_device",
    "quantize",
    "read_summary",
    "spiking_vgg",
]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and documentation tools
    from quest_lightning.convert import quantize
    from quest_lightning.deploy import export
    from quest_lightning.devices import DeviceSpec, get_device
    from quest_lightning.lightning.callbacks import AORMeter, DeviceEnergyCallback, WeightTransitionMonitor
    from quest_lightning.lightning.module import QuestModule
    from quest_lightning.lightning.vgg_module import QuestVGG, VGGConfig
    from quest_lightning.nn.vgg import spiking_vgg
    from quest_lightning.report import build_report
    from quest_lightning.summary import read_summary


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'quest_lightning' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return [*__all__, "__version__"]
