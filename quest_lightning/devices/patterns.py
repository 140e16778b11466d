r"""R-S mapping patterns: which device state holds which weight level, and what each pattern costs.

A ``b``-bit MINT grid has :math:`L = 2^b - 1` integer codes :math:`-Q, \dots, 0, \dots, +Q` with
:math:`Q = 2^{b-1} - 1`. Level index ``v = code + Q`` runs ``0 .. L-1`` from the most negative code up. A
*pattern* ``p`` is a one-to-one map ``v -> p(v)`` from levels to device states, written as the tuple
``(p(0), ..., p(L-1))``.

**Order.** :func:`enumerate_patterns` lists every injective map in the order of
``itertools.permutations(sorted(states), L)``: lexicographic in the tuple ``(p(0), ..., p(L-1))``. Pattern 0 maps
the levels to the lowest allowed states in ascending order. Counts: ``N! / (N - L)!``, e.g. 210 for 2-bit on 7
states, 6 for 2-bit on a 3-state subset, 5040 for 3-bit on 7 states.

**Energies of pattern p** (joules):

.. math::

    E_w^p[i, j] = E_w\big(R_{p(i)} \to R_{p(j)}\big) \text{ (shortest RSTD path, } E_w^p[i, i] = 0),
    \qquad E_r^p[v] = E_{read}\big(R_{p(v)}\big).

:func:`pattern_energies` returns them for all patterns at once, as ``[P, L, L]`` and ``[P, L]`` float64 tensors.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from quest_lightning.devices.capability import check_bits_fit
from quest_lightning.devices.spec import DeviceSpec
from quest_lightning.devices.transitions import shortest_paths, unreachable_error
from quest_lightning.functional.grid import num_levels

__all__ = ["PatternEnergies", "PatternSet", "RSPattern", "enumerate_patterns", "format_mapping", "pattern_energies"]


def _code_str(code: int) -> str:
    return f"+{code}" if code > 0 else str(code)


def format_mapping(states: Sequence[int]) -> str:
    """Human label of a pattern given as its state tuple, e.g. ``(2, 0, 5)`` -> ``"-1→R2, 0→R0, +1→R5"``."""
    q = (len(states) - 1) // 2
    return ", ".join(f"{_code_str(v - q)}→R{s}" for v, s in enumerate(states))


@dataclass(frozen=True)
class RSPattern:
    """One R-S mapping pattern.

    Attributes:
        index: Position in the :class:`PatternSet` it came from.
        states: ``states[v]`` is the device state holding level ``v`` (``code = v - Q``).
    """

    index: int
    states: tuple[int, ...]

    @property
    def codes(self) -> tuple[int, ...]:
        """The integer codes ``-Q .. +Q`` in level order."""
        q = (len(self.states) - 1) // 2
        return tuple(range(-q, q + 1))

    @property
    def label(self) -> str:
        """The mapping as text, e.g. ``"-1→R2, 0→R0, +1→R5"``."""
        return format_mapping(self.states)

    def state_of(self, code: int) -> int:
        """Device state that holds integer ``code``."""
        q = (len(self.states) - 1) // 2
        if not -q <= code <= q:
            raise ValueError(f"code={code} is outside the grid -{q}..+{q}")
        return self.states[code + q]

    def __str__(self) -> str:
        return f"pattern {self.index}: {self.label}"


@dataclass(frozen=True, eq=False)
class PatternSet:
    """Every R-S pattern of a ``bits``-bit grid over a set of allowed device states, in a fixed order.

    Attributes:
        device: The device the states belong to.
        bits: Bit width ``b``; the grid has ``L = 2**b - 1`` levels.
        allowed_states: The states the patterns may use, ascending.
        states: ``[P, L]`` int64 tensor; row ``p`` is pattern ``p``'s state tuple.
    """

    device: DeviceSpec
    bits: int
    allowed_states: tuple[int, ...]
    states: torch.Tensor

    @property
    def num_levels(self) -> int:
        """``L = 2**bits - 1``."""
        return num_levels(self.bits)

    def __len__(self) -> int:
        return int(self.states.shape[0])

    def __getitem__(self, index: int) -> RSPattern:
        if not -len(self) <= index < len(self):
            raise IndexError(f"pattern index {index} out of range: this set has {len(self)} patterns")
        index = index % len(self)
        return RSPattern(index=index, states=tuple(int(s) for s in self.states[index].tolist()))

    def __iter__(self):
        for p in range(len(self)):
            yield self[p]

    @property
    def labels(self) -> list[str]:
        """The mapping text of every pattern, in order."""
        return [format_mapping(row) for row in self.states.tolist()]

    def index_of(self, mapping: Sequence[int]) -> int:
        """Index of the pattern whose state tuple is ``mapping`` (``mapping[v]`` = state of level ``v``).

        Raises:
            ValueError: If ``mapping`` is not one of this set's patterns (wrong length, a state not allowed, or a
                state used twice).
        """
        target = torch.as_tensor([int(s) for s in mapping], dtype=torch.int64)
        if target.numel() != self.num_levels:
            raise ValueError(
                f"mapping={tuple(mapping)} has {target.numel()} states but a {self.bits}-bit grid has "
                f"{self.num_levels} levels"
            )
        hits = torch.nonzero((self.states == target).all(dim=1)).flatten()
        if hits.numel() == 0:
            raise ValueError(
                f"mapping={tuple(mapping)} is not a pattern of this set: it must use {self.num_levels} distinct "
                f"states from {self.allowed_states}"
            )
        return int(hits[0])

    def select(self, key: int | Sequence[int]) -> RSPattern:
        """A pattern by index (``int``) or by mapping (a tuple of state indices, one per level)."""
        if isinstance(key, int) and not isinstance(key, bool):
            return self[key]
        return self[self.index_of(key)]


def enumerate_patterns(device: DeviceSpec, bits: int, states: Sequence[int] | None = None) -> PatternSet:
    """All injective maps of the ``2**bits - 1`` levels onto ``states`` (default: all device states).

    Args:
        device: The device.
        bits: Weight bit width ``b >= 2`` (MINT narrow range, ``2**b - 1`` levels; ``b = 1`` is one level).
        states: The allowed subset of device states (e.g. ``(0, 1, 2)`` for the paper's 3-state, 6-pattern
            case). Sorted before enumeration.

    Returns:
        The patterns in lexicographic order of their state tuples.

    Raises:
        ValueError: If the grid has more levels than allowed states, or ``states`` names a state that does not
            exist or repeats one.
    """
    if isinstance(bits, bool) or not isinstance(bits, int) or bits < 1:
        raise ValueError(f"bits={bits!r} is invalid: expected an integer >= 1")
    check_bits_fit(device, bits)
    n = device.num_states
    allowed = tuple(range(n)) if states is None else tuple(sorted(int(s) for s in states))
    if len(set(allowed)) != len(allowed):
        raise ValueError(f"states={tuple(states or ())} repeats a state; give each allowed state once")
    bad = [s for s in allowed if not 0 <= s < n]
    if bad:
        raise ValueError(f"states={tuple(allowed)} names state(s) {bad} that device {device.name!r} lacks (0..{n - 1})")
    levels = num_levels(bits)
    if levels > len(allowed):
        raise ValueError(
            f"bits={bits} needs {levels} weight levels but only {len(allowed)} states are allowed ({allowed}); "
            f"allow at least {levels} states"
        )
    rows = list(itertools.permutations(allowed, levels))
    table = torch.tensor(rows, dtype=torch.int64).reshape(len(rows), levels)
    return PatternSet(device=device, bits=bits, allowed_states=allowed, states=table)


@dataclass(frozen=True, eq=False)
class PatternEnergies:
    """Write and read energy of every pattern of a :class:`PatternSet`.

    Attributes:
        patterns: The patterns, row ``p`` of each tensor is pattern ``p``.
        write_j: ``[P, L, L]`` float64; ``write_j[p, i, j]`` is the energy in joules to rewrite one device from
            level ``i`` to level ``j`` under pattern ``p`` (shortest RSTD path; 0 on the diagonal).
        read_j: ``[P, L]`` float64; ``read_j[p, v]`` is the energy in joules of one read of a device holding
            level ``v`` under pattern ``p``.
    """

    patterns: PatternSet
    write_j: torch.Tensor
    read_j: torch.Tensor

    @property
    def device(self) -> DeviceSpec:
        """The device priced."""
        return self.patterns.device


def pattern_energies(
    device_or_patterns: DeviceSpec | PatternSet, bits: int | None = None, states: Sequence[int] | None = None
) -> PatternEnergies:
    """Energy matrices :math:`E_w^p` and vectors :math:`E_r^p` for every pattern.

    Pass either a :class:`PatternSet` or a device plus ``bits`` (and optionally ``states``), which are handed to
    :func:`enumerate_patterns`.

    Raises:
        UnreachableTransitionError: If some pattern needs a transition the RSTD cannot make; the message names the
            states and the device.

    Example:
        >>> from quest_lightning.devices.registry import get_device
        >>> pe = pattern_energies(get_device("skmtj7"), bits=2)
        >>> tuple(pe.write_j.shape), tuple(pe.read_j.shape)
        ((210, 3, 3), (210, 3))
    """
    if isinstance(device_or_patterns, PatternSet):
        if bits is not None or states is not None:
            raise ValueError("pass bits/states only with a device, not with a PatternSet")
        ps = device_or_patterns
    else:
        if bits is None:
            raise ValueError("bits is required when a device is given")
        ps = enumerate_patterns(device_or_patterns, bits, states)
    device = ps.device
    sp = shortest_paths(device)
    sub = sp.energy_j[list(ps.allowed_states)][:, list(ps.allowed_states)]
    if ps.num_levels >= 2 and torch.isinf(sub).any():
        pairs = [(ps.allowed_states[i], ps.allowed_states[j]) for i, j in torch.nonzero(torch.isinf(sub)).tolist()]
        raise unreachable_error(device, pairs)
    s = ps.states
    write = sp.energy_j[s[:, :, None], s[:, None, :]]
    read = torch.tensor(device.read_energies_j, dtype=torch.float64)[s]
    return PatternEnergies(patterns=ps, write_j=write, read_j=read)
