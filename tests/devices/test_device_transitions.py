"""Shortest write paths through the RSTD: a hand-made golden graph, the Sk-MTJ topology, unreachable pairs."""

from __future__ import annotations

import math

import pytest
import torch

from quest_lightning.devices import DeviceSpec, UnreachableTransitionError, get_device, shortest_paths

# A 4-state RSTD whose cheapest paths are worked out by hand below.
#   direct: 0->1 = 1, 1->2 = 2, 2->3 = 3, 3->0 = 4, 0->2 = 10, 3->1 = 0.5
HAND = DeviceSpec(
    name="hand4",
    resistances_ohm=(1.0, 2.0, 3.0, 4.0),
    can_leak=True,
    transitions=((0, 1, 1.0), (1, 2, 2.0), (2, 3, 3.0), (3, 0, 4.0), (0, 2, 10.0), (3, 1, 0.5)),
    read_energy_j=(0.0, 0.0, 0.0, 0.0),
)
# 0->2: min(10, 1+2) = 3           0->3: 1+2+3 = 6
# 1->0: 2+3+4 = 9                  1->3: 2+3 = 5
# 2->0: 3+4 = 7                    2->1: 3+0.5 = 3.5 (not 3+4+1 = 8)
# 3->2: 0.5+2 = 2.5 (not 4+10)
HAND_COSTS = [
    [0.0, 1.0, 3.0, 6.0],
    [9.0, 0.0, 2.0, 5.0],
    [7.0, 3.5, 0.0, 3.0],
    [4.0, 0.5, 2.5, 0.0],
]
HAND_PATHS = {(0, 2): (0, 1, 2), (0, 3): (0, 1, 2, 3), (1, 0): (1, 2, 3, 0), (2, 1): (2, 3, 1), (3, 2): (3, 1, 2)}


def test_hand_made_rstd_costs():
    sp = shortest_paths(HAND)
    assert sp.energy_j.dtype == torch.float64
    assert sp.energy_j.tolist() == HAND_COSTS
    assert sp.strongly_connected and sp.unreachable() == []


@pytest.mark.parametrize(("pair", "path"), list(HAND_PATHS.items()))
def test_hand_made_rstd_paths(pair, path):
    sp = shortest_paths(HAND)
    assert sp.path(*pair) == path
    # the path's direct edges add up to the cost
    assert sum(HAND.edges[(a, b)] for a, b in zip(path[:-1], path[1:], strict=True)) == sp.cost(*pair)


def test_skmtj_paths_follow_method_section_5():
    dev = get_device("skmtj7")
    sp = shortest_paths(dev)
    for i in range(7):
        for j in range(7):
            if i == j:
                assert sp.cost(i, j) == 0.0
            elif j > i:  # one amplitude pulse up
                assert sp.path(i, j) == (i, j)
            elif j == 0:  # field reset
                assert sp.path(i, j) == (i, 0)
            else:  # a decrease goes through R0
                assert sp.path(i, j) == (i, 0, j)
    # one value by hand: R3 -> R5 is V_5^2 t / R_3 = 0.9^2 * 10 ns / 5.6 kOhm
    assert sp.cost(3, 5) == pytest.approx(0.81 * 10e-9 / 5.6e3, rel=1e-12)
    # R5 -> R2: reset (3 pJ) + pulse to R2 from R0 (0.6^2 * 10 ns / 5 kOhm)
    assert sp.cost(5, 2) == pytest.approx(3e-12 + 0.36 * 10e-9 / 5e3, rel=1e-12)


SPLIT = DeviceSpec(
    name="split4",
    resistances_ohm=(1.0, 2.0, 3.0, 4.0),
    can_leak=True,
    transitions=((0, 1, 1.0), (1, 0, 1.0), (2, 3, 1.0), (3, 2, 1.0)),
    read_energy_j=(0.0, 0.0, 0.0, 0.0),
)


def test_unreachable_pair_is_reported_not_priced():
    sp = shortest_paths(SPLIT)
    assert not sp.strongly_connected
    assert (0, 2) in sp.unreachable() and (3, 1) in sp.unreachable()
    assert math.isinf(float(sp.energy_j[0, 2]))
    with pytest.raises(UnreachableTransitionError, match=r"'split4'.*R0 -> R2"):
        sp.cost(0, 2)
    with pytest.raises(UnreachableTransitionError):
        sp.path(0, 3)
    assert sp.cost(2, 3) == 1.0


def test_nonexistent_state_is_reported():
    with pytest.raises(ValueError, match="state 7 does not exist"):
        shortest_paths(HAND).cost(0, 7)


def _dijkstra(n, edges, src):
    import heapq

    dist = [math.inf] * n
    dist[src] = 0.0
    heap = [(0.0, src)]
    while heap:
        d, u = heapq.heappop(heap)
        if d > dist[u]:
            continue
        for (a, b), w in edges.items():
            if a == u and d + w < dist[b]:
                dist[b] = d + w
                heapq.heappush(heap, (dist[b], b))
    return dist


@pytest.mark.parametrize("seed", range(5))
def test_floyd_warshall_matches_dijkstra_on_random_rstds(seed):
    gen = torch.Generator().manual_seed(seed)
    n = 6
    edges = {(k, (k + 1) % n): float(torch.rand(1, generator=gen)) + 0.1 for k in range(n)}  # a ring: connected
    for _ in range(10):
        i, j = torch.randint(0, n, (2,), generator=gen).tolist()
        if i != j:
            edges[(i, j)] = float(torch.rand(1, generator=gen)) * 3
    dev = DeviceSpec(f"rand{seed}", tuple(float(k + 1) for k in range(n)), True, edges, read_energy_j=(0.0,) * n)
    sp = shortest_paths(dev)
    for s in range(n):
        assert sp.energy_j[s].tolist() == pytest.approx(_dijkstra(n, edges, s), rel=1e-12, abs=1e-15)
        for t in range(n):
            path = sp.path(s, t)
            assert sum(edges[(a, b)] for a, b in zip(path[:-1], path[1:], strict=True)) == pytest.approx(sp.cost(s, t))
