"""A name -> :class:`DeviceSpec` registry, seeded with the built-in presets.

>>> from quest_lightning.devices.registry import get_device, list_devices
>>> "skmtj7" in list_devices()
True
>>> get_device("skmtj7").num_states
7
"""

from __future__ import annotations

from quest_lightning.devices.presets import PRESETS
from quest_lightning.devices.spec import DeviceSpec

__all__ = ["get_device", "list_devices", "register_device", "unregister_device"]

_REGISTRY: dict[str, DeviceSpec] = {}


def _seed() -> None:
    if not _REGISTRY:
        for name, factory in PRESETS.items():
            _REGISTRY[name] = factory()


def register_device(spec: DeviceSpec, *, overwrite: bool = False) -> DeviceSpec:
    """Make ``spec`` available as ``get_device(spec.name)``.

    Args:
        spec: The device to register.
        overwrite: Replace an existing entry of the same name (presets included). Default False.

    Returns:
        ``spec``, so the call can be used as an expression.

    Raises:
        TypeError: If ``spec`` is not a :class:`DeviceSpec`.
        ValueError: If the name is taken and ``overwrite`` is False.
    """
    if not isinstance(spec, DeviceSpec):
        raise TypeError(f"register_device expects a DeviceSpec, got {type(spec).__name__}")
    _seed()
    if spec.name in _REGISTRY and not overwrite and _REGISTRY[spec.name] != spec:
        raise ValueError(
            f"a device named {spec.name!r} is already registered; pick another name or pass overwrite=True"
        )
    _REGISTRY[spec.name] = spec
    return spec


def unregister_device(name: str) -> None:
    """Remove ``name`` from the registry (a no-op if absent). Presets come back only on a fresh process."""
    _seed()
    _REGISTRY.pop(name, None)


def get_device(name: str) -> DeviceSpec:
    """The registered device called ``name``.

    Raises:
        ValueError: If no device has that name; the message lists the registered names.
    """
    _seed()
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown device {name!r}; registered devices: {', '.join(list_devices())}") from None


def list_devices() -> list[str]:
    """Names of all registered devices, sorted."""
    _seed()
    return sorted(_REGISTRY)
