"""Converters from read conductance to level, against independent implementations, and exact at nominal points."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from quest_lightning.devices import enumerate_patterns, get_device
from quest_lightning.hardware import ConductanceMapping, LinearInterpolation, NearestLevel, level_conductances

SKMTJ = get_device("skmtj7")


def test_level_conductances():
    g = level_conductances(SKMTJ, (6, 0, 3))
    assert g.dtype == torch.float64
    assert g.tolist() == pytest.approx([1 / 6200.0, 1 / 5000.0, 1 / 5600.0], rel=1e-15)
    with pytest.raises(ValueError, match=r"state\(s\) \[7\]"):
        level_conductances(SKMTJ, (0, 7, 3))


@pytest.mark.parametrize("mapping", [NearestLevel(), LinearInterpolation()])
@pytest.mark.parametrize("bits", [2, 3])
def test_nominal_conductance_reads_back_exactly(mapping, bits):
    assert isinstance(mapping, ConductanceMapping)
    for p in enumerate_patterns(SKMTJ, bits).states[::7]:
        g = level_conductances(SKMTJ, p.tolist())
        assert torch.equal(mapping(g, g), torch.arange(len(p), dtype=torch.float64))


def test_nearest_level_is_the_argmin_distance():
    g_levels = level_conductances(SKMTJ, (3, 0, 6, 1, 5, 2, 4))
    gen = torch.Generator().manual_seed(0)
    g = 1 / 6400 + (1 / 4800 - 1 / 6400) * torch.rand(20_000, generator=gen, dtype=torch.float64)
    expected = (g[:, None] - g_levels[None, :]).abs().argmin(1).to(torch.float64)
    assert torch.equal(NearestLevel()(g, g_levels), expected)


def test_linear_interpolation_matches_numpy_interp():
    pattern = (3, 0, 6)  # level 0 on R3, level 1 on R0, level 2 on R6: not monotone in conductance
    g_levels = level_conductances(SKMTJ, pattern)
    gen = torch.Generator().manual_seed(1)
    g = 1 / 6500 + (1 / 4700 - 1 / 6500) * torch.rand(5000, generator=gen, dtype=torch.float64)
    order = np.argsort(g_levels.numpy())
    expected = np.interp(g.numpy(), g_levels.numpy()[order], order.astype(float))  # clamps at the ends
    assert np.allclose(LinearInterpolation()(g, g_levels).numpy(), expected, rtol=0, atol=1e-12)
    # halfway between R0 (level 1) and R3 (level 0) in conductance reads level 0.5
    mid = (g_levels[0] + g_levels[1]) / 2
    assert float(LinearInterpolation()(mid.reshape(1), g_levels)) == pytest.approx(0.5)
