r"""Illustrative multi-level phase-change memory (PCM, e.g. Ge\ :sub:`2`\ Sb\ :sub:`2`\ Te\ :sub:`5`).

**Topology.** Crystallisation is gradual, amorphisation is abrupt. A partial SET pulse crystallises a little more
and lowers the resistance by one level (``R_k -> R_{k-1}``). A RESET pulse melts and quenches the cell to the fully
amorphous, highest-resistance state from anywhere (``R_k -> R_{N-1}``). To go *up* to an intermediate level the
cell is RESET and then partially SET down: the mirror image of the Sk-MTJ.

**can_leak = True.** The amorphous phase drifts, :math:`R(t) = R(t_0)\,(t/t_0)^{\nu}` with
:math:`\nu \approx 0.05`–0.1 (Ielmini et al., IEEE TED 54(2):308–315, 2007): the conductance of a programmed
state decays with time, which is a leak (though not a tunable one).

**Numbers: all illustrative**, inside typical PCM ranges (10 kΩ crystalline to 1 MΩ amorphous; RESET tens of pJ
and SET a few pJ for scaled cells; sub-pJ reads; Burr et al., IEEE JETCAS 6(2):146–162, 2016).
"""

from __future__ import annotations

from quest_lightning.devices.spec import DeviceSpec, Transition

__all__ = ["pcm8"]


def pcm8() -> DeviceSpec:
    r"""An 8-state PCM cell with illustrative numbers.

    * resistances log-spaced :math:`R_k = 10\,\text{k}\Omega \cdot 100^{k/7}` (10 kΩ–1 MΩ);
    * partial SET ``k -> k-1``: 5 pJ per pulse;
    * RESET ``k -> 7`` (from any ``k < 7``): 20 pJ;
    * read: 0.2 V for 50 ns, :math:`E_{read} = V_r^2 t_r / R_k` ≈ 2 fJ–0.2 pJ.
    """
    n = 8
    res = tuple(10e3 * 100 ** (k / (n - 1)) for k in range(n))
    set_edges = [Transition(k, k - 1, 5e-12) for k in range(1, n)]
    reset_edges = [Transition(k, n - 1, 20e-12) for k in range(n - 1)]
    return DeviceSpec(
        name="pcm8",
        resistances_ohm=res,
        can_leak=True,
        transitions=tuple(set_edges + reset_edges),
        read_voltage_v=0.2,
        read_time_s=50e-9,
        illustrative=True,
        source=(
            "Illustrative, modelled on typical PCM ranges (Burr et al., IEEE JETCAS 2016); drift-as-leak: "
            "Ielmini et al., IEEE TED 2007."
        ),
        description="8-level PCM: gradual partial SET down, abrupt RESET to the top state; resistance drift leaks.",
    )
