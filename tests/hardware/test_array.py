"""The per-cell physics: exact reads on an ideal device, misread rates against the normal CDF, faults, drift."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch

from quest_lightning.devices import enumerate_patterns, get_device
from quest_lightning.hardware import ArrayModel, LinearInterpolation, draw_cells, level_conductances, read_levels

SKMTJ = get_device("skmtj7")
N = 200_000


def _codes(shape, seed=0, q=1):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(-q, q + 1, shape, generator=gen, dtype=torch.int8)


def _phi(x: float) -> float:
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def _within_binomial(count: int, n: int, p: float, z: float = 5.0) -> bool:
    return abs(count - n * p) <= z * math.sqrt(n * p * (1 - p)) + 1


@pytest.mark.parametrize("bits", [2, 3])
def test_ideal_device_reads_every_level_back(bits):
    q = 2 ** (bits - 1) - 1
    codes = _codes((64, 33), q=q)
    for states in enumerate_patterns(SKMTJ, bits).states[:: 101 if bits == 3 else 11].tolist():
        for mapping in (None, LinearInterpolation()):
            array = ArrayModel(SKMTJ, states) if mapping is None else ArrayModel(SKMTJ, states, mapping)
            cells = draw_cells(array, codes.shape, torch.Generator().manual_seed(5))
            assert torch.equal(read_levels(codes, array, cells), codes.to(torch.float64) + q)


def test_misread_rate_matches_the_normal_cdf():
    """Level 0 on R3 between R0 and R6: it misreads when ln R moves past the conductance midpoints."""
    sigma = 0.04
    array = ArrayModel(SKMTJ.with_nonideal(d2d_sigma=sigma), (0, 3, 6))
    codes = torch.zeros(N, dtype=torch.int8)  # every cell holds level 1 (code 0) on R3
    levels = read_levels(codes, array, draw_cells(array, (N,), torch.Generator().manual_seed(2)))
    g = [1 / r for r in SKMTJ.resistances_ohm]
    up, down = (g[0] + g[3]) / 2, (g[3] + g[6]) / 2  # thresholds towards R0 and towards R6
    # G = g3 * exp(-delta): reads R0 when delta < ln(g3 / up), R6 when delta > ln(g3 / down)
    p_r0 = _phi(math.log(g[3] / up) / sigma)
    p_r6 = 1 - _phi(math.log(g[3] / down) / sigma)
    assert _within_binomial(int((levels == 0).sum()), N, p_r0)
    assert _within_binomial(int((levels == 2).sum()), N, p_r6)
    assert 0.05 < p_r0 < 0.2 and 0.05 < p_r6 < 0.2  # the check is not vacuous


def test_per_state_sigma_only_moves_that_state():
    array = ArrayModel(SKMTJ.with_nonideal(c2c_sigma=(0, 0, 0, 0.2, 0, 0, 0)), (0, 3, 6))
    codes = _codes((N,), seed=1)
    levels = read_levels(codes, array, draw_cells(array, (N,), torch.Generator().manual_seed(3)))
    wrong = levels != codes.to(torch.float64) + 1
    assert bool((codes[wrong] == 0).all()) and int(wrong.sum()) > 0.3 * int((codes == 0).sum())


@pytest.mark.parametrize("stuck_state", [None, 5])
def test_stuck_cells_at_the_requested_rate(stuck_state):
    f = 0.03
    array = ArrayModel(SKMTJ.with_nonideal(stuck_fraction=f, stuck_state=stuck_state), (0, 3, 6))
    cells = draw_cells(array, (N,), torch.Generator().manual_seed(4))
    assert _within_binomial(cells.num_stuck, N, f)
    stuck_states = cells.stuck_state[cells.stuck]
    if stuck_state is None:
        counts = torch.bincount(stuck_states, minlength=7)
        assert all(_within_binomial(int(c), cells.num_stuck, 1 / 7) for c in counts)
    else:
        assert bool((stuck_states == 5).all())
        # R5 (5.8 kOhm) is nearest to R6 in conductance: a stuck cell reads level 2 (code +1)
        codes = _codes((N,), seed=6)
        levels = read_levels(codes, array, cells)
        assert bool((levels[cells.stuck] == 2).all())
        changed = levels != codes.to(torch.float64) + 1
        assert torch.equal(changed, cells.stuck & (codes != 1))


def test_same_seed_same_draws_whatever_the_sigma():
    """Common random numbers: the draws do not depend on the device's numbers."""
    a = draw_cells(ArrayModel(SKMTJ, (0, 3, 6)), (50,), torch.Generator().manual_seed(9))
    noisy = SKMTJ.with_nonideal(d2d_sigma=0.1, stuck_fraction=0.2, drift_nu_sigma=0.01)
    b = draw_cells(ArrayModel(noisy, (6, 3, 0)), (50,), torch.Generator().manual_seed(9))
    assert torch.equal(a.d2d, b.d2d) and torch.equal(a.c2c, b.c2c) and torch.equal(a.stuck_state, b.stuck_state)


@dataclass(frozen=True)
class _Conductance:
    """A test converter that returns the read conductance itself, to check the physics before the mapping."""

    name: str = "conductance"

    def __call__(self, conductance_s, level_conductance_s):
        return conductance_s


def test_stuck_cells_have_no_programming_noise_and_read_noise_is_per_read():
    dev = SKMTJ.with_nonideal(c2c_sigma=0.1, read_sigma=0.0, stuck_fraction=0.5, stuck_state=2)
    array = ArrayModel(dev, (0, 3, 6), _Conductance())
    codes = _codes((1000,))
    cells = draw_cells(array, codes.shape, torch.Generator().manual_seed(0))
    g = read_levels(codes, array, cells)
    assert torch.equal(g[cells.stuck], torch.full_like(g[cells.stuck], 1 / 5400.0))
    assert not torch.equal(g[~cells.stuck], level_conductances(SKMTJ, (0, 3, 6))[codes[~cells.stuck].long() + 1])
    array = ArrayModel(SKMTJ.with_nonideal(read_sigma=0.05), (0, 3, 6), _Conductance())
    cells = draw_cells(array, codes.shape, torch.Generator().manual_seed(0))
    eps1, eps2 = torch.randn(1000, dtype=torch.float64), torch.randn(1000, dtype=torch.float64)
    g1, g2 = read_levels(codes, array, cells, eps1), read_levels(codes, array, cells, eps2)
    nominal = level_conductances(SKMTJ, (0, 3, 6))[codes.long() + 1]
    assert torch.allclose(g1, nominal * torch.exp(-0.05 * eps1), rtol=1e-14, atol=0)
    assert not torch.equal(g1, g2)


def test_drift_power_law_and_compensation():
    nu, t0 = 0.06, 20.0
    dev = SKMTJ.with_nonideal(drift_nu=nu)
    codes = _codes((100,))
    nominal = level_conductances(SKMTJ, (0, 3, 6))[codes.long() + 1]
    for t in (20.0, 3600.0, 86400.0 * 365):
        raw = ArrayModel(dev, (0, 3, 6), _Conductance(), t_inference_s=t, drift_compensation=False)
        cells = draw_cells(raw, codes.shape, torch.Generator().manual_seed(0))
        # G(t) = G(t0) (t / t0)^-nu
        assert torch.allclose(read_levels(codes, raw, cells), nominal * (t / t0) ** -nu, rtol=1e-12, atol=0)
        comp = ArrayModel(dev, (0, 3, 6), _Conductance(), t_inference_s=t)
        assert torch.allclose(read_levels(codes, comp, cells), nominal, rtol=1e-12, atol=0)
    with pytest.raises(ValueError, match="t0"):
        ArrayModel(dev, (0, 3, 6), t_inference_s=1.0)


@pytest.mark.parametrize(
    ("pattern", "fragment"),
    [((0, 3), "odd number"), ((0, 3, 3), "distinct"), ((0, 3, 9), "0..6"), ("abc", "state indices")],
)
def test_bad_array_model(pattern, fragment):
    with pytest.raises(ValueError, match=fragment):
        ArrayModel(SKMTJ, pattern)
