"""A hand-made 3-state device shared by the device and energy tests.

Sk-MTJ-like: up by one pulse, reset to R0; R2 -> R1 has no direct edge (it goes through R0).

* direct writes (pJ): 0->1 = 1, 0->2 = 2, 1->2 = 1.5, 1->0 = 3, 2->0 = 3;
* shortest paths (pJ): D = [[0, 1, 2], [3, 0, 1.5], [3, 4, 0]];
* reads (V = 0.1 V, t = 10 ns, E = V^2 t / R): 100, 50, 25 fJ.
"""

from quest_lightning.devices import DeviceSpec

TOY = DeviceSpec(
    name="toy3",
    resistances_ohm=(1e3, 2e3, 4e3),
    can_leak=False,
    transitions=((0, 1, 1e-12), (0, 2, 2e-12), (1, 2, 1.5e-12), (1, 0, 3e-12), (2, 0, 3e-12)),
    read_voltage_v=0.1,
    read_time_s=1e-8,
)
