r"""Write costs of every state-to-state transition: shortest paths through the RSTD.

The RSTD of a :class:`~quest_lightning.devices.spec.DeviceSpec` lists only the *direct* transitions. Writing
``R_i -> R_j`` costs the cheapest sequence of direct transitions from ``i`` to ``j``:

.. math::

    E_w(i, j) = \min_{\text{paths } i = k_0 \to k_1 \to \dots \to k_m = j} \sum_{s=1}^{m} e(k_{s-1}, k_s),
    \qquad E_w(i, i) = 0,

found once per device by Floyd–Warshall over the ``N`` states (``N`` is small). A pair with no path has
:math:`E_w = \infty` in :attr:`ShortestPaths.energy_j`; :meth:`ShortestPaths.cost` and the pattern code refuse to
price it and name the states and the device instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from quest_lightning.devices.spec import DeviceSpec

__all__ = ["ShortestPaths", "UnreachableTransitionError", "shortest_paths"]


class UnreachableTransitionError(ValueError):
    """A write ``R_i -> R_j`` that the device's RSTD cannot make by any sequence of direct transitions."""


@dataclass(frozen=True, eq=False)
class ShortestPaths:
    """All-pairs cheapest write costs of one device.

    Attributes:
        device: The device the costs belong to.
        energy_j: ``[N, N]`` float64 tensor; ``energy_j[i, j]`` is the cheapest write energy in joules from state
            ``i`` to state ``j``, ``0`` on the diagonal, ``inf`` where the RSTD has no path.
        next_hop: ``[N, N]`` int64 tensor; the first state after ``i`` on a cheapest path to ``j``
            (``j`` itself for a direct edge, ``-1`` where there is no path or ``i == j``).
    """

    device: DeviceSpec
    energy_j: torch.Tensor
    next_hop: torch.Tensor

    def path(self, src: int, dst: int) -> tuple[int, ...]:
        """The states visited by a cheapest write from ``src`` to ``dst``, both ends included.

        Raises:
            UnreachableTransitionError: If the RSTD has no path from ``src`` to ``dst``.
        """
        self._check_reachable(src, dst)
        states = [src]
        while states[-1] != dst:
            states.append(int(self.next_hop[states[-1], dst]))
        return tuple(states)

    def cost(self, src: int, dst: int) -> float:
        """Cheapest write energy in joules from ``src`` to ``dst`` (0 when ``src == dst``).

        Raises:
            UnreachableTransitionError: If the RSTD has no path from ``src`` to ``dst``.
        """
        self._check_reachable(src, dst)
        return float(self.energy_j[src, dst])

    def unreachable(self) -> list[tuple[int, int]]:
        """Every ordered pair ``(i, j)`` the RSTD cannot write, in row-major order (empty if strongly connected)."""
        return [(int(i), int(j)) for i, j in torch.nonzero(torch.isinf(self.energy_j)).tolist()]

    @property
    def strongly_connected(self) -> bool:
        """True if every state can be written from every other state."""
        return not bool(torch.isinf(self.energy_j).any())

    def _check_reachable(self, src: int, dst: int) -> None:
        n = self.device.num_states
        for s in (src, dst):
            if not 0 <= s < n:
                raise ValueError(
                    f"state {s} does not exist on device {self.device.name!r}; valid states are 0..{n - 1}"
                )
        if torch.isinf(self.energy_j[src, dst]):
            raise unreachable_error(self.device, [(src, dst)])


def unreachable_error(device: DeviceSpec, pairs: list[tuple[int, int]]) -> UnreachableTransitionError:
    """Build the error for transitions that ``device`` cannot make (lists at most 10 pairs)."""
    shown = ", ".join(f"R{i} -> R{j}" for i, j in pairs[:10])
    more = f" and {len(pairs) - 10} more" if len(pairs) > 10 else ""
    return UnreachableTransitionError(
        f"device {device.name!r} cannot make the transition(s) {shown}{more}: its RSTD has no path between these "
        "states. Add direct transitions to the device's RSTD, or restrict the pattern to a set of states that can "
        "all reach each other (the `states=` argument of enumerate_patterns)."
    )


def shortest_paths(device: DeviceSpec) -> ShortestPaths:
    """Cheapest write energy between every pair of states of ``device`` (Floyd–Warshall).

    Ties are broken deterministically: an intermediate state replaces the current best path only if it is
    strictly cheaper, trying intermediates in ascending order.

    Args:
        device: The device whose RSTD to search.

    Returns:
        The ``[N, N]`` cost matrix in joules (``inf`` where no path exists) and the next-hop table for
        reconstructing paths.

    Example:
        >>> from quest_lightning.devices.spec import DeviceSpec
        >>> dev = DeviceSpec("toy", (1.0, 2.0, 3.0), False, [(0, 1, 1.0), (1, 2, 1.0), (2, 0, 5.0), (0, 2, 3.0)],
        ...                  read_energy_j=(0.0, 0.0, 0.0))
        >>> sp = shortest_paths(dev)
        >>> sp.cost(0, 2), sp.path(0, 2), sp.cost(1, 0), sp.path(1, 0)
        (2.0, (0, 1, 2), 6.0, (1, 2, 0))
    """
    n = device.num_states
    dist = torch.full((n, n), float("inf"), dtype=torch.float64)
    nxt = torch.full((n, n), -1, dtype=torch.int64)
    for e in device.transitions:
        dist[e.src, e.dst] = e.energy_j
        nxt[e.src, e.dst] = e.dst
    idx = torch.arange(n)
    dist[idx, idx] = 0.0
    for k in range(n):
        through = dist[:, k : k + 1] + dist[k : k + 1, :]
        better = through < dist
        dist = torch.where(better, through, dist)
        nxt = torch.where(better, nxt[:, k : k + 1].expand(n, n), nxt)
    nxt[idx, idx] = -1
    return ShortestPaths(device=device, energy_j=dist, next_hop=nxt)
