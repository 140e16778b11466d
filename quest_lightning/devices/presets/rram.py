r"""Illustrative multi-level resistive RAM (RRAM, filamentary metal oxide such as HfO\ :sub:`x`).

**Topology.** Multi-level cells are programmed incrementally: a partial SET pulse lowers the resistance by one
level (``R_k -> R_{k-1}``), a partial RESET pulse raises it by one level (``R_k -> R_{k+1}``). Larger changes are
chains of single-level pulses, so the shortest-path search prices them as sums.

**can_leak = True.** Intermediate filament states relax (conductance drifts back over seconds to hours after
programming), and diffusive (volatile) RRAM has been used directly as a leaky integrate-and-fire neuron (Wang et
al., Nature Electronics 1:137–145, 2018). The relaxation of a non-volatile oxide cell is slow and not a tunable
time constant, so treat ``True`` as "leaky neurons are physically possible on this family", not as a model of the
leak. Override it in your own spec if your cell is strictly non-volatile at the time scale of interest.

**Numbers: all illustrative**, chosen inside typical metal-oxide RRAM ranges (kΩ–100 kΩ states, ~1 V pulses of
tens of ns, 0.1–10 pJ per pulse, tens of fJ reads; Wong et al., Proc. IEEE 100(6):1951–1970, 2012; Yu, Proc.
IEEE 106(2):260–285, 2018).
"""

from __future__ import annotations

from quest_lightning.devices.spec import DeviceSpec, Transition

__all__ = ["rram8"]


def rram8() -> DeviceSpec:
    r"""An 8-state RRAM cell with illustrative numbers.

    * resistances log-spaced :math:`R_k = 5\,\text{k}\Omega \cdot 20^{k/7}` (5–100 kΩ);
    * partial SET ``k -> k-1``: 1.0 V for 20 ns, :math:`e = V^2 t / R_k` ≈ 0.2–3 pJ;
    * partial RESET ``k -> k+1``: 1.2 V for 50 ns, :math:`e = V^2 t / R_k` ≈ 1–14 pJ;
    * read: 0.2 V for 10 ns, :math:`E_{read} = V_r^2 t_r / R_k` ≈ 4–80 fJ.
    """
    n = 8
    res = tuple(5e3 * 20 ** (k / (n - 1)) for k in range(n))
    set_edges = [Transition(k, k - 1, 1.0**2 * 20e-9 / res[k]) for k in range(1, n)]
    reset_edges = [Transition(k, k + 1, 1.2**2 * 50e-9 / res[k]) for k in range(n - 1)]
    return DeviceSpec(
        name="rram8",
        resistances_ohm=res,
        can_leak=True,
        transitions=tuple(set_edges + reset_edges),
        read_voltage_v=0.2,
        read_time_s=10e-9,
        illustrative=True,
        source=(
            "Illustrative, modelled on typical metal-oxide RRAM ranges (Wong et al., Proc. IEEE 2012; Yu, Proc. "
            "IEEE 2018); leak: diffusive-memristor LIF neurons (Wang et al., Nat. Electron. 2018)."
        ),
        description="8-level RRAM, single-level partial SET/RESET steps; conductance relaxation allows leak.",
    )
