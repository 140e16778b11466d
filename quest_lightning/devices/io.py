"""Devices as plain dicts and YAML files, and :func:`resolve_device` for configuration systems.

The dict form uses the :class:`~quest_lightning.devices.spec.DeviceSpec` field names. Transitions are a list of
``{src, dst, energy_j}`` mappings (``[src, dst, energy_j]`` triples are accepted too). A worked YAML example:

.. code-block:: yaml

    name: my_rram4
    resistances_ohm: [5.0e+3, 1.0e+4, 2.0e+4, 4.0e+4]
    can_leak: true
    transitions:
      - {src: 0, dst: 1, energy_j: 2.0e-12}
      - {src: 1, dst: 2, energy_j: 2.0e-12}
      - {src: 2, dst: 3, energy_j: 2.0e-12}
      - {src: 3, dst: 0, energy_j: 5.0e-12}
    read_voltage_v: 0.2
    read_time_s: 1.0e-8
    illustrative: true
    source: "Made-up numbers for a tutorial."
    nonideal:                      # optional; omitted = the ideal device
      d2d_sigma: 0.05              # sigma of ln R, one for all states or a list with one per state
      read_sigma: 0.01
      stuck_fraction: 0.001
      endurance_cycles: 1.0e+6

Numbers such as ``5e3`` (no dot) are strings to a YAML 1.1 parser; they are converted with ``float()``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from quest_lightning.devices.registry import get_device, list_devices
from quest_lightning.devices.spec import DeviceSpec

__all__ = ["device_from_dict", "device_to_dict", "load_device_yaml", "resolve_device", "save_device_yaml"]

DEVICE_KEYS = (
    "name",
    "resistances_ohm",
    "can_leak",
    "transitions",
    "read_energy_j",
    "read_voltage_v",
    "read_time_s",
    "illustrative",
    "source",
    "description",
    "nonideal",
)
_REQUIRED = ("name", "resistances_ohm", "can_leak", "transitions")


def device_to_dict(spec: DeviceSpec) -> dict[str, Any]:
    """A YAML/JSON-safe dict of ``spec`` (lists, floats, ints, bools, strings); ``None`` fields are left out, and so
    is ``nonideal`` when the device is ideal (otherwise only its non-default fields are written)."""
    out: dict[str, Any] = {
        "name": spec.name,
        "resistances_ohm": list(spec.resistances_ohm),
        "can_leak": spec.can_leak,
        "transitions": [{"src": e.src, "dst": e.dst, "energy_j": e.energy_j} for e in spec.transitions],
    }
    if spec.read_energy_j is not None:
        out["read_energy_j"] = list(spec.read_energy_j)
    else:
        out["read_voltage_v"] = spec.read_voltage_v
        out["read_time_s"] = spec.read_time_s
    out["illustrative"] = spec.illustrative
    out["source"] = spec.source
    if spec.description:
        out["description"] = spec.description
    nonideal = spec.nonideal.to_dict()
    if nonideal:
        out["nonideal"] = nonideal
    return out


def device_from_dict(data: Mapping[str, Any]) -> DeviceSpec:
    """Build a :class:`DeviceSpec` from its dict form (see the module docstring).

    Raises:
        ValueError: On an unknown key (typos are not ignored), a missing required key, or any invalid field.
    """
    if not isinstance(data, Mapping):
        raise ValueError(f"a device dict must be a mapping, got {type(data).__name__}")
    unknown = sorted(set(data) - set(DEVICE_KEYS))
    if unknown:
        raise ValueError(f"unknown device key(s) {unknown}; valid keys are {list(DEVICE_KEYS)}")
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise ValueError(f"device dict is missing required key(s) {missing}")
    return DeviceSpec(**dict(data))


def load_device_yaml(path: str | os.PathLike[str]) -> DeviceSpec:
    """Read one device from a YAML file.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If the file does not hold a valid device mapping.
    """
    p = Path(path)
    with p.open(encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    try:
        return device_from_dict(data)
    except ValueError as err:
        raise ValueError(f"{p}: {err}") from err


def save_device_yaml(spec: DeviceSpec, path: str | os.PathLike[str]) -> Path:
    """Write ``spec`` to ``path`` as YAML and return the path."""
    p = Path(path)
    p.write_text(yaml.safe_dump(device_to_dict(spec), sort_keys=False, allow_unicode=True), encoding="utf-8")
    return p


def resolve_device(device: DeviceSpec | str | os.PathLike[str] | Mapping[str, Any]) -> DeviceSpec:
    """Turn whatever a user or a LightningCLI config passes into a :class:`DeviceSpec`.

    Accepts a :class:`DeviceSpec` (returned as is), a registered name (``"skmtj7"``), a dict in the
    :func:`device_to_dict` form, or a path to a ``.yaml``/``.yml`` file.

    Raises:
        ValueError: If a string is neither a registered name nor an existing YAML file; the message lists the
            registered names.
    """
    if isinstance(device, DeviceSpec):
        return device
    if isinstance(device, Mapping):
        return device_from_dict(device)
    if isinstance(device, os.PathLike):
        return load_device_yaml(device)
    if isinstance(device, str):
        if device in list_devices():
            return get_device(device)
        if device.lower().endswith((".yaml", ".yml")):
            if not Path(device).is_file():
                raise ValueError(f"device file {device!r} does not exist")
            return load_device_yaml(device)
        raise ValueError(
            f"device={device!r} is neither a registered device ({', '.join(list_devices())}) nor a .yaml/.yml path"
        )
    raise ValueError(
        f"device={device!r} ({type(device).__name__}) is not a DeviceSpec, a preset name, a dict or a YAML path"
    )
