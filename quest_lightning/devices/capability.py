"""The small protocol that neurons and layers check against a device.

A spiking layer bound to a device must respect two capabilities of that device:

* whether its state can leak (decay) between time steps: a device that cannot leak
  (the Sk-MTJ) supports integrate-and-fire neurons only;
* how many distinct states it holds: a ``b``-bit MINT grid needs ``2**b - 1`` states.

Any object with ``name``, ``can_leak`` and ``num_states`` satisfies :class:`DeviceCapability`,
:class:`~quest_lightning.devices.spec.DeviceSpec` included.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from quest_lightning.functional.grid import max_bits_for_states, num_levels


@runtime_checkable
class DeviceCapability(Protocol):
    """What a neuron or quantized layer needs to know about the device that will hold it."""

    name: str
    can_leak: bool

    @property
    def num_states(self) -> int: ...


def check_bits_fit(device: DeviceCapability, bits: int, *, what: str = "bits") -> None:
    """Raise ``ValueError`` if a ``bits``-bit grid needs more levels than ``device`` has states."""
    need = num_levels(bits)
    if need > device.num_states:
        fit = max_bits_for_states(device.num_states) or 0
        raise ValueError(
            f"{what}={bits} needs {need} weight levels (2**{bits} - 1) but device {device.name!r} has only "
            f"{device.num_states} states; use {what} <= {fit} or a device with at least {need} states."
        )


def check_leak_allowed(device: DeviceCapability, leaky: bool, *, what: str = "neuron") -> None:
    """Raise ``ValueError`` if a leaky neuron is asked for on a device whose state cannot decay."""
    if leaky and not device.can_leak:
        raise ValueError(
            f"{what} is leaky (LIF, decay < 1) but device {device.name!r} cannot leak (can_leak=False): "
            "its state does not decay, so only IF neurons are supported. Use an IF neuron "
            "(beta=1 / IFNode / kind='if') or a device with can_leak=True."
        )
