"""NeuroBench-named metrics: our exact counts against NeuroBench's own metric code on the same model and inputs
(skipped where neurobench is not installed), and against hand counts."""

import math
from types import SimpleNamespace

import pytest
import torch
from deploy_helpers import T

from quest_lightning.deploy.graph import model_spikes
from quest_lightning.deploy.neurobench import (
    activation_sparsity_from_counts,
    connection_sparsity,
    footprint,
    layer_synaptic_operations,
    neurobench_metrics,
    neurobench_view,
    synaptic_operations,
)
from quest_lightning.nn import DirectEncoder, QuantConv2d, QuantLinear, quantized_layers


def test_counts_equal_neurobench(trained_digits):
    pytest.importorskip("neurobench")
    from neurobench.hooks.layer import LayerHook
    from neurobench.metrics.static import ConnectionSparsity, Footprint
    from neurobench.metrics.workload import ActivationSparsity, SynapticOperations
    from neurobench.models import TorchModel

    model, x, y = trained_digits
    x, y = x[:100], y[:100]
    x_seq = DirectEncoder(T)(x)
    ours = neurobench_metrics(model, x_seq)

    view = neurobench_view(model)
    out_view, spikes_view = model_spikes(view, x_seq)
    out, _ = model_spikes(model, x_seq)
    assert torch.equal(out_view, out)  # the view spikes exactly like the model
    nb_model = TorchModel(view)
    nb_model.connection_hooks = [LayerHook(layer) for layer in nb_model.connection_layers()]
    assert len(nb_model.connection_hooks) == 4
    with torch.no_grad():
        preds = view(x_seq)
    synops = SynapticOperations()(nb_model, preds, (x, y))
    assert synops["Effective_MACs"] == ours.synaptic_operations.effective_macs
    assert synops["Effective_ACs"] == ours.synaptic_operations.effective_acs
    assert synops["Dense"] == ours.synaptic_operations.dense
    assert synops["Effective_ACs"] > 0 and synops["Effective_MACs"] > 0

    # NeuroBench reads neuron outputs through hooks; give it the spikes the view's neurons emitted
    hooks = [SimpleNamespace(activation_outputs=[s]) for s in spikes_view.values()]
    assert ActivationSparsity()(SimpleNamespace(activation_hooks=hooks), preds, (x, y)) == ours.activation_sparsity
    assert ConnectionSparsity()(nb_model) == round(ours.connection_sparsity, 4)
    assert Footprint()(TorchModel(model)) == ours.footprint.neurobench_bytes


def test_synaptic_operations_by_hand():
    """A 2x2 kernel over a 3x3 input with padding 1: NeuroBench's counts written out by hand."""
    layer = QuantConv2d(1, 2, 2, padding=1, bits=2, transform="identity")
    with torch.no_grad():
        layer.alpha.fill_(1.0)
        layer.weight.copy_(torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]], [[[1.0, 1.0], [1.0, 1.0]]]]))  # 6 non-zero
    x = torch.tensor([[[[1.0, 0, 0], [0, 1, 0], [0, 0, 0]]]])  # two spikes, one sample, one step
    ops = synaptic_operations(torch.nn.Sequential(layer), x.unsqueeze(0))
    (op,) = ops.layers
    # each input spike meets every weight of every output channel once (4 positions x 2 channels = 8 products),
    # of which 6 weights are non-zero: 2 spikes x 6 = 12
    assert op.spiking and op.effective == 12
    # all-ones input: output positions 4x4, in-bounds taps 1 (corners), 2 (edges) or 4 (inside), times 2 channels
    taps = 4 * 1 + 8 * 2 + 4 * 4
    assert op.dense == 2 * taps and ops.dense == 2 * taps
    assert ops.effective_acs == 12 and ops.effective_macs == 0
    analog = synaptic_operations(torch.nn.Sequential(layer), (x * 0.5).unsqueeze(0))
    assert analog.effective_macs == 12 and analog.effective_acs == 0


def test_recorded_counts_give_the_same_operations(trained_digits):
    """The training-time route: a recording layer's input_counts are the spike counts, so they give the same
    Effective_ACs as the forward-pass hooks."""
    from quest_lightning.nn import recording, reset_recording

    model, x, _ = trained_digits
    x_seq = DirectEncoder(T)(x[:64])
    hooks = synaptic_operations(model, x_seq)
    reset_recording(model)
    with recording(model), torch.no_grad():
        model(x_seq)
    layers = dict(quantized_layers(model))
    for op in hooks.layers:
        if op.spiking and op.name in layers:
            layer = layers[op.name]
            again = layer_synaptic_operations(layer, layer.input_counts, int(layer.recorded_rows), spiking=True)
            assert again.effective == op.effective and again.dense == op.dense
    reset_recording(model)


def test_sparsity_and_footprint_by_hand():
    net = torch.nn.Sequential(QuantLinear(4, 3, bits=3), QuantLinear(3, 2, bias=True, enabled=False))
    with torch.no_grad():
        net[0].alpha.fill_(1.0)
        net[0].weight.copy_(torch.tensor([[0.0, 0.05, 0.9, -0.9]] * 3))  # codes 0, 0, 3|2, -3|-2: 6 zeros of 12
        net[1].weight.copy_(torch.tensor([[0.0, 1.0, 2.0], [3.0, 0.0, 0.0]]))  # 3 zeros of 6
    assert connection_sparsity(net) == (6 + 3) / 18
    fp = footprint(net)
    # 12 codes at 3 bits = 36 bits -> 5 bytes, + alpha 4; 6 float weights + 2 biases = 32 bytes
    assert fp.per_layer == {"0": 5 + 4, "1": 32}
    # NeuroBench: every parameter in float32: 12 + 1 alpha, 6 + 2 bias + 1 alpha
    assert fp.neurobench_bytes == 4 * (13 + 9)
    assert activation_sparsity_from_counts(25, 100) == 0.75
    with pytest.raises(ValueError, match="undefined"):
        activation_sparsity_from_counts(0, 0)


def test_metrics_to_dict_speaks_neurobench(trained_digits):
    model, x, _ = trained_digits
    d = neurobench_metrics(model, DirectEncoder(T)(x[:8])).to_dict()
    assert set(d) >= {"SynapticOperations", "ActivationSparsity", "ConnectionSparsity", "Footprint", "definition"}
    assert set(d["SynapticOperations"]) >= {"Effective_MACs", "Effective_ACs", "Dense"}
    assert "NeuroBench" in d["definition"]
    dense = d["SynapticOperations"]["Dense"]
    layer = model.features[0].layer  # first layer: 8x8 input, 3x3 kernel, padding 1, 1 -> 16 channels, T rows
    taps = sum(
        (min(i + 1, 7) - max(i - 1, 0) + 1) * (min(j + 1, 7) - max(j - 1, 0) + 1) for i in range(8) for j in range(8)
    )
    assert d["SynapticOperations"]["per_layer"][0]["dense_per_sample"] == T * taps * layer.out_channels
    assert dense > 0 and math.isfinite(dense)
