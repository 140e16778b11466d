"""CMOS references: Horowitz constants (cross-checked with SpikingJelly), a hand-worked comparison, conventions."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from quest_lightning.energy import (
    CMOSEnergy,
    ann_energy,
    compare_energy,
    diet_snn_energy,
    get_cmos,
    list_cmos,
    quest_energy,
    snn_energy,
)

sj_energy = pytest.importorskip("spikingjelly.activation_based.op_counter.simple_energy")

PJ = 1e-12
OPS = [1000.0, 2000.0, 500.0]  # ANN MACs per sample of a 3-layer toy network
DIET_RATES = [None, 0.5, 0.2]  # spike rate of each layer's input, summed over T
AOR = [None, 0.025, 0.0125]  # per time step; with T = 4 the ops multipliers are 0.1 and 0.05


@pytest.mark.parametrize(
    ("name", "sj_preset", "mac_pj", "ac_pj"),
    [("45nm_fp32", "fp32", 4.6, 0.9), ("45nm_fp16", "fp16", 1.5, 0.4), ("45nm_int8", "int8", 0.23, 0.03)],
)
def test_presets_match_horowitz_and_spikingjelly(name, sj_preset, mac_pj, ac_pj):
    c = get_cmos(name)
    assert c.e_mac_j == pytest.approx(mac_pj * PJ, rel=1e-12) and c.e_ac_j == pytest.approx(ac_pj * PJ, rel=1e-12)
    sj = getattr(sj_energy.SimpleEnergyCostConfig, sj_preset)()
    assert c.e_mac_j == pytest.approx(sj.e_mac_pj * PJ, rel=1e-12)
    assert c.e_ac_j == pytest.approx(sj.e_ac_pj * PJ, rel=1e-12)
    assert "Horowitz" in c.source and "ISSCC 2014" in c.source
    assert name in list_cmos() and get_cmos(c) is c


def test_hand_worked_comparison_first_layer_mac():
    ann = ann_energy(OPS)
    assert ann.total_j == pytest.approx(3500 * 4.6 * PJ)  # 16100 pJ
    diet = diet_snn_energy(OPS, DIET_RATES)
    # 1000 MACs * 4.6 + (0.5 * 2000 + 0.2 * 500) ACs * 0.9 = 4600 + 990 = 5590 pJ
    assert diet.per_layer_j == pytest.approx((4600 * PJ, 900 * PJ, 90 * PJ))
    assert diet.total_j == pytest.approx(5590 * PJ)
    assert diet.charged_ops == pytest.approx((1000, 1000, 100))
    quest = quest_energy(OPS, AOR, timesteps=4)
    # 4600 + (0.1 * 2000 + 0.05 * 500) * 0.9 = 4600 + 202.5 = 4802.5 pJ
    assert quest.total_j == pytest.approx(4802.5 * PJ)
    for rep in (diet, quest):
        assert rep.first_layer == "mac" and "1000 MACs at E_MAC" in rep.convention
    cmp = compare_energy(ann, diet, quest)
    assert cmp.ratios["ann/diet-snn"] == pytest.approx(16100 / 5590)
    assert cmp.ratios["ann/quest"] == pytest.approx(16100 / 4802.5)
    assert cmp.ratios["diet-snn/quest"] == pytest.approx(5590 / 4802.5)
    assert quest.ann_over_this == pytest.approx(16100 / 4802.5) and ann.ann_over_this == 1.0
    assert cmp.to_dict()["reports"]["quest"]["first_layer"] == "mac"


def test_hand_worked_first_layer_reads():
    quest = quest_energy(OPS, AOR, timesteps=4, first_layer="reads", first_layer_reads=300)
    # 300 reads * 0.9 + 202.5 = 472.5 pJ
    assert quest.first_layer == "reads" and "300 reads at E_AC" in quest.convention
    assert quest.total_j == pytest.approx(472.5 * PJ)
    assert quest.ann_over_this == pytest.approx(16100 / 472.5)  # ~34x instead of ~3.4x
    # the same read count from a rate: 0.3 * 1000
    by_rate = snn_energy(OPS, [0.3, 0.1, 0.05], first_layer="reads")
    assert by_rate.total_j == pytest.approx(472.5 * PJ)
    # a different CMOS preset scales every term
    int8 = snn_energy(OPS, [0.3, 0.1, 0.05], "45nm_int8", first_layer="reads")
    assert int8.total_j == pytest.approx(525 * 0.03 * PJ)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: snn_energy(OPS, [None, 0.1]), "one rate per layer"),
        (lambda: snn_energy(OPS, [None, 0.1, -0.1]), r"rates\[2\]"),
        (lambda: snn_energy(OPS, [None, None, 0.1]), r"rates\[1\]"),
        (lambda: snn_energy(OPS, DIET_RATES, first_layer="analog"), "first_layer='analog'"),
        (lambda: snn_energy(OPS, DIET_RATES, first_layer="reads"), "needs first_layer_reads"),
        (lambda: snn_energy(OPS, DIET_RATES, first_layer_reads=10.0), "only used with first_layer='reads'"),
        (lambda: quest_energy(OPS, AOR, timesteps=0), "timesteps=0"),
        (lambda: ann_energy([]), "empty"),
        (lambda: get_cmos("7nm"), "unknown CMOS preset"),
        (lambda: CMOSEnergy("x", -1.0, 1.0, "s"), "e_mac_j"),
        (lambda: compare_energy(ann_energy(OPS), ann_energy(OPS)), "unique"),
        (lambda: compare_energy(ann_energy(OPS), diet_snn_energy([1.0, 2.0], [None, 0.1])), "different networks"),
    ],
)
def test_bad_inputs(call, match):
    with pytest.raises(ValueError, match=match):
        call()


class _Spike(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x > 0).float()


def test_matches_spikingjelly_op_counter_on_a_tiny_snn():
    """Analog input -> Linear (MACs) -> spikes -> Linear (ACs): our first_layer='mac' convention is SJ's count."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 4, bias=False), _Spike(), nn.Linear(4, 3, bias=False))
    x = torch.rand(5, 8)
    with torch.no_grad():
        spikes = model[1](model[0](x))
    sj = sj_energy.estimate_simple_energy(model, x)
    ops = [8 * 4, 4 * 3]
    rate = float(spikes.sum()) / (5 * 4)  # spikes per input neuron per sample
    ours = snn_energy(ops, [None, rate], "45nm_fp32", first_layer="mac")
    assert ours.total_j * 5 == pytest.approx((sj.energy_mac_pj + sj.energy_ac_pj) * PJ, rel=1e-9)
    assert ours.charged_ops[1] * 5 == pytest.approx(sj.counts["ac"])
    ann_model = nn.Sequential(nn.Linear(8, 4, bias=False), nn.ReLU(), nn.Linear(4, 3, bias=False))
    sj_ann = sj_energy.estimate_simple_energy(ann_model, x)
    assert ann_energy(ops).total_j * 5 == pytest.approx(sj_ann.energy_mac_pj * PJ, rel=1e-9)
