"""Device write/read energy per sample: a hand-worked 3-state example, vectorisation, and input checks."""

from __future__ import annotations

import pytest
import torch
from toy_device import TOY

from quest_lightning.devices import get_device, pattern_energies
from quest_lightning.energy import (
    read_energy_per_sample,
    read_energy_report,
    write_energy_per_sample,
    write_energy_report,
)

# TOY (tests/toy_device.py): shortest paths D = [[0, 1, 2], [3, 0, 1.5], [3, 4, 0]] pJ; reads 100, 50, 25 fJ.
PE = pattern_energies(TOY, bits=2)  # patterns: (0,1,2) (0,2,1) (1,0,2) (1,2,0) (2,0,1) (2,1,0)
PJ, FJ = 1e-12, 1e-15

# Layer "a": level->level counts over 2 steps of batch 10 (levels -1, 0, +1).
C_A = torch.tensor([[50.0, 3, 1], [5, 100, 2], [0, 4, 60]])
# cost = 3*D[p0,p1] + 1*D[p0,p2] + 5*D[p1,p0] + 2*D[p1,p2] + 4*D[p2,p1]   (pJ, summed over the 2 steps)
#   (0,1,2): 3*1   + 1*2   + 5*3 + 2*1.5 + 4*4   = 39
#   (0,2,1): 3*2   + 1*1   + 5*3 + 2*4   + 4*1.5 = 36
#   (1,0,2): 3*3   + 1*1.5 + 5*1 + 2*2   + 4*3   = 31.5
#   (1,2,0): 3*1.5 + 1*3   + 5*4 + 2*3   + 4*2   = 41.5
#   (2,0,1): 3*3   + 1*4   + 5*2 + 2*1   + 4*3   = 37
#   (2,1,0): 3*4   + 1*3   + 5*1.5 + 2*3 + 4*1   = 32.5
# per sample: / (2 steps of 10 samples = 20 samples seen)
WRITE_A_PJ = [1.95, 1.8, 1.575, 2.075, 1.85, 1.625]
# Layer "b": only 0 -> +1, 20 times: 20 * D[p1, p2] / 20 = D[p1, p2]
C_B = torch.tensor([[0.0, 0, 0], [0, 0, 20], [0, 0, 0]])
WRITE_B_PJ = [1.5, 4.0, 2.0, 3.0, 1.0, 3.0]

# Reads over 5 samples: 10 ops at level -1, 1000 at level 0, 30 at level +1.
N = torch.tensor([10.0, 1000, 30])
# without zero-level reads: (10 * E_r[p0] + 30 * E_r[p2]) / 5   (fJ)
READ_PJ_NO_ZERO = [350 * 1e-3, 500 * 1e-3, 250 * 1e-3, 700 * 1e-3, 350 * 1e-3, 650 * 1e-3]
# with them: + 1000 * E_r[p1] / 5
READ_PJ_ZERO = [10.35, 5.5, 20.25, 5.7, 20.35, 10.65]


def test_write_energy_single_layer_by_hand():
    e = write_energy_per_sample(C_A, PE.write_j, samples=2 * 10)
    assert e.dtype == torch.float64 and e.shape == (6,)
    assert e.tolist() == pytest.approx([x * PJ for x in WRITE_A_PJ], rel=1e-12)


def test_write_report_per_layer_and_total():
    rep = write_energy_report({"a": C_A, "b": C_B}, PE, samples=2 * 10, steps=2)
    assert rep.kind == "write" and dict(rep.normalisation) == {"steps": 2, "samples": 20}
    a, b, total = rep.per_layer["a"], rep.per_layer["b"], rep.total
    assert a.per_pattern_j.tolist() == pytest.approx([x * PJ for x in WRITE_A_PJ], rel=1e-12)
    assert b.per_pattern_j.tolist() == pytest.approx([x * PJ for x in WRITE_B_PJ], rel=1e-12)
    assert total.per_pattern_j.tolist() == pytest.approx(
        [(x + y) * PJ for x, y in zip(WRITE_A_PJ, WRITE_B_PJ, strict=True)], rel=1e-12
    )
    assert (a.best_index, a.best_mapping, a.best_label) == (2, (1, 0, 2), "-1→R1, 0→R0, +1→R2")
    assert a.best_j == pytest.approx(1.575 * PJ) and a.worst_j == pytest.approx(2.075 * PJ)
    assert (b.best_index, b.best_mapping) == (4, (2, 0, 1))
    assert (total.best_index, total.scope) == (4, "total")  # 2.85 pJ
    assert rep.best_per_layer == {"a": 2, "b": 4} and not rep.same_best_everywhere
    assert a.ranking() == [2, 5, 1, 4, 0, 3]
    assert a.energy_of((1, 2, 0)) == pytest.approx(2.075 * PJ)
    d = rep.to_dict()
    assert d["device"] == "toy3" and d["per_layer"]["a"]["best_mapping"] == [1, 0, 2]


def test_diagonal_counts_cost_nothing():
    frozen = torch.diag(torch.tensor([1e6, 1e6, 1e6]))
    assert torch.all(write_energy_per_sample(frozen, PE.write_j, 1) == 0)


def test_read_energy_by_hand_and_zero_level_option():
    rep = read_energy_report({"a": N}, PE, samples=5)
    assert rep.count_zero_level_reads is False
    assert rep.per_layer["a"].per_pattern_j.tolist() == pytest.approx([x * PJ for x in READ_PJ_NO_ZERO], rel=1e-12)
    assert rep.total.best_index == 2  # zero on R0 is free when zeros are not read; +-1 on cheap R1/R2
    rep0 = read_energy_report({"a": N}, PE, samples=5, count_zero_level_reads=True)
    assert rep0.count_zero_level_reads is True
    assert rep0.total.per_pattern_j.tolist() == pytest.approx([x * PJ for x in READ_PJ_ZERO], rel=1e-12)
    assert rep0.total.best_index == 1  # now zero belongs on the cheapest-to-read state R2
    single = read_energy_per_sample(N, PE.read_j, samples=5)
    assert torch.equal(single, rep.per_layer["a"].per_pattern_j)
    assert N.tolist() == [10.0, 1000.0, 30.0]  # the input is not modified


def test_vectorised_matches_loop_on_3bit_skmtj():
    pe = pattern_energies(get_device("skmtj7"), bits=3)
    gen = torch.Generator().manual_seed(0)
    c = torch.randint(0, 50, (7, 7), generator=gen).double()
    e = write_energy_per_sample(c, pe.write_j, samples=3 * 4)
    for p in (0, 1234, 5039):
        loop = sum(float(c[i, j]) * float(pe.write_j[p, i, j]) for i in range(7) for j in range(7) if i != j) / (3 * 4)
        assert float(e[p]) == pytest.approx(loop, rel=1e-12)
    n = torch.randint(0, 100, (7,), generator=gen).double()
    r = read_energy_per_sample(n, pe.read_j, samples=2)
    for p in (0, 777, 5039):
        loop = sum(float(n[v]) * float(pe.read_j[p, v]) for v in range(7) if v != 3) / 2
        assert float(r[p]) == pytest.approx(loop, rel=1e-12)


def test_integer_counts_and_batched_layers_are_accepted():
    stacked = torch.stack([C_A, C_B]).long()
    e = write_energy_per_sample(stacked, PE.write_j, samples=2 * 10)
    assert e.shape == (2, 6)
    assert e[1].tolist() == pytest.approx([x * PJ for x in WRITE_B_PJ], rel=1e-12)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: write_energy_per_sample(torch.zeros(2, 2), PE.write_j, 1), "shape"),
        (lambda: write_energy_per_sample(-C_A, PE.write_j, 1), ">= 0"),
        (lambda: write_energy_per_sample(C_A, PE.write_j, 0), "samples=0"),
        (lambda: write_energy_per_sample(C_A, PE.write_j, 2.5), "samples=2.5"),
        (lambda: read_energy_per_sample(N, PE.read_j, samples=0), "samples=0"),
        (lambda: write_energy_report({}, PE, samples=1), "non-empty"),
        (lambda: write_energy_report({"total": C_A}, PE, samples=1), "reserved"),
        (lambda: write_energy_report({"a": torch.stack([C_A, C_A])}, PE, samples=1), "shape"),
        (lambda: read_energy_report({"a": torch.ones(7)}, PE, samples=1), "shape"),
    ],
)
def test_bad_inputs(call, match):
    with pytest.raises(ValueError, match=match):
        call()
