r"""Illustrative multi-level ferroelectric FET (FeFET, doped HfO\ :sub:`2` gate stack).

**Topology.** The channel resistance is set by the partial polarisation of the ferroelectric gate. A gate pulse
of suitable amplitude and polarity moves the polarisation, and so the state, directly from any level to any other:
every transition is one direct edge. Larger jumps need larger amplitudes.

**can_leak = False.** Polarisation is non-volatile (retention is the point of FeFET memory). Quasi-leaky FeFET
neurons exist (Dutta et al., VLSI 2019) but need dedicated stacks and circuits, so this preset holds its state; set
``can_leak=True`` in your own spec if your device leaks by design.

**Numbers: all illustrative.** The write is capacitive, :math:`e = C_g V^2` with a femtofarad gate, i.e.
femtojoules per pulse; resistances span two decades; reads at 0.1 V drain bias (typical ranges in Jerry et al.,
IEDM 2017; Mulaosmanovic et al., VLSI 2017).
"""

from __future__ import annotations

from quest_lightning.devices.spec import DeviceSpec, Transition

__all__ = ["fefet8"]


def fefet8() -> DeviceSpec:
    r"""An 8-state FeFET with illustrative numbers.

    * channel resistances log-spaced :math:`R_k = 10\,\text{k}\Omega \cdot 100^{k/7}` (10 kΩ–1 MΩ);
    * every transition ``i -> j`` is direct, :math:`e = C_g V_{ij}^2` with :math:`C_g = 1` fF and
      :math:`V_{ij} = 2.5 + 0.25\,|i - j|` volt, ≈ 7.6–18 fJ;
    * read: 0.1 V drain bias for 10 ns, :math:`E_{read} = V_r^2 t_r / R_k` ≈ 0.1–10 fJ.
    """
    n = 8
    res = tuple(10e3 * 100 ** (k / (n - 1)) for k in range(n))
    cap_f = 1e-15
    edges = tuple(
        Transition(i, j, cap_f * (2.5 + 0.25 * abs(i - j)) ** 2) for i in range(n) for j in range(n) if i != j
    )
    return DeviceSpec(
        name="fefet8",
        resistances_ohm=res,
        can_leak=False,
        transitions=edges,
        read_voltage_v=0.1,
        read_time_s=10e-9,
        illustrative=True,
        source=(
            "Illustrative, modelled on typical FeFET ranges (Jerry et al., IEDM 2017; Mulaosmanovic et al., VLSI 2017)."
        ),
        description="8-level FeFET: every transition direct, capacitive fJ writes; non-volatile (no leak).",
    )
