"""R-S patterns: counts, order, labels, selection, and the per-pattern energy matrices on a hand-worked device."""

from __future__ import annotations

import itertools

import pytest
import torch
from toy_device import TOY

from quest_lightning.devices import (
    DeviceSpec,
    UnreachableTransitionError,
    enumerate_patterns,
    format_mapping,
    get_device,
    pattern_energies,
)

PJ = 1e-12
# shortest-path matrix by hand (pJ); 2->1 = 2->0->1 = 3 + 1 = 4
D = [[0.0, 1.0, 2.0], [3.0, 0.0, 1.5], [3.0, 4.0, 0.0]]
# read energies 0.1^2 * 1e-8 / R: 100, 50, 25 fJ
READ = [1e-13, 5e-14, 2.5e-14]


# TOY (tests/toy_device.py): shortest paths D = [[0, 1, 2], [3, 0, 1.5], [3, 4, 0]] pJ; reads 100, 50, 25 fJ.
@pytest.mark.parametrize(
    ("bits", "states", "count"),
    [(2, (0, 1, 2), 6), (2, None, 210), (3, None, 5040), (2, (0, 3, 6), 6), (2, (1, 2, 3, 4), 24)],
)
def test_pattern_counts(bits, states, count):
    ps = enumerate_patterns(get_device("skmtj7"), bits, states)
    assert len(ps) == count
    assert ps.states.shape == (count, 2**bits - 1)
    assert len({tuple(r) for r in ps.states.tolist()}) == count  # all distinct
    assert all(len(set(r)) == len(r) for r in ps.states.tolist())  # injective


def test_order_is_lexicographic_permutations():
    ps = enumerate_patterns(get_device("skmtj7"), 2)
    assert [tuple(r) for r in ps.states.tolist()] == list(itertools.permutations(range(7), 3))
    assert ps[0].states == (0, 1, 2) and ps[1].states == (0, 1, 3) and ps[-1].states == (6, 5, 4)
    sub = enumerate_patterns(get_device("skmtj7"), 2, states=(5, 0, 2))  # sorted before enumeration
    assert [tuple(r) for r in sub.states.tolist()] == [(0, 2, 5), (0, 5, 2), (2, 0, 5), (2, 5, 0), (5, 0, 2), (5, 2, 0)]


def test_labels_and_selection():
    ps = enumerate_patterns(get_device("skmtj7"), 2)
    idx = ps.index_of((2, 0, 5))
    assert ps[idx].states == (2, 0, 5)
    assert ps[idx].label == "-1→R2, 0→R0, +1→R5"
    assert str(ps[idx]) == f"pattern {idx}: -1→R2, 0→R0, +1→R5"
    assert ps.select(idx) == ps.select((2, 0, 5)) == ps[idx]
    assert ps[idx].state_of(-1) == 2 and ps[idx].state_of(1) == 5
    assert ps.labels[idx] == ps[idx].label
    assert format_mapping((0, 1, 2, 3, 4, 5, 6)).startswith("-3→R0, -2→R1")
    with pytest.raises(ValueError, match="not a pattern"):
        ps.index_of((1, 1, 2))
    with pytest.raises(ValueError, match="3 levels"):
        ps.index_of((1, 2))
    with pytest.raises(IndexError):
        ps[210]


def test_too_many_levels_is_a_clear_error():
    with pytest.raises(ValueError, match=r"bits=4 needs 15 weight levels.*'skmtj7' has only 7 states"):
        enumerate_patterns(get_device("skmtj7"), 4)
    with pytest.raises(ValueError, match="only 2 states are allowed"):
        enumerate_patterns(get_device("skmtj7"), 2, states=(0, 1))
    with pytest.raises(ValueError, match="lacks"):
        enumerate_patterns(get_device("skmtj7"), 2, states=(0, 1, 9))


def test_energy_matrices_by_hand():
    pe = pattern_energies(TOY, bits=2)
    assert pe.write_j.shape == (6, 3, 3) and pe.read_j.shape == (6, 3)
    assert pe.write_j.dtype == torch.float64 and pe.read_j.dtype == torch.float64
    # pattern 3 = (1, 2, 0): -1 -> R1, 0 -> R2, +1 -> R0
    assert pe.patterns[3].states == (1, 2, 0)
    expected_w3 = [[0.0, 1.5, 3.0], [4.0, 0.0, 3.0], [1.0, 2.0, 0.0]]  # D[p(i), p(j)]
    assert torch.allclose(pe.write_j[3], torch.tensor(expected_w3, dtype=torch.float64) * PJ, rtol=1e-12, atol=0)
    assert torch.allclose(pe.read_j[3], torch.tensor([5e-14, 2.5e-14, 1e-13], dtype=torch.float64), rtol=1e-12)
    # every pattern: E_w^p[i, j] = D[p(i), p(j)], E_r^p[v] = E_read(R_p(v)), zero diagonal
    for p, row in enumerate(pe.patterns.states.tolist()):
        for i, j in itertools.product(range(3), repeat=2):
            assert float(pe.write_j[p, i, j]) == pytest.approx(D[row[i]][row[j]] * PJ, rel=1e-12, abs=0)
        assert pe.read_j[p].tolist() == pytest.approx([READ[s] for s in row], rel=1e-12)


def test_pattern_energies_accepts_a_pattern_set():
    ps = enumerate_patterns(TOY, 2)
    assert torch.equal(pattern_energies(ps).write_j, pattern_energies(TOY, 2).write_j)
    with pytest.raises(ValueError, match="bits is required"):
        pattern_energies(TOY)


def test_unreachable_transition_is_reported_by_pattern_pricing():
    # two strongly connected groups {0, 1} and {2, 3, 4}, joined one way by 1 -> 2
    split = DeviceSpec(
        name="split5",
        resistances_ohm=(1.0, 2.0, 3.0, 4.0, 5.0),
        can_leak=True,
        transitions=((0, 1, 1.0), (1, 0, 1.0), (1, 2, 1.0), (2, 3, 1.0), (3, 4, 1.0), (4, 2, 1.0)),
        read_energy_j=(0.0,) * 5,
    )
    with pytest.raises(UnreachableTransitionError, match=r"'split5' cannot make .*R2 -> R0"):
        pattern_energies(split, bits=2)
    with pytest.raises(UnreachableTransitionError, match=r"R2 -> R1"):
        pattern_energies(split, bits=2, states=(1, 2, 3))
    # restricted to states that reach each other, it prices fine: 2 -> 4 = 2 -> 3 -> 4 = 2
    pe = pattern_energies(split, bits=2, states=(2, 3, 4))
    assert torch.isfinite(pe.write_j).all()
    assert float(pe.write_j[0, 0, 2]) == 2.0
