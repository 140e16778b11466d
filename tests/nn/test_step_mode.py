"""The quantized layers declare their step mode the way SpikingJelly's layers do, so that SpikingJelly's tools
(``functional.set_step_mode``, the ``op_counter`` energy profilers) read them right; and ``QuantConv1d``."""

import pytest
import torch
from spikingjelly.activation_based import functional as sj_functional
from spikingjelly.activation_based import layer as sj_layer
from spikingjelly.activation_based import neuron as sj_neuron
from spikingjelly.activation_based import surrogate as sj_surrogate
from spikingjelly.activation_based.op_counter import estimate_simple_energy
from torch import nn

from quest_lightning.nn import QuantConv1d, QuantConv2d, QuantLinear, SpikingVGG


def test_an_undeclared_layer_follows_its_input():
    conv = QuantConv2d(1, 2, 3)
    assert conv.step_mode == "s"
    conv(torch.rand(2, 3, 1, 5, 5))
    assert conv.step_mode == "m"
    conv(torch.rand(3, 1, 5, 5))
    assert conv.step_mode == "s"


@pytest.mark.parametrize(
    ("layer", "wrong", "match"),
    [
        (QuantConv2d(1, 2, 3, step_mode="m"), (3, 1, 5, 5), r"step_mode='m' and expects \[T, B, \.\.\.\] input"),
        (QuantConv2d(1, 2, 3, step_mode="s"), (2, 3, 1, 5, 5), r"step_mode='s' and expects \[B, \.\.\.\] input"),
        (QuantConv1d(1, 2, 3, step_mode="m"), (3, 1, 7), r"QuantConv1d has step_mode='m'"),
    ],
)
def test_a_declared_step_mode_is_checked(layer, wrong, match):
    with pytest.raises(ValueError, match=match):
        layer(torch.rand(wrong))
    assert f"step_mode='{layer.step_mode}'" in repr(layer)


def test_unknown_step_mode():
    with pytest.raises(ValueError, match=r"step_mode='x' is unknown: use 's'.*'m'.*or None"):
        QuantLinear(2, 2, step_mode="x")


def test_set_step_mode_reaches_the_layers():
    net = nn.Sequential(QuantConv2d(1, 2, 3), QuantLinear(2, 2), sj_neuron.IFNode())
    sj_functional.set_step_mode(net, "m")
    assert [m.step_mode for m in net] == ["m", "m", "m"]


@pytest.mark.parametrize("step_mode", ["s", "m", None])
def test_quant_conv1d_is_a_conv1d_when_disabled(step_mode):
    torch.manual_seed(0)
    ref = nn.Conv1d(3, 4, 3, padding=1, bias=True)
    ours = QuantConv1d(3, 4, 3, padding=1, bias=True, enabled=False, step_mode=step_mode)
    ours.load_state_dict(ref.state_dict(), strict=False)
    x = torch.rand(2, 5, 3, 9)  # [T, B, C, L]
    if step_mode == "s":
        assert torch.equal(ours(x[0]), ref(x[0]))
    else:
        assert torch.equal(ours(x), ref(x.flatten(0, 1)).unflatten(0, (2, 5)))
    quantized = QuantConv1d(3, 4, 3, bits=2)
    quantized(x)
    assert set(quantized.codes.unique().tolist()) <= {-1, 0, 1}


def _twin(model: SpikingVGG) -> nn.Sequential:
    """The same network from plain SpikingJelly modules in multi-step mode, with our quantized weights."""

    def copy(new, layer):
        new.weight.data.copy_(layer.quantized_weight().detach())
        return new

    f0, f1 = model.features
    sg = sj_surrogate.PiecewiseQuadratic(alpha=1.0)  # the "triangle"
    return nn.Sequential(
        copy(sj_layer.Conv2d(1, 4, 3, padding=1, bias=False, step_mode="m"), f0.layer),
        sj_neuron.IFNode(0.5, 0.0, sg, step_mode="m"),
        sj_layer.MaxPool2d(2, step_mode="m"),
        copy(sj_layer.Conv2d(4, 4, 3, padding=1, bias=False, step_mode="m"), f1.layer),
        sj_neuron.IFNode(0.5, 0.0, sg, step_mode="m"),
        sj_layer.Flatten(step_mode="m"),
        copy(sj_layer.Linear(64, 8, bias=False, step_mode="m"), model.classifier[0].layer),
        sj_neuron.IFNode(0.5, 0.0, sg, step_mode="m"),
        copy(sj_layer.Linear(8, 3, bias=False, step_mode="m"), model.readout),
    ).eval()


def test_spikingjelly_energy_profiler_runs_on_spiking_vgg():
    """``estimate_simple_energy`` reads the step mode to unfold [T, B, ...] spike inputs; the synaptic figures equal
    those of the plain SpikingJelly twin (same weights, same spikes)."""
    torch.manual_seed(0)
    model = SpikingVGG([4, "P", 4], [8], in_channels=1, image_size=8, num_classes=3)
    model.eval()
    twin = _twin(model)
    x = torch.rand(3, 2, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(model(x), twin(x))
    ours = estimate_simple_energy(model, x)
    sj_functional.reset_net(twin)
    theirs = estimate_simple_energy(twin, x)
    for figure in ("mac", "synop", "weight_read_bytes", "bias_read_bytes"):
        assert ours.counts[figure] == theirs.counts[figure], figure
    assert ours.counts["synop"] > 0 and ours.energy_mac_pj == theirs.energy_mac_pj


def test_a_converted_network_has_the_energy_figures_of_the_original():
    """Converted with quantization off, a SpikingJelly network gives SpikingJelly's profiler every figure of the
    original: the layers declare their step mode and the nodes are SpikingJelly neurons (BaseNode)."""
    import copy

    from quest_lightning.convert import quantize
    from quest_lightning.nn import QuantIFNode

    torch.manual_seed(0)
    net = nn.Sequential(
        sj_layer.Conv2d(1, 4, 3, padding=1, step_mode="m"),
        sj_neuron.IFNode(v_threshold=0.5, step_mode="m"),
        sj_layer.MaxPool2d(2, step_mode="m"),
        sj_layer.Conv2d(4, 4, 3, padding=1, step_mode="m"),
        sj_neuron.LIFNode(v_threshold=0.3, step_mode="m"),
        sj_layer.Flatten(step_mode="m"),
        sj_layer.Linear(64, 3, step_mode="m"),
    ).eval()
    original = copy.deepcopy(net)
    x = torch.rand(3, 2, 1, 8, 8) * 2
    quantize(net, x, enabled=False, verbose=False)
    assert isinstance(net[1], QuantIFNode) and isinstance(net[1], sj_neuron.IFNode)
    reports = []
    for model in (original, net):
        sj_functional.reset_net(model)
        reports.append(estimate_simple_energy(model, x))
    assert reports[0].counts["synop"] > 0 and reports[0].counts["neuron_state_read_bytes"] > 0
    assert reports[1].counts == reports[0].counts
    assert reports[1].energy_total_pj == reports[0].energy_total_pj
