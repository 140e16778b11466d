"""Energy-aware knobs: the write margins and read costs by hand, the pattern choice by brute force, the read penalty
against the AOR meter's own counts, its gradients, and the controller's attach/detach."""

from __future__ import annotations

import doctest
import itertools

import pytest
import torch

from quest_lightning.devices import get_device, pattern_energies
from quest_lightning.energy import aware as aware_module
from quest_lightning.energy.aware import (
    EnergyAware,
    EnergyAwareKnobs,
    choose_pattern,
    read_level_costs,
    weight_read_cost,
    write_margins,
)
from quest_lightning.metrics.functional import level_operation_counts
from quest_lightning.metrics.geometry import LayerGeometry
from quest_lightning.nn import DirectEncoder, QuantLinear, SpikingVGG, layer_recordings, quantized_layers, recording

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest's: tiny models run faster on one thread


def test_doctests():
    assert doctest.testmod(aware_module).failed == 0


def test_write_margins_by_hand():
    pe = pattern_energies(get_device("skmtj7"), bits=2)
    e = pe.write_j[30].tolist()
    top = max(e[0][1], e[1][0], e[1][2], e[2][1])
    table = write_margins(pe.write_j[30], 0.4).tolist()
    for i, j in itertools.product(range(3), range(3)):
        assert table[i][j] == pytest.approx(0.0 if i == j else min(0.4 * e[i][j] / top, 0.95 * abs(i - j) / 2))
    assert max(table[0][1], table[1][0], table[1][2], table[2][1]) == pytest.approx(0.4)
    for p in range(len(pe.patterns)):  # every pattern's table keeps every move possible, at the largest margin
        write_margins(pe.write_j[p], 0.49)
    with pytest.raises(ValueError, match=r"\[L, L\]"):
        write_margins(torch.ones(3), 0.4)
    with pytest.raises(ValueError, match="cost nothing"):
        write_margins(torch.zeros(3, 3), 0.4)
    with pytest.raises(ValueError, match="too large"):
        write_margins(pe.write_j[30], 0.5)


def test_read_costs_by_hand():
    costs = read_level_costs(torch.tensor([2.0, 5.0, 4.0, 9.0, 6.0]), 5).tolist()  # mean of the non-zero: 5.5
    assert costs == pytest.approx([2 / 5.5, 5 / 5.5, 0.0, 9 / 5.5, 6 / 5.5])
    assert read_level_costs(None, 3).tolist() == [1.0, 0.0, 1.0]
    assert read_level_costs(None, 3, count_zero_level_reads=True).tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="3 finite read energies"):
        read_level_costs(torch.tensor([1.0, -1.0, 1.0]), 3)


def test_best_pattern_by_brute_force():
    pe = pattern_energies(get_device("skmtj7"), bits=2)
    write = [sum(pe.write_j[p, i, j].item() for i in range(3) for j in range(3) if abs(i - j) == 1) for p in range(210)]
    read = [pe.read_j[p, 0].item() + pe.read_j[p, 2].item() for p in range(210)]
    assert choose_pattern(pe, "best", by="write") == min(range(210), key=lambda p: (write[p], p))
    assert choose_pattern(pe, "best", by="read") == min(range(210), key=lambda p: (read[p], p))
    into = [pe.write_j[p, 0, 1].item() + pe.write_j[p, 2, 1].item() for p in range(210)]
    out = [pe.write_j[p, 1, 0].item() + pe.write_j[p, 1, 2].item() for p in range(210)]
    allowed = [p for p in range(210) if into[p] < out[p]]
    assert allowed and choose_pattern(pe, "best", by="both") == min(allowed, key=lambda p: (write[p], p))
    assert choose_pattern(pe, 17) == 17
    assert choose_pattern(pe, tuple(pe.patterns.states[42].tolist())) == 42
    with pytest.raises(ValueError, match="out of range"):
        choose_pattern(pe, 210)


def small_model(seed=0):
    torch.manual_seed(seed)
    return SpikingVGG([6, "P", 8], [10], in_channels=1, image_size=6, bits=2, threshold=0.2)


@pytest.mark.parametrize("weighted", [False, True])
def test_the_read_penalty_is_the_counted_read_cost(weighted):
    """Forward value: sum over quantized layers of N(v) c[v] (the AOR meter's exact per-level counts) per sample,
    over the layers' MACs x T; unweighted it is the AOR of the quantized layers together."""
    model = small_model()
    knobs = EnergyAwareKnobs(read_weight=2.0, read_weighted=weighted)
    aware = EnergyAware(model, knobs, device="skmtj7").attach()
    x = DirectEncoder(3)(torch.rand(4, 1, 6, 6))
    with recording(model):
        model(x)
    records = layer_recordings(model)
    cost = dense = 0.0
    for name, layer in quantized_layers(model):
        n = level_operation_counts(LayerGeometry.of(layer), records[name].input_counts, layer.codes, layer.qmax)
        c = aware.read_costs(layer.num_levels)
        cost += float((n * c).sum()) / 4
        dense += LayerGeometry.of(layer).ops(tuple(records[name].input_counts.shape)) * 3
    penalty = aware.penalty()
    assert float(aware.last_ratio) == pytest.approx(cost / dense, rel=1e-6)
    assert float(penalty.detach()) == pytest.approx(2.0 * cost / dense, rel=1e-6)
    if not weighted:
        assert all(v in (0.0, 1.0) for v in aware.read_costs(3).tolist())


def test_the_read_penalty_gradient_lowers_the_reads():
    """Descending the penalty alone lowers it: through the spikes (fewer) and the weights (towards zero)."""
    model = small_model(1)
    aware = EnergyAware(model, EnergyAwareKnobs(read_weight=1.0, read_weighted=False)).attach()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    x = DirectEncoder(3)(torch.rand(8, 1, 6, 6) * 2)
    ratios = []
    for _ in range(8):
        opt.zero_grad()
        model(x)
        aware.penalty().backward()
        ratios.append(float(aware.last_ratio))
        opt.step()
    assert ratios[0] > 0 and ratios[-1] < 0.7 * ratios[0]
    assert model.features[0].layer.weight.grad.abs().sum() > 0  # the first layer is reached only through spikes


def test_weight_read_cost_values_and_slopes():
    layer = QuantLinear(4, 1, bits=3, transform="identity")
    with torch.no_grad():
        layer.alpha.fill_(1.0)
        layer.weight.copy_(torch.tensor([[0.1, 0.45, -0.2, 0.9]]))  # u = 0.3, 1.35, -0.6, 2.7 (Q = 3)
    layer.quantized_weight()
    costs = torch.tensor([3.0, 2.0, 1.0, 0.0, 1.5, 2.5, 4.0], dtype=torch.float64)
    rho = weight_read_cost(layer, costs)
    assert rho.tolist()[0] == pytest.approx([0.0, 1.5, 1.0, 4.0])  # c[code]: codes 0, 1, -1, 3
    rho.sum().backward()
    # slope c[floor(u) + 1] - c[floor(u)] times du/dw = Q / alpha = 3
    assert layer.weight.grad.tolist()[0] == pytest.approx([1.5 * 3, 1.0 * 3, -1.0 * 3, 1.5 * 3])


def test_attach_and_detach():
    model = small_model()
    layers = quantized_layers(model)
    aware = EnergyAware(model, EnergyAwareKnobs(write_margin=0.3, read_weight=0.1), device="skmtj7")
    assert aware.pattern_index == choose_pattern(aware.energies, "best", by="both")  # both knobs are on
    aware.attach().attach()  # idempotent
    table = write_margins(aware.energies.write_j[aware.pattern_index], 0.3)
    assert all(torch.equal(layer.hysteresis, table) for _, layer in layers)
    assert len(aware._hooks) == len(layers)
    model.eval()
    model(DirectEncoder(2)(torch.rand(2, 1, 6, 6)))
    assert float(aware.penalty()) == 0.0 and aware.last_ratio is None  # nothing gathered outside training
    record = aware.record()
    assert record["energy_aware"] and record["device"] == "skmtj7" and record["write_margins"] == table.tolist()
    assert record["pattern"] == aware.energies.patterns[aware.pattern_index].label
    aware.detach()
    assert all(layer.hysteresis is None and "held_codes" not in layer._buffers for _, layer in layers)
    assert not aware._hooks


def test_unweighted_knobs_need_no_device_and_bad_knobs_are_refused():
    aware = EnergyAware(small_model(), EnergyAwareKnobs(write_margin=0.2, write_weighted=False))
    assert aware.energies is None and aware.margin(quantized_layers(aware.model)[0][1]) == 0.2
    assert not EnergyAwareKnobs().on and EnergyAwareKnobs(read_weight=0.1).on
    bad = (dict(write_margin=-1), dict(write_margin=0.5), dict(read_weight=float("inf")), dict(pattern="worst"))
    for kwargs in (*bad, dict(pattern=-2)):
        with pytest.raises(ValueError):
            EnergyAwareKnobs(**kwargs)
    with pytest.raises(ValueError, match="quantized layers"):
        EnergyAware(SpikingVGG([4], [], in_channels=1, image_size=4, quantize=False), EnergyAwareKnobs(read_weight=1))
