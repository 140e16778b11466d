"""The one pricing path: counts → joules per sample over the samples seen, and the CMOS comparison of an epoch."""

from __future__ import annotations

import doctest
import importlib

import pytest
import torch
from toy_device import TOY

from quest_lightning.devices import pattern_energies
from quest_lightning.energy import compare_compute, joules_per_sample, per_sample, read_energy_report
from quest_lightning.summary import ActivityRecord, LayerActivity, NeuronActivity

PE = pattern_energies(TOY, bits=2)  # shortest paths D = [[0, 1, 2], [3, 0, 1.5], [3, 4, 0]] pJ; reads 100, 50, 25 fJ
PJ, FJ = 1e-12, 1e-15


def test_module_example_runs():
    module = importlib.import_module("quest_lightning.energy.price")
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


def test_write_energy_of_a_partial_last_batch_by_hand():
    """Four steps of 8, 8, 8 and 6 samples, one write 0 -> +1 per step (D[p1, p2] each) in layer "a".

    Pattern (0, 1, 2) writes 0 -> +1 as R1 -> R2: 1.5 pJ; 4 writes = 6 pJ over 30 samples = 0.2 pJ per sample. The
    0.1.0 divisor, 4 steps x (30 // 4) = 28, gave 0.2143 pJ (7% high)."""
    c = torch.tensor([[0, 0, 0], [0, 0, 4], [0, 0, 0]])
    rep = joules_per_sample("write", {"a": c}, PE, samples=8 + 8 + 8 + 6, steps=4)
    assert rep.per_layer["a"].energy_of((0, 1, 2)) == pytest.approx(4 * 1.5 * PJ / 30, rel=1e-15)
    assert rep.per_layer["a"].energy_of((0, 1, 2)) == pytest.approx(0.2 * PJ, rel=1e-12)
    assert rep.normalisation == {"steps": 4, "samples": 30}
    # every pattern: 4 x D[p(0), p(+1)] / 30
    d = [[0, 1, 2], [3, 0, 1.5], [3, 4, 0]]
    expected = [4 * d[p[1]][p[2]] * PJ / 30 for p in PE.patterns.states.tolist()]
    assert rep.total.per_pattern_j.tolist() == pytest.approx(expected, rel=1e-12)


def test_read_energy_divides_the_counts_by_the_samples_seen():
    n = torch.tensor([10.0, 1000, 30])  # N(v) over 5 samples; level 0 is not read
    rep = read_energy_report({"a": n}, PE, samples=5)
    # pattern (1, 0, 2): -1 on R1 (50 fJ), +1 on R2 (25 fJ): (10 * 50 + 30 * 25) / 5 = 250 fJ
    assert rep.per_layer["a"].energy_of((1, 0, 2)) == pytest.approx(250 * FJ, rel=1e-12)
    assert rep.normalisation == {"samples": 5} and rep.count_zero_level_reads is False


@pytest.mark.parametrize("samples", [0, -3, 2.5, True])
def test_there_is_no_per_sample_figure_without_samples(samples):
    with pytest.raises(ValueError, match=rf"samples={samples!r} is invalid: expected a positive integer"):
        per_sample(torch.ones(3), samples)
    with pytest.raises(ValueError, match="samples="):
        joules_per_sample("read", {"a": torch.ones(3)}, PE, samples=samples)


def test_unknown_kind_and_empty_counts_are_refused():
    with pytest.raises(ValueError, match=r"kind='erase' is unknown: use 'write' or 'read'"):
        joules_per_sample("erase", {"a": torch.ones(3)}, PE, samples=1)
    with pytest.raises(ValueError, match="non-empty"):
        joules_per_sample("read", {}, PE, samples=1)


def _record(rates, aors, neuron_rate=0.2):
    """An epoch of three layers (analog input, two inner ones) of T = 2 over 4 samples."""
    ops = [100, 400, 50]
    layers = tuple(
        LayerActivity(
            layer=f"l{k}",
            quantized=k > 0,
            input_layer=k == 0,
            bits=2 if k else None,
            ops=ops[k],
            rows=8,
            samples=4,
            level_ops=(0.0, 0.0, 0.0),
            aor=aors[k],
            synaptic_rate=rates[k],
        )
        for k in range(3)
    )
    return ActivityRecord("val", 3, 99, layers, (NeuronActivity("n", neuron_rate, neuron_rate / 2),))


def test_compare_compute_by_hand():
    e_mac, e_ac = 4.6e-12, 0.9e-12
    record = _record(rates=[1.0, 0.25, 0.5], aors=[0.8, 0.1, 0.2])
    c = compare_compute(record, "45nm_fp32", first_layer="mac")
    ann = (100 + 400 + 50) * e_mac
    quest = 100 * e_mac + (0.1 * 2 * 400 + 0.2 * 2 * 50) * e_ac
    diet = 100 * e_mac + (0.25 * 2 * 400 + 0.5 * 2 * 50) * e_ac
    assert (c.ann.total_j, c.quest.total_j, c.diet_snn.total_j) == pytest.approx((ann, quest, diet), rel=1e-12)
    assert c.ann_over_quest == pytest.approx(ann / quest, rel=1e-12) and not c.silent_network
    assert (c.stage, c.epoch, c.timesteps, c.layers) == ("val", 3, 2, ("l0", "l1", "l2"))
    reads = compare_compute(record, "45nm_fp32", first_layer="reads")  # the analog layer read once per sample
    assert reads.quest.per_layer_j[0] == pytest.approx(0.8 * 100 * e_ac, rel=1e-12)
    every = compare_compute(record, "45nm_fp32", first_layer="reads", first_layer_every_step=True)
    assert every.quest.per_layer_j[0] == pytest.approx(0.8 * 100 * 2 * e_ac, rel=1e-12)


def test_a_dead_network_is_flagged_and_an_empty_epoch_is_not_priced():
    dead = compare_compute(_record(rates=[1.0, 0.0, 0.0], aors=[0.8, 0.0, 0.0], neuron_rate=0.0), first_layer="mac")
    assert dead.silent_network and dead.ann_over_quest == pytest.approx(550 / 100, rel=1e-12)  # only layer 1's MACs
    empty = ActivityRecord("val", 1, 5, empty="no forward pass through the network was recorded")
    with pytest.raises(ValueError, match=r"the val record of epoch 1 is empty \(no forward pass.*\): no energy"):
        compare_compute(empty)
