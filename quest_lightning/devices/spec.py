r"""The frozen description of a multi-state non-volatile memory device.

A :class:`DeviceSpec` holds everything the energy model needs to know about a device:

* its ``N`` resistance states :math:`R_0 < R_1 < \dots < R_{N-1}` (ohm);
* its Resistance State Transition Diagram (RSTD): the *direct* transitions ``src -> dst`` with the write
  energy (joule) of each; indirect transitions are priced later as shortest paths
  (:mod:`quest_lightning.devices.transitions`);
* its read energy per state (joule), given either directly or as a read voltage ``V_r`` (volt) and pulse time
  ``t_r`` (second), from which :math:`E_{read}(R_k) = V_r^2 t_r / R_k`;
* whether its state can leak (decay) between time steps, which decides whether LIF neurons are possible;
* where its numbers come from, with an explicit ``illustrative`` flag;
* its non-idealities (variation, read noise, stuck cells, endurance, drift) as one frozen
  :class:`~quest_lightning.devices.nonideal.NonIdealities` field, ideal by default.

Everything is checked at construction: an impossible spec raises ``ValueError`` naming the field, the value and
what would be valid.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, NamedTuple

from quest_lightning.devices.nonideal import NonIdealities

__all__ = ["DeviceSpec", "Transition"]


class Transition(NamedTuple):
    """One direct edge of the RSTD.

    Attributes:
        src: Index of the state the device is in before the write pulse.
        dst: Index of the state the device is in after it.
        energy_j: Write energy of this one direct transition, in joules.
    """

    src: int
    dst: int
    energy_j: float


def _bad(field_name: str, value: Any, valid: str) -> ValueError:
    return ValueError(f"DeviceSpec.{field_name}={value!r} is invalid: {valid}")


def _as_float(field_name: str, value: Any) -> float:
    if isinstance(value, bool):
        raise _bad(field_name, value, "expected a number, not a bool")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise _bad(field_name, value, "expected a number") from None


def _as_state(field_name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) and not (isinstance(value, float) and value.is_integer()):
        raise _bad(field_name, value, "a state index must be an integer")
    return int(value)


def _normalise_transitions(value: Any) -> tuple[Transition, ...]:
    """Accept ``{(src, dst): energy_j}``, ``[(src, dst, energy_j), ...]`` or ``[{src, dst, energy_j}, ...]``."""
    if isinstance(value, Mapping):
        items: Iterable[Any] = ((k[0], k[1], v) for k, v in value.items())
    elif isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise _bad(
            "transitions", value, "expected a sequence of (src, dst, energy_j) edges or a {(src, dst): energy_j}"
        )
    else:
        items = value
    edges = []
    for item in items:
        if isinstance(item, Mapping):
            missing = {"src", "dst", "energy_j"} - set(item)
            if missing:
                raise _bad(
                    "transitions", item, f"an edge mapping needs keys src, dst, energy_j (missing {sorted(missing)})"
                )
            src, dst, energy = item["src"], item["dst"], item["energy_j"]
        else:
            try:
                src, dst, energy = item
            except (TypeError, ValueError):
                raise _bad("transitions", item, "each edge must be (src, dst, energy_j)") from None
        edges.append(
            Transition(_as_state("transitions", src), _as_state("transitions", dst), _as_float("transitions", energy))
        )
    return tuple(edges)


@dataclass(frozen=True)
class DeviceSpec:
    r"""A multi-state non-volatile memory device: its states, its RSTD, its read energy and its provenance.

    Give the read energy in exactly one of two ways: ``read_energy_j`` (one value per state), or ``read_voltage_v``
    together with ``read_time_s``, in which case

    .. math::

        E_{read}(R_k) = \frac{V_r^2 \, t_r}{R_k}.

    The RSTD lists only *direct* transitions; the cost of any ``i -> j`` is the cheapest path through them
    (see :func:`quest_lightning.devices.transitions.shortest_paths`). Construction rejects a state that no other
    state can reach (it could never be written) and a state that cannot reach any other (a trap). A pair that is
    still unreachable (an RSTD that is not strongly connected) is reported when a pattern needs it.

    Args:
        name: Short unique name of the device, e.g. ``"skmtj7"``.
        resistances_ohm: Resistance of each state in ohms, strictly ascending, all positive and finite, at least
            two. State ``k`` is ``R_k``.
        can_leak: True if the stored state decays between time steps (so it can implement a leaky neuron);
            False if it holds its state (the Sk-MTJ: IF neurons only).
        transitions: The direct RSTD edges, as ``(src, dst, energy_j)`` triples (write energy in joules per
            transition of one device), a ``{(src, dst): energy_j}`` mapping, or a list of
            ``{"src", "dst", "energy_j"}`` dicts. Stored as a tuple of :class:`Transition`.
        read_energy_j: Energy in joules of one read of a device in state ``k``, one value per state. ``None`` if
            the read voltage and time are given instead.
        read_voltage_v: Read voltage :math:`V_r` in volts. Needs ``read_time_s``.
        read_time_s: Read pulse duration :math:`t_r` in seconds. Needs ``read_voltage_v``.
        illustrative: True if the numbers are placeholders modelled on literature ranges rather than measured on
            a specific device. Must be stated explicitly by a preset; defaults to True for user specs.
        source: Where the numbers come from (a paper, a data sheet, "modelled on ..."). Required when
            ``illustrative`` is False.
        description: Free text about the device.
        nonideal: The device's non-idealities (:class:`~quest_lightning.devices.nonideal.NonIdealities`, or a
            mapping of its fields); the default is the ideal device. Per-state sigmas must have ``N`` values and
            ``stuck_state`` must be a state of the device.

    Raises:
        ValueError: If any field is invalid. The message names the field, the value and what would be valid.

    Example:
        >>> dev = DeviceSpec(
        ...     name="toy3",
        ...     resistances_ohm=(1e3, 2e3, 4e3),
        ...     can_leak=False,
        ...     transitions=[(0, 1, 1e-12), (1, 2, 1e-12), (2, 0, 3e-12), (1, 0, 3e-12)],
        ...     read_voltage_v=0.1,
        ...     read_time_s=1e-8,
        ... )
        >>> dev.num_states
        3
        >>> [round(e * 1e15, 3) for e in dev.read_energies_j]  # femtojoules
        [100.0, 50.0, 25.0]
    """

    name: str
    resistances_ohm: tuple[float, ...]
    can_leak: bool
    transitions: tuple[Transition, ...]
    read_energy_j: tuple[float, ...] | None = None
    read_voltage_v: float | None = None
    read_time_s: float | None = None
    illustrative: bool = True
    source: str = ""
    description: str = field(default="", compare=False)
    nonideal: NonIdealities = field(default_factory=NonIdealities)

    def __post_init__(self) -> None:
        self._check_name()
        self._check_resistances()
        if not isinstance(self.can_leak, bool):
            raise _bad("can_leak", self.can_leak, "expected True or False")
        self._check_transitions()
        self._check_read()
        if not isinstance(self.illustrative, bool):
            raise _bad("illustrative", self.illustrative, "expected True or False")
        if not isinstance(self.source, str):
            raise _bad("source", self.source, "expected a string")
        if not self.illustrative and not self.source.strip():
            raise _bad(
                "source",
                self.source,
                "a non-illustrative spec (illustrative=False) must say where its numbers come from",
            )
        if not isinstance(self.description, str):
            raise _bad("description", self.description, "expected a string")
        self._check_nonideal()

    # -- validation helpers -------------------------------------------------------------------------------------

    def _check_name(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise _bad("name", self.name, "expected a non-empty string")

    def _check_resistances(self) -> None:
        value = self.resistances_ohm
        if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
            raise _bad("resistances_ohm", value, "expected a sequence of at least 2 resistances in ohms")
        res = tuple(_as_float("resistances_ohm", r) for r in value)
        object.__setattr__(self, "resistances_ohm", res)
        if len(res) < 2:
            raise _bad("resistances_ohm", res, f"a multi-state device needs at least 2 states, got {len(res)}")
        for k, r in enumerate(res):
            if not math.isfinite(r) or r <= 0:
                raise _bad("resistances_ohm", res, f"every resistance must be positive and finite (R_{k}={r!r} ohm)")
        for k in range(1, len(res)):
            if res[k] == res[k - 1]:
                raise _bad("resistances_ohm", res, f"resistances must be unique (R_{k - 1} == R_{k} == {res[k]!r} ohm)")
            if res[k] < res[k - 1]:
                raise _bad(
                    "resistances_ohm",
                    res,
                    f"resistances must be sorted ascending, R_0 < R_1 < ... (R_{k - 1}={res[k - 1]!r} > "
                    f"R_{k}={res[k]!r} ohm); renumber the states and the transitions",
                )

    def _check_transitions(self) -> None:
        edges = _normalise_transitions(self.transitions)
        object.__setattr__(self, "transitions", edges)
        n = len(self.resistances_ohm)
        seen: set[tuple[int, int]] = set()
        for e in edges:
            for end in (e.src, e.dst):
                if not 0 <= end < n:
                    raise _bad("transitions", e, f"state {end} does not exist; valid states are 0..{n - 1}")
            if e.src == e.dst:
                raise _bad("transitions", e, "a self-loop is not a transition (i -> i costs 0 by definition)")
            if not math.isfinite(e.energy_j) or e.energy_j < 0:
                raise _bad("transitions", e, "a write energy must be finite and >= 0 joules")
            if (e.src, e.dst) in seen:
                raise _bad("transitions", e, f"edge {e.src} -> {e.dst} is listed twice; give each edge once")
            seen.add((e.src, e.dst))
        has_in = {e.dst for e in edges}
        has_out = {e.src for e in edges}
        for k in range(n):
            if k not in has_in:
                raise _bad(
                    "transitions",
                    edges,
                    f"state R_{k} cannot be reached from any other state (no edge ends at {k}); every state must be "
                    "writable",
                )
            if k not in has_out:
                raise _bad(
                    "transitions",
                    edges,
                    f"state R_{k} cannot reach any other state (no edge starts at {k}); a device stuck in R_{k} "
                    "could never be rewritten",
                )

    def _check_read(self) -> None:
        n = len(self.resistances_ohm)
        has_direct = self.read_energy_j is not None
        has_v = self.read_voltage_v is not None
        has_t = self.read_time_s is not None
        if has_direct and (has_v or has_t):
            raise _bad(
                "read_energy_j",
                self.read_energy_j,
                "give either read_energy_j or read_voltage_v + read_time_s, not both",
            )
        if not has_direct and not (has_v or has_t):
            raise _bad(
                "read_energy_j",
                None,
                "give the read energy: either read_energy_j (one value per state, joules) or read_voltage_v (volts) "
                "and read_time_s (seconds)",
            )
        if has_direct:
            value = self.read_energy_j
            if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
                raise _bad("read_energy_j", value, f"expected {n} read energies in joules, one per state")
            energies = tuple(_as_float("read_energy_j", e) for e in value)
            object.__setattr__(self, "read_energy_j", energies)
            if len(energies) != n:
                raise _bad(
                    "read_energy_j", energies, f"expected one read energy per state: {n} values, got {len(energies)}"
                )
            if any(not math.isfinite(e) or e < 0 for e in energies):
                raise _bad("read_energy_j", energies, "every read energy must be finite and >= 0 joules")
            return
        if not (has_v and has_t):
            missing = "read_time_s" if has_v else "read_voltage_v"
            raise _bad(missing, None, "read_voltage_v and read_time_s must be given together")
        v = _as_float("read_voltage_v", self.read_voltage_v)
        t = _as_float("read_time_s", self.read_time_s)
        if not math.isfinite(v) or v <= 0:
            raise _bad("read_voltage_v", v, "expected a positive, finite read voltage in volts")
        if not math.isfinite(t) or t <= 0:
            raise _bad("read_time_s", t, "expected a positive, finite read pulse time in seconds")
        object.__setattr__(self, "read_voltage_v", v)
        object.__setattr__(self, "read_time_s", t)

    def _check_nonideal(self) -> None:
        value = self.nonideal
        if value is None:
            value = NonIdealities()
        elif isinstance(value, Mapping):
            value = NonIdealities.from_dict(value)
        elif not isinstance(value, NonIdealities):
            raise _bad("nonideal", value, "expected a NonIdealities, a mapping of its fields, or None (ideal)")
        try:
            value.check_states(len(self.resistances_ohm))
        except ValueError as err:
            raise _bad("nonideal", value, str(err)) from None
        object.__setattr__(self, "nonideal", value)

    # -- derived quantities -------------------------------------------------------------------------------------

    @property
    def num_states(self) -> int:
        """Number of resistance states ``N``."""
        return len(self.resistances_ohm)

    @property
    def read_energies_j(self) -> tuple[float, ...]:
        """Read energy of each state in joules: ``read_energy_j``, or :math:`V_r^2 t_r / R_k`."""
        if self.read_energy_j is not None:
            return self.read_energy_j
        assert self.read_voltage_v is not None and self.read_time_s is not None
        return tuple(self.read_voltage_v**2 * self.read_time_s / r for r in self.resistances_ohm)

    @property
    def edges(self) -> dict[tuple[int, int], float]:
        """The direct RSTD edges as ``{(src, dst): energy_j}`` (joules)."""
        return {(e.src, e.dst): e.energy_j for e in self.transitions}

    def with_nonideal(self, **changes: Any) -> DeviceSpec:
        """A copy of this device whose :attr:`nonideal` has ``changes`` applied (e.g. ``d2d_sigma=0.05``).

        Raises:
            ValueError: If a change is invalid (see :class:`~quest_lightning.devices.nonideal.NonIdealities`).
        """
        current = {f.name: getattr(self.nonideal, f.name) for f in fields(self.nonideal)}
        return replace(self, nonideal=NonIdealities.from_dict({**current, **changes}))

    def state_label(self, k: int) -> str:
        """Human label of state ``k``, e.g. ``"R2"``."""
        return f"R{k}"
