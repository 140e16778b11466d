"""The ideal symmetric device: a reference point, not a physical device.

Every state can be written directly from every other at the same cost, and every read costs the same. Under this
device all R-S patterns cost exactly the same, so it isolates the effect of the *network* (how many transitions,
how many reads) from the effect of the device's asymmetry. Its state is assumed to be able to leak, so LIF neurons
are allowed.
"""

from __future__ import annotations

from quest_lightning.devices.spec import DeviceSpec, Transition

__all__ = ["ideal7", "ideal_device"]


def ideal_device(
    num_states: int = 7,
    write_energy_j: float = 100e-15,
    read_energy_j: float = 10e-15,
    *,
    name: str | None = None,
) -> DeviceSpec:
    """An ideal device with ``num_states`` states, all ``N(N-1)`` transitions direct and equally priced.

    Args:
        num_states: Number of states ``N >= 2``.
        write_energy_j: Energy in joules of every direct transition (default 100 fJ, illustrative).
        read_energy_j: Energy in joules of every read, whatever the state (default 10 fJ, illustrative).
        name: Device name; default ``f"ideal{num_states}"``.

    The nominal resistances :math:`R_k = k + 1` kilo-ohm only order the states; they do not set the read energy.
    """
    n = int(num_states)
    edges = tuple(Transition(i, j, write_energy_j) for i in range(n) for j in range(n) if i != j)
    return DeviceSpec(
        name=name or f"ideal{n}",
        resistances_ohm=tuple(1e3 * (k + 1) for k in range(n)),
        can_leak=True,
        transitions=edges,
        read_energy_j=(read_energy_j,) * n,
        illustrative=True,
        source="Idealised reference device (quest-lightning): uniform costs chosen for comparison, not measured.",
        description="All transitions direct at one cost, uniform reads; every pattern costs the same.",
    )


def ideal7() -> DeviceSpec:
    """The 7-state ideal device: 100 fJ per write, 10 fJ per read (illustrative), ``can_leak=True``."""
    return ideal_device(7)
