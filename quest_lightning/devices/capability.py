"""The small protocol that neurons and layers check against a device.

A spiking layer bound to a device must respect two capabilities of that device:

* whether its state can leak (decay) between time steps: a device that cannot leak
  (the Sk-MTJ) supports integrate-and-fire neurons only;
* how many distinct states it holds: a ``b``-bit MINT grid needs ``2**b - 1`` states.

Any object with ``name``, ``can_leak`` and ``num_states`` satisfies :class:`DeviceCapability`,
:class:`~quest_lightning.devices.spec.DeviceSpec` included. :func:`check_model` checks a built network once, layer by
layer and neuron by neuron; the networks themselves (:mod:`quest_lightning.nn`) know nothing of devices.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from quest_lightning.functional.grid import max_bits_for_states, num_levels

if TYPE_CHECKING:
    from torch import nn


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


def check_model(model: nn.Module, device: DeviceCapability) -> None:
    """Check once that ``device`` can hold the built ``model``.

    * every quantized layer (``enabled=True``) needs :math:`2^b - 1` states for its ``bits``
      (:func:`check_bits_fit`); a full-precision layer is not held on the device and is not checked;
    * every neuron's membrane bits (``mem_bits``, or the bits of the quantized layer it shares a scale with) must
      fit too;
    * no neuron may leak (:math:`\\lambda < 1`) on a device that cannot (:func:`check_leak_allowed`).

    Args:
        model: any module holding ``QuantConv2d``/``QuantLinear`` layers and quest-lightning neurons (or one of
            them).
        device: the memory device, any :class:`DeviceCapability`.

    Raises:
        ValueError: the first module that does not fit, named by its path in ``model`` (e.g. ``features.1.neuron``;
            ``model`` for the root), with what was found and the fix.
    """
    from quest_lightning.nn.inspect import quantized_layers, spiking_neurons  # nn/ stays free of devices/

    for path, layer in quantized_layers(model):
        with _located(f"{path or 'model'} ({type(layer).__name__})"):
            check_bits_fit(device, layer.bits)
    for path, neuron in spiking_neurons(model):
        name = type(neuron).__name__
        if neuron.membrane_bits is not None:
            with _located(f"{path or 'model'} ({name})"):
                check_bits_fit(device, neuron.membrane_bits, what="mem_bits")
        kind = "lif" if neuron.leaky else "if"
        with _located(f"{path or 'model'} (neuron={kind!r}, decay={neuron.decay})"):
            check_leak_allowed(device, neuron.leaky, what=name)


@contextmanager
def _located(where: str) -> Iterator[None]:
    """Prefix a ``ValueError`` raised inside the block with ``where`` (the module path and what was found)."""
    try:
        yield
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None
