"""The programming map: which device state every weight is programmed to under an R-S pattern, and back.

Weight :math:`k` with integer code :math:`\\hat w_k` is programmed to state :math:`p(\\hat w_k + Q)` of pattern
:math:`p` (level index :math:`v = c + Q`, most negative code first, as everywhere in quest-lightning; see
:mod:`quest_lightning.devices.patterns`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from quest_lightning.devices.capability import check_bits_fit
from quest_lightning.devices.patterns import enumerate_patterns
from quest_lightning.devices.spec import DeviceSpec
from quest_lightning.functional.grid import num_levels

__all__ = ["codes_from_states", "programming_map", "resolve_pattern"]


def programming_map(codes: Tensor, states: Sequence[int]) -> Tensor:
    """Device state of every weight: ``states[code + Q]`` (``uint8``, the shape of ``codes``).

    Args:
        codes: Integer codes in :math:`[-Q, Q]`.
        states: The pattern's state tuple, one state per level (``len = 2Q + 1``).

    Raises:
        ValueError: A code outside the pattern's grid.
    """
    q = (len(states) - 1) // 2
    c = codes.to(torch.int64)
    if c.numel() and (int(c.min()) < -q or int(c.max()) > q):
        raise ValueError(f"codes span {int(c.min())}..{int(c.max())} but the pattern holds -{q}..+{q}")
    return torch.tensor(list(states), dtype=torch.uint8)[c + q]


def codes_from_states(state_map: Tensor, states: Sequence[int]) -> Tensor:
    """The inverse of :func:`programming_map`: the integer code (``int8``) each programmed state stands for.

    Raises:
        ValueError: A state that the pattern does not use.
    """
    q = (len(states) - 1) // 2
    lookup = torch.full((max(states) + 1,), -128, dtype=torch.int16)
    lookup[torch.tensor(list(states))] = torch.arange(-q, q + 1, dtype=torch.int16)
    s = state_map.to(torch.int64)
    if s.numel() and int(s.max()) >= lookup.numel():
        raise ValueError(f"state {int(s.max())} is not used by the pattern {tuple(states)}")
    codes = lookup[s]
    if bool((codes == -128).any()):
        raise ValueError(f"the map holds states that the pattern {tuple(states)} does not use")
    return codes.to(torch.int8)


def resolve_pattern(device: DeviceSpec, bits: int, pattern: int | Sequence[int]) -> tuple[int | None, tuple[int, ...]]:
    """``(index or None, states)`` of an R-S pattern given by index (into every pattern of the device, in
    :func:`~quest_lightning.devices.patterns.enumerate_patterns` order) or by its states, one per level.

    Raises:
        ValueError: The grid does not fit the device, the index is out of range, or the states are not distinct
            states of the device, one per level.
    """
    check_bits_fit(device, bits)
    levels = num_levels(bits)
    if isinstance(pattern, bool) or not isinstance(pattern, int | Sequence) or isinstance(pattern, str):
        raise ValueError(f"pattern={pattern!r} must be an index or a tuple of device states (one per level)")
    if isinstance(pattern, int):
        count = math.perm(device.num_states, levels)
        if not 0 <= pattern < count:
            raise ValueError(
                f"pattern={pattern} is out of range: {device.name!r} with bits={bits} has {count} patterns "
                f"(0..{count - 1})"
            )
        return pattern, enumerate_patterns(device, bits)[pattern].states
    states = tuple(int(s) for s in pattern)
    bad = [s for s in states if not 0 <= s < device.num_states]
    if len(states) != levels or len(set(states)) != levels or bad:
        raise ValueError(
            f"pattern={tuple(pattern)} must give {levels} distinct states of {device.name!r} "
            f"(0..{device.num_states - 1}), one per level from the most negative code up"
        )
    return None, states
