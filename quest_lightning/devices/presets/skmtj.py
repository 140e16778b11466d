r"""Skyrmionic magnetic tunnel junction (Sk-MTJ) presets: the QUEST case-study device and a VCMA variant.

**Topology (the RSTD) follows QUEST / METHOD.md §5 [reconstructed].** The resistance is set by the number of
skyrmions in the free layer. An amplitude-modulated current pulse adds skyrmions, so it moves the device *up*,
``R_i -> R_j`` for any ``j > i``, in one pulse. An external magnetic field resets it to the initial state,
``R_i -> R_0``, from any state. A *decrease* to any other state goes through ``R_0``
(``R_i -> R_0 -> R_j``). The state does not decay (skyrmions are topologically stable), so ``can_leak=False``:
the Sk-MTJ supports IF neurons only.

**Numbers: all illustrative.** The QUEST paper gives no resistances or pulse energies. The values below are
placeholders of a plausible order of magnitude, modelled on typical MTJ ranges (kilo-ohm junctions, tens of
percent TMR, nanosecond pulses below a volt, sub-pJ to pJ current-driven writes and femtojoule reads; see e.g.
Apalkov et al., ACM JETC 9(2), 2013, for STT-MTJ ranges) and on the room-temperature Sk-MTJ of Li et al.,
Science Bulletin 67(7):691–699, 2022 (the device QUEST uses). Rank patterns and compare ratios; do not quote the
joules as measurements.
"""

from __future__ import annotations

from quest_lightning.devices.spec import DeviceSpec, Transition

__all__ = ["skmtj7", "skmtj7_vcma", "skmtj_transitions"]


def skmtj_transitions(
    resistances_ohm: tuple[float, ...], pulse_v: tuple[float, ...], pulse_s: float, reset_j: float
) -> tuple[Transition, ...]:
    r"""The Sk-MTJ RSTD: one amplitude pulse up, field reset to ``R_0``.

    .. math::

        e(i \to j) = \frac{V_j^2 \, t_w}{R_i} \quad (j > i), \qquad e(i \to 0) = E_{reset} \quad (i > 0),

    a first-order Joule estimate with the source state's resistance.

    Args:
        resistances_ohm: ``R_0 .. R_{N-1}`` in ohms.
        pulse_v: ``V_j`` in volts, the amplitude of the pulse that lands in state ``j`` (index 0 is unused).
        pulse_s: Write pulse width :math:`t_w` in seconds.
        reset_j: Energy of one field reset in joules, per device.
    """
    n = len(resistances_ohm)
    up = [Transition(i, j, pulse_v[j] ** 2 * pulse_s / resistances_ohm[i]) for i in range(n) for j in range(i + 1, n)]
    reset = [Transition(i, 0, reset_j) for i in range(1, n)]
    return tuple(up + reset)


def skmtj7() -> DeviceSpec:
    r"""The 7-state Sk-MTJ of QUEST, with illustrative numbers.

    Illustrative values (modelled on typical MTJ ranges, see the module docstring):

    * resistances :math:`R_k = 5.0 + 0.2k` kilo-ohm, ``k = 0..6`` (5.0–6.2 kΩ, a 24 % span);
    * write pulse to state ``j``: :math:`V_j = 0.4 + 0.1j` volt (0.5–1.0 V), width 10 ns, so
      :math:`e(i \to j) = V_j^2 \cdot 10\,\text{ns} / R_i` ≈ 0.5–2 pJ;
    * field reset to ``R_0``: 3 pJ per device (an on-chip field line amortised over a row);
    * read: 0.1 V for 10 ns, :math:`E_{read} = V_r^2 t_r / R_k` ≈ 16–20 fJ.

    Only the topology (pulse up, reset to ``R_0``) and the 7 states come from the paper.
    """
    res = tuple(5.0e3 + 0.2e3 * k for k in range(7))
    volts = tuple(0.4 + 0.1 * j for j in range(7))
    return DeviceSpec(
        name="skmtj7",
        resistances_ohm=res,
        can_leak=False,
        transitions=skmtj_transitions(res, volts, 10e-9, 3e-12),
        read_voltage_v=0.1,
        read_time_s=10e-9,
        illustrative=True,
        source=(
            "Topology: QUEST (arXiv 2504.00679) Sk-MTJ, 7 states, amplitude pulse up, field reset to R0. "
            "Numbers: illustrative, modelled on typical MTJ ranges (Apalkov et al., ACM JETC 2013) and the Sk-MTJ "
            "of Li et al., Sci. Bull. 67:691, 2022."
        ),
        description="7-state skyrmionic MTJ, current-pulse writes, field reset; IF neurons only.",
    )


def skmtj7_vcma() -> DeviceSpec:
    r"""A low-energy 7-state Sk-MTJ written with voltage-controlled magnetic anisotropy (VCMA) pulses.

    Same RSTD topology as :func:`skmtj7`; VCMA writes with a voltage across a thicker, more resistive barrier,
    so little current flows. Illustrative values (modelled on the fJ-scale writes claimed for VCMA MRAM, e.g.
    Amiri and Wang, SPIN 2(3), 2012; Amiri et al., IEEE Trans. Magn. 51(11), 2015):

    * resistances :math:`R_k = 50 + 2k` kilo-ohm (50–62 kΩ);
    * write pulse to state ``j``: :math:`V_j = 0.9 + 0.1j` volt (1.0–1.5 V), width 1 ns, so
      :math:`e(i \to j) = V_j^2 \cdot 1\,\text{ns} / R_i` ≈ 20–45 fJ;
    * VCMA-assisted field reset to ``R_0``: 0.3 pJ per device;
    * read: 0.1 V for 10 ns, ≈ 1.6–2 fJ.
    """
    res = tuple(50e3 + 2e3 * k for k in range(7))
    volts = tuple(0.9 + 0.1 * j for j in range(7))
    return DeviceSpec(
        name="skmtj7_vcma",
        resistances_ohm=res,
        can_leak=False,
        transitions=skmtj_transitions(res, volts, 1e-9, 0.3e-12),
        read_voltage_v=0.1,
        read_time_s=10e-9,
        illustrative=True,
        source=(
            "Topology: QUEST Sk-MTJ RSTD. Numbers: illustrative, modelled on fJ-scale VCMA writes (Amiri & Wang, "
            "SPIN 2012; Amiri et al., IEEE Trans. Magn. 2015)."
        ),
        description="7-state Sk-MTJ with VCMA (voltage) writes: same RSTD, ~25-45x cheaper pulses, 10x cheaper reset.",
    )
