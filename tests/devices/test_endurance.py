"""Writes per cell against a brute-force count, exact percentiles, and the endurance projection by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from quest_lightning.devices import (
    NonIdealities,
    count_writes,
    endurance_report,
    project_endurance,
    sample_endurance,
    write_stats,
)


def _snapshots(steps: int, shape: tuple[int, ...], seed: int) -> list[torch.Tensor]:
    """Code snapshots where each weight keeps its code with probability 0.8 (frozen weights are common)."""
    gen = torch.Generator().manual_seed(seed)
    codes = torch.randint(-1, 2, shape, generator=gen, dtype=torch.int8)
    out = [codes.clone()]
    for _ in range(steps):
        move = torch.rand(shape, generator=gen) < 0.2
        codes = torch.where(move, torch.randint(-1, 2, shape, generator=gen, dtype=torch.int8), codes)
        out.append(codes.clone())
    return out


@pytest.mark.parametrize("shape", [(7,), (4, 3, 2, 2)])
def test_writes_per_cell_match_a_brute_force_count(shape):
    snaps = _snapshots(25, shape, seed=3)
    writes = None
    for prev, new in zip(snaps, snaps[1:], strict=False):
        writes = count_writes(prev, new, writes)
    assert writes.dtype == torch.int32 and writes.shape == shape
    flat = [s.flatten().tolist() for s in snaps]
    expected = [sum(1 for t in range(1, len(flat)) if flat[t][k] != flat[t - 1][k]) for k in range(len(flat[0]))]
    assert writes.flatten().tolist() == expected
    assert 0 < sum(expected) < 25 * len(expected)  # the snapshots really move, and not at every step


def test_count_writes_errors():
    a = torch.zeros(3, dtype=torch.int8)
    with pytest.raises(ValueError, match="changed shape"):
        count_writes(a, torch.zeros(4, dtype=torch.int8))
    with pytest.raises(ValueError, match="int32"):
        count_writes(a, a, torch.zeros(3, dtype=torch.int64))


def test_write_stats_by_hand():
    writes = torch.tensor([[0, 0, 1, 1, 1], [2, 5, 5, 9, 10]], dtype=torch.int32)
    st = write_stats(writes, percentiles=(10, 50, 90, 99, 100))
    # sorted: 0 0 1 1 1 2 5 5 9 10; nearest rank ceil(q/100 * 10): 1, 5, 9, 10, 10
    assert st.percentiles == {10.0: 0, 50.0: 1, 90.0: 9, 99.0: 10, 100.0: 10}
    assert (st.cells, st.total, st.max, st.mean) == (10, 34, 10, 3.4)
    assert st.to_dict()["percentiles"] == {"p10": 0, "p50": 1, "p90": 9, "p99": 10, "p100": 10}


def test_write_stats_agree_with_numpy_inverted_cdf():
    gen = torch.Generator().manual_seed(0)
    writes = torch.poisson(torch.full((3001,), 4.0), generator=gen).to(torch.int32)
    qs = (1.0, 25.0, 50.0, 90.0, 99.0, 99.9)
    st = write_stats(writes, qs)
    for q in qs:
        assert st.percentiles[q] == int(np.percentile(writes.numpy(), q, method="inverted_cdf")), q
    assert st.max == int(writes.max())


def test_write_stats_errors():
    with pytest.raises(ValueError, match="empty"):
        write_stats(torch.zeros(0, dtype=torch.int32))
    with pytest.raises(ValueError, match=r"\(0, 100\]"):
        write_stats(torch.zeros(3, dtype=torch.int32), (0.0,))


def test_projection_by_hand():
    writes = torch.tensor([[0, 3], [6, 2]], dtype=torch.int32)
    # one limit: the busiest cell writes 6 / 2 = 3 per epoch and reaches 30 writes at epoch 10
    p = project_endurance(writes, epochs_elapsed=2, endurance=30)
    assert p.max_writes == 6 and p.max_writes_per_epoch == 3.0
    assert p.epochs_to_first_failure == pytest.approx(10.0) and p.remaining_epochs == pytest.approx(8.0)
    assert p.worn_out_cells == 0
    # per-cell limits: cell (0,1) 9 * 2 / 3 = 6, cell (1,0) 60 * 2 / 6 = 20, cell (1,1) 4 * 2 / 2 = 4 -> 4
    p = project_endurance(writes, 2, torch.tensor([[100.0, 9.0], [60.0, 4.0]]))
    assert p.epochs_to_first_failure == pytest.approx(4.0)
    # a limit of 3 writes: the cells with 3 and 6 writes are already worn out
    p = project_endurance(writes, 2, 3)
    assert p.worn_out_cells == 2 and p.epochs_to_first_failure == pytest.approx(1.0)
    assert p.remaining_epochs == pytest.approx(-1.0)
    # nothing written: no failure at this rate
    p = project_endurance(torch.zeros(5, dtype=torch.int32), 1.5, 10)
    assert p.epochs_to_first_failure is None and p.remaining_epochs is None and p.max_writes == 0


def test_projection_errors():
    w = torch.ones(2, dtype=torch.int32)
    with pytest.raises(ValueError, match="epochs_elapsed"):
        project_endurance(w, 0, 10)
    with pytest.raises(ValueError, match="shape"):
        project_endurance(w, 1, torch.ones(3))
    with pytest.raises(ValueError, match="positive"):
        project_endurance(w, 1, -1.0)


def test_sample_endurance():
    fixed = sample_endurance(NonIdealities(endurance_cycles=1e6), (4, 5))
    assert fixed.dtype == torch.float64 and bool((fixed == 1e6).all())
    gen = torch.Generator().manual_seed(1)
    spread = sample_endurance(NonIdealities(endurance_cycles=1e6, endurance_sigma=0.5), (200_000,), gen)
    logs = torch.log(spread)
    # ln N ~ N(ln 1e6, 0.5): the sample mean is within 5 standard errors, the std within 2 %
    assert abs(float(logs.mean()) - math.log(1e6)) < 5 * 0.5 / math.sqrt(200_000)
    assert float(logs.std()) == pytest.approx(0.5, rel=0.02)
    with pytest.raises(ValueError, match="unlimited"):
        sample_endurance(NonIdealities(), (2,))


def test_endurance_report_finds_the_first_layer():
    writes = {"a": torch.tensor([1, 2], dtype=torch.int32), "b": torch.tensor([0, 8], dtype=torch.int32)}
    rep = endurance_report(writes, epochs_elapsed=4, endurance=100)
    assert rep["first_layer"] == "b" and rep["epochs_to_first_failure"] == pytest.approx(100 * 4 / 8)
    assert rep["layers"]["a"]["writes"]["max"] == 2
    assert rep["layers"]["a"]["endurance"]["epochs_to_first_failure"] == pytest.approx(200.0)
