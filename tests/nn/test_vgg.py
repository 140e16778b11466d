"""The spiking VGG builder: the VGG6 structure of METHOD.md §4, the other depths, back-end agreement and options."""

import pytest
import torch
from torch import nn

from quest_lightning.nn import (
    VGG_CONFIGS,
    QuantConv2d,
    QuantIFNode,
    QuantLeaky,
    QuantLIFNode,
    QuantLinear,
    SpikingVGG,
    TimeSharedDropout,
    quantized_layers,
    spiking_neurons,
    spiking_vgg,
    synaptic_layers,
)

SMALL = dict(config=[8, "P", 16, "P"], fc=[32], image_size=8)


def _images(t=3, b=2, size=8, seed=0):
    x = torch.rand(b, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2
    return x.unsqueeze(0).expand(t, *x.shape)  # direct coding


def test_vgg6_structure():
    model = spiking_vgg("vgg6")
    blocks = list(model.features) + list(model.classifier)
    assert len(blocks) == 5 and len(spiking_neurons(model)) == 5
    shapes = [(type(b.layer), getattr(b.layer, "in_channels", getattr(b.layer, "in_features", None))) for b in blocks]
    assert shapes == [(QuantConv2d, 3), (QuantConv2d, 64), (QuantConv2d, 128), (QuantLinear, 8192), (QuantLinear, 4096)]
    convs = [(b.layer.in_channels, b.layer.out_channels, b.layer.kernel_size) for b in model.features]
    assert convs == [(3, 64, (3, 3)), (64, 128, (3, 3)), (128, 128, (3, 3))]
    fcs = [(b.layer.in_features, b.layer.out_features) for b in model.classifier]
    assert fcs == [(8192, 4096), (4096, 4096)]
    assert (model.readout.in_features, model.readout.out_features) == (4096, 10)
    # first conv (analog input) and readout full precision; the middle four quantized with 2 bits
    assert [b.layer.enabled for b in blocks] == [False, True, True, True, True]
    assert not model.readout.enabled
    assert [layer.bits for _, layer in quantized_layers(model)] == [2, 2, 2, 2]
    assert len(synaptic_layers(model)) == 6
    # pool after conv 1 and conv 3
    assert [type(b.pool) for b in model.features] == [nn.MaxPool2d, type(None), nn.MaxPool2d]
    for b in blocks:  # IF neurons, hard reset, theta 0.5, sharing the scale of their layer
        assert isinstance(b.neuron, QuantIFNode) and b.neuron.step_mode == "m"
        assert b.neuron.decay == 1.0 and b.neuron.reset_mode == "hard" and b.neuron.threshold == 0.5
        assert b.neuron.scale_source is b.layer
        assert b.norm is None and b.dropout is None
    assert blocks[1].neuron.membrane_quantizer().alpha is blocks[1].layer.alpha
    assert blocks[0].neuron.membrane_quantizer() is None  # the full-precision first layer has no grid


@pytest.mark.parametrize("name", ["vgg6", "vgg9", "vgg11", "vgg16"])
def test_named_models_build_and_run(name):
    torch.manual_seed(0)
    model = spiking_vgg(name)
    n_convs = sum(isinstance(c, int) for c in VGG_CONFIGS[name][0])
    assert len(model.features) == n_convs and len(model.classifier) == 2
    with torch.no_grad():
        out = model(_images(t=2, b=1, size=32))
    assert out.shape == (2, 1, 10)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("neuron", ["if", "lif"])
@pytest.mark.parametrize("reset", ["hard", "soft"])
@pytest.mark.parametrize("detach_reset", [False, True])
def test_backends_agree_with_quantization_on(neuron, reset, detach_reset):
    kwargs = dict(SMALL, bits=2, neuron=neuron, reset=reset, detach_reset=detach_reset, threshold=0.3)
    torch.manual_seed(0)
    sj = SpikingVGG(backend="spikingjelly", **kwargs)
    st = SpikingVGG(backend="snntorch", **kwargs)
    st.load_state_dict(sj.state_dict())
    kinds = {type(n) for _, n in spiking_neurons(sj)}, {type(n) for _, n in spiking_neurons(st)}
    assert kinds == ({QuantIFNode if neuron == "if" else QuantLIFNode}, {QuantLeaky})
    assert {n.decay for _, n in spiking_neurons(sj)} == {n.decay for _, n in spiking_neurons(st)}
    x = _images()
    out_sj, out_st = sj(x), st(x)
    assert out_sj.shape == (3, 2, 10)
    torch.testing.assert_close(out_sj, out_st, rtol=0, atol=0)
    g = torch.randn(out_sj.shape, generator=torch.Generator().manual_seed(1))
    (out_sj * g).sum().backward()
    (out_st * g).sum().backward()
    grads_st = dict(st.named_parameters())
    for name, p in sj.named_parameters():
        torch.testing.assert_close(p.grad, grads_st[name].grad, rtol=1e-5, atol=1e-7, msg=name)
    assert sj.features[1].layer.alpha.grad.abs() > 0 and sj.classifier[0].layer.weight.grad.abs().sum() > 0


def test_pool_avg_option():
    torch.manual_seed(0)
    model = SpikingVGG(**SMALL, pool="avg")
    assert [type(b.pool) for b in model.features] == [nn.AvgPool2d, nn.AvgPool2d]
    seen = []
    model.features[0].register_forward_hook(lambda m, i, o: seen.append(o))
    assert model(_images()).shape == (3, 2, 10)
    assert seen[0].shape == (3, 2, 8, 4, 4)
    assert not set(seen[0].unique().tolist()) <= {0.0, 1.0}  # averaged spikes are fractions


def test_batch_norm_option():
    torch.manual_seed(0)
    model = SpikingVGG(**SMALL, batch_norm=True)
    norms = [b.norm for b in model.features]
    assert all(isinstance(n, nn.BatchNorm2d) for n in norms) and [n.num_features for n in norms] == [8, 16]
    assert all(b.norm is None for b in model.classifier)
    before = norms[0].running_mean.clone()
    model.train()
    model(_images())
    assert not torch.equal(norms[0].running_mean, before)  # statistics over T * B samples
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(_images()), model(_images()))


def test_time_shared_dropout_uses_one_mask_for_all_steps():
    torch.manual_seed(0)
    drop = TimeSharedDropout(0.5)
    out = drop(torch.ones(6, 4, 500))
    for t in range(1, 6):
        assert torch.equal(out[t], out[0])
    assert set(out.unique().tolist()) == {0.0, 2.0}  # kept units scaled by 1 / (1 - p)
    assert 0.4 < (out[0] == 0).float().mean() < 0.6
    drop.eval()
    x = torch.rand(3, 2, 5)
    assert torch.equal(drop(x), x)


def test_dropout_option_in_the_model():
    torch.manual_seed(0)
    model = SpikingVGG(**SMALL, dropout=0.5, threshold=0.2)
    drops = [b.dropout for b in model.classifier]
    assert all(isinstance(d, TimeSharedDropout) and d.p == 0.5 for d in drops)
    assert all(b.dropout is None for b in model.features)
    seen = []
    drops[0].register_forward_hook(lambda m, i, o: seen.append((i[0], o)))
    model.train()
    model(_images())
    spikes, dropped = seen[0]
    ratio = torch.where(spikes > 0, dropped / spikes, torch.nan)  # the mask where an input spike exists
    fired = ~torch.isnan(ratio)
    assert fired.sum(0).max() >= 2  # some unit spikes at several steps
    hi = torch.where(fired, ratio, -1.0).amax(0)
    lo = torch.where(fired, ratio, 3.0).amin(0)
    both = fired.any(0)
    assert torch.equal(hi[both], lo[both])  # the same mask value at every step
    assert set(hi[both].unique().tolist()) == {0.0, 2.0}


def test_quantize_first_and_readout_options():
    model = SpikingVGG(**SMALL, bits=3, quantize_first=True, quantize_readout=True, transform="identity")
    assert [layer.bits for _, layer in quantized_layers(model)] == [3, 3, 3, 3]
    assert model.features[0].layer.enabled and model.readout.enabled
    assert all(layer.transform == "identity" for _, layer in synaptic_layers(model))


def test_quantize_false_gives_the_fp32_network():
    from quest_lightning.nn import quantized_layers, spiking_vgg, synaptic_layers

    torch.manual_seed(0)
    fp = spiking_vgg("vgg6", quantize=False)
    assert quantized_layers(fp) == [] and len(synaptic_layers(fp)) == 6
    q = spiking_vgg("vgg6")
    q.load_state_dict(fp.state_dict())
    spikes = (torch.rand(2, 2, 64, 16, 16) < 0.3).float()
    # same weights: the FP32 network uses the raw weights, the quantized one the ternary grid
    torch.testing.assert_close(
        fp.features[1].layer(spikes),
        torch.nn.functional.conv2d(spikes.flatten(0, 1), fp.features[1].layer.weight, padding=1).unflatten(0, (2, 2)),
    )
    assert not torch.equal(fp.features[1].layer(spikes), q.features[1].layer(spikes))
    assert q.features[1].layer.codes.unique().numel() == 3


@pytest.mark.parametrize("backend", ["spikingjelly", "snntorch"])
@pytest.mark.parametrize("quantize", [True, False])
def test_blocks_call_their_neuron_modules(backend, quantize):
    """SpikingJelly's monitors (forward hooks) see every neuron call: once per block on [T, B, ...] for SpikingJelly's
    neurons, once per step for snnTorch's; each block's spikes are the neuron's own scan of the currents it got, from
    a zero state, bit for bit; and no state is left in the neurons (a trained model deep-copies)."""
    import copy

    from spikingjelly.activation_based.monitor import InputMonitor, OutputMonitor

    from quest_lightning.nn.neurons import QuantNeuron

    torch.manual_seed(0)
    model = SpikingVGG(**SMALL, backend=backend, quantize=quantize, threshold=0.3)
    outputs = OutputMonitor(model, QuantNeuron, lambda out: (out[0] if isinstance(out, tuple) else out).detach())
    inputs = InputMonitor(model, QuantNeuron, lambda x: (x[0] if isinstance(x, tuple) else x).detach())
    model(_images()).sum().backward()
    blocks = [*model.features, *model.classifier]
    per_block = 1 if backend == "spikingjelly" else 3  # T = 3 calls of snnTorch's single-step Leaky
    assert len(outputs.records) == len(inputs.records) == per_block * len(blocks)
    for i, block in enumerate(blocks):
        got = torch.cat(outputs.records[i * per_block : (i + 1) * per_block]).view(3, 2, -1)
        currents = torch.stack(inputs.records[i * per_block : (i + 1) * per_block]).view(3, 2, -1)
        assert torch.equal(got, block.neuron.multi_step(currents)[0].detach())
        assert 0 < float(got.mean()) < 1
    for _, neuron in spiking_neurons(model):
        state = neuron.v if backend == "spikingjelly" else neuron.mem
        assert not isinstance(state, torch.Tensor) or state.grad_fn is None
    copy.deepcopy(model)
    outputs.remove_hooks()
    inputs.remove_hooks()
