"""SpikingJelly's energy profilers on quest-lightning networks: on the quest model and on its plain SpikingJelly twin
with the same weights, against each other and against our own counts and CMOS energies."""

import pytest
import torch
from deploy_helpers import T, train
from spikingjelly.activation_based import functional
from spikingjelly.activation_based import layer as sj_layer
from spikingjelly.activation_based.op_counter import (
    SimpleEnergyCostConfig,
    estimate_simple_energy,
    estimate_spikesim_energy,
)
from spikingjelly.activation_based.op_counter.spikesim import SpikeSimEnergyConfig
from torch import nn

from quest_lightning.deploy.graph import model_spikes
from quest_lightning.deploy.spikingjelly import spikesim_periphery, spikingjelly_energy, to_spikingjelly
from quest_lightning.energy.cmos import diet_snn_energy, get_cmos
from quest_lightning.metrics.functional import weight_input_sums
from quest_lightning.metrics.geometry import LayerGeometry, ann_ops
from quest_lightning.nn import DirectEncoder, QuantConv2d, QuantIFNode, QuantLinear, recording, reset_recording


def _weight_quantized_net() -> nn.Sequential:
    """Ternary weights, full-precision membranes (the neurons share no scale): SpikingJelly's IFNode is this neuron
    exactly, so the plain twin must spike like it."""
    return nn.Sequential(
        QuantConv2d(1, 8, 3, padding=1, bits=2, enabled=False),
        QuantIFNode(0.5, 0.0, "triangle", step_mode="m"),
        sj_layer.MaxPool2d(2, step_mode="m"),
        QuantConv2d(8, 16, 3, padding=1, bits=2),
        QuantIFNode(0.5, 0.0, "triangle", step_mode="m"),
        sj_layer.MaxPool2d(2, step_mode="m"),
        sj_layer.Flatten(start_dim=1, step_mode="m"),
        QuantLinear(64, 32, bits=2),
        QuantIFNode(0.5, 0.0, "triangle", step_mode="m"),
        QuantLinear(32, 10, enabled=False),
    )


@pytest.fixture(scope="module")
def weight_quantized(digits_data):
    x_train, y_train, x_test, _ = digits_data
    torch.manual_seed(0)
    net = _weight_quantized_net()
    train(net, x_train[:600], y_train[:600], epochs=1)
    return net, DirectEncoder(T)(x_test[:48]).contiguous()


def _reports(view_a, view_b, x, profile):
    out = []
    for v in (view_a, view_b):
        functional.reset_net(v)
        out.append(profile(v, x))
    return out


def test_quest_view_and_plain_twin_give_the_same_figures(weight_quantized):
    net, x = weight_quantized
    quest, plain = to_spikingjelly(net, neurons="quest"), to_spikingjelly(net, neurons="plain")
    with torch.no_grad():
        outs = []
        for v in (net, quest, plain):
            functional.reset_net(v)
            outs.append(v(x))
        assert torch.equal(outs[1], outs[0]) and torch.equal(outs[2], outs[0])  # same spikes, same readout
    ours, twin = _reports(quest, plain, x, estimate_simple_energy)
    for key in ("mac", "synop", "weight_read_bytes", "bias_read_bytes", "neuron_state_read_bytes"):
        assert ours.counts[key] == twin.counts[key], key
    assert ours.counts["synop"] > 0 and ours.counts["mac"] > 0
    # the element-wise adds inside the neuron update differ: SpikingJelly counts each add of its IFNode's step as an
    # AC; the synaptic ACs (the SynOps) are the same
    assert ours.counts["ac"] - ours.counts["synop"] > 0 and twin.counts["ac"] - twin.counts["synop"] > 0
    config = SpikeSimEnergyConfig(activity_mode="event")
    ours, twin = _reports(quest, plain, x, lambda v, x: estimate_spikesim_energy(v, x, config=config))
    assert ours.energy_by_stage == twin.energy_by_stage and ours.energy_total_pj > 0


def test_spikingjelly_counts_equal_ours_and_our_cmos_energies(weight_quantized):
    """SpikingJelly's SynOps are input spikes × fan-out (zero weights included), our weight_input_sums; its MACs are
    the first layer's ANN operations for every step. With the Horowitz FP32 constants (4.6 / 0.9 pJ, ours and
    SpikingJelly's) the dense layers' AC energy is our DIET-SNN energy exactly, the first layer T times ours."""
    net, x = weight_quantized
    b = x.shape[1]
    report = spikingjelly_energy(net, x)
    reset_recording(net)
    functional.reset_net(net)
    with recording(net), torch.no_grad():
        net(x)
    layers = [m for m in net if isinstance(m, QuantConv2d | QuantLinear)]
    synops = sum(float(weight_input_sums(LayerGeometry.of(m), m.input_counts).sum()) for m in layers[1:])
    assert report.counts["synop"] == synops
    shapes = [(1, 8, 8), (8, 4, 4), (64,), (32,)]
    ops = [ann_ops(LayerGeometry.of(m), s) for m, s in zip(layers, shapes, strict=True)]
    assert report.counts["mac"] == T * b * ops[0]
    # DIET-SNN rates: input spikes per input neuron per sample, summed over T
    rates = [None] + [float(m.input_counts.sum()) / (m.input_counts.numel() * b) for m in layers[1:]]
    diet = diet_snn_energy(ops, rates, "45nm_fp32")
    cost = SimpleEnergyCostConfig.fp32()
    assert (
        get_cmos("45nm_fp32").e_ac_j == cost.e_ac_pj * 1e-12 and get_cmos("45nm_fp32").e_mac_j == cost.e_mac_pj * 1e-12
    )
    dense_events = sum(float(weight_input_sums(LayerGeometry.of(m), m.input_counts).sum()) for m in layers[2:])
    dense_sj = dense_events * cost.e_ac_pj * 1e-12 / b
    assert dense_sj == pytest.approx(sum(diet.per_layer_j[2:]), rel=1e-12)  # no borders in dense layers
    assert report.energy_mac_pj * 1e-12 / b == pytest.approx(T * diet.per_layer_j[0], rel=1e-12)
    reset_recording(net)


def test_view_spikes_like_the_trained_quest_model(trained_digits):
    model, x, _ = trained_digits
    x_seq = DirectEncoder(T)(x[:64])
    view = to_spikingjelly(model)
    out, _ = model_spikes(model, x_seq)
    with torch.no_grad():
        assert torch.equal(view(x_seq.contiguous()), out)
    periphery = spikesim_periphery(model, x_seq)
    assert periphery.samples == 64 and periphery.per_sample_j > 0
    assert sum(periphery.by_stage_j.values()) == pytest.approx(periphery.per_sample_j)
    assert set(periphery.to_dict()) >= {"per_sample_j", "by_stage_j", "config", "source", "scope"}


def test_spikesim_runs_on_the_quest_model_itself(trained_digits):
    """SpikeSim counts aten convolutions, so it needs no adapter: on the quest model and on its SpikingJelly view it
    prices the same stages the same (a contiguous input makes the first layer compute every step in both)."""
    model, x, _ = trained_digits
    x_seq = DirectEncoder(T)(x[:32]).contiguous()
    config = SpikeSimEnergyConfig(activity_mode="event")
    direct = estimate_spikesim_energy(model.eval(), x_seq, config=config, strict=False)
    view = spikingjelly_energy(model, x_seq, profiler="spikesim", config=config)
    assert sorted(direct.energy_by_stage.values()) == pytest.approx(sorted(view.energy_by_stage.values()))


def test_simple_energy_runs_on_the_quest_model_itself(weight_quantized):
    net, x = weight_quantized
    functional.reset_net(net)
    report = estimate_simple_energy(net, x)
    view = spikingjelly_energy(net, x)
    assert report.counts["synop"] == view.counts["synop"] and report.counts["mac"] == view.counts["mac"]
    assert report.counts["weight_read_bytes"] == view.counts["weight_read_bytes"]
