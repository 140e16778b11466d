"""The deployment bundle and the integer runner: on a trained network the runner's spikes and predictions equal the
fake-quantized model's bit for bit, the programming map maps back to the codes, and what cannot be represented is
refused with the module's name."""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from deploy_helpers import T, digits_net, trained
from torch import nn
from torch.overrides import TorchFunctionMode

from quest_lightning.deploy import (
    IntegerRunner,
    NotDeployableError,
    codes_from_states,
    export,
    load_bundle,
    programming_map,
)
from quest_lightning.deploy.compile import compile_neuron
from quest_lightning.deploy.graph import model_spikes
from quest_lightning.deploy.runner import int_conv2d, int_linear, integer_scan
from quest_lightning.devices import enumerate_patterns, get_device
from quest_lightning.functional.integer import integer_neuron_program, integer_neuron_scan
from quest_lightning.functional.neuron import NeuronParams
from quest_lightning.nn import DirectEncoder, QuantIFNode, QuantLinear, quantized_layers

PATTERN = (0, 3, 6)


def _assert_runner_matches(model, x, out_dir, **export_kwargs):
    bundle = export(model, out_dir, device="skmtj7", pattern=PATTERN, timesteps=T, **export_kwargs)
    result = IntegerRunner(load_bundle(out_dir)).run(x, record_spikes=True)
    out, spikes = model_spikes(model, DirectEncoder(T)(x))
    assert spikes and set(spikes) == set(result.spikes)
    for name, s in spikes.items():
        assert torch.equal(result.spikes[name].to(s.dtype), s), name
    expected = out.mean(0).argmax(-1)
    if result.output.is_floating_point():
        assert torch.equal(result.predictions, expected)
    else:
        # an integer readout ties exactly where the float model's sums differ by rounding alone: there the runner
        # takes the first tied class and the float model whichever rounding favours, one of the tied classes
        sums = result.output.sum(0)
        tied = (sums == sums.max(-1, keepdim=True).values).sum(-1) > 1
        assert torch.equal(result.predictions[~tied], expected[~tied])
        best = sums.gather(-1, expected.unsqueeze(-1)).squeeze(-1)
        assert torch.equal(best[tied], sums.max(-1).values[tied])
    return bundle, result, out


def test_runner_reproduces_the_trained_network(trained_digits, tmp_path):
    model, x, y = trained_digits
    bundle, result, out = _assert_runner_matches(model, x, tmp_path / "b")
    assert (result.predictions == y).float().mean() > 0.5  # it is a trained network
    rates = [s.float().mean().item() for s in result.spikes.values()]
    assert all(0.01 < r < 0.9 for r in rates)  # real spiking, not silence
    assert torch.equal(result.output, out)  # float32 readout: the same currents
    runner = IntegerRunner(bundle)
    hidden = [e["name"] for e in bundle.graph if e["op"] in ("conv2d", "linear") and e["arithmetic"] == "integer"]
    assert hidden == ["features.1.layer", "classifier.0.layer"]  # all but the analog first layer and the readout
    assert "features.1.neuron" in runner.integer_stages


@pytest.mark.parametrize("backend", ["spikingjelly", "snntorch"])
def test_model_spikes_reads_every_neuron_in_its_call_convention(backend, digits_data):
    """Every neuron's spikes, whether it is called once on [T, B, ...] (SpikingJelly's) or once per step (snnTorch's),
    full precision (the analog first block) or quantized: the first block's are the neuron's own scan of its layer's
    currents, and each neuron's total is the count its own recording keeps."""
    from quest_lightning.nn import recording, reset_recording, spiking_neurons

    torch.manual_seed(0)
    model = digits_net(backend=backend, threshold=0.3).eval()
    x_seq = DirectEncoder(T)(digits_data[2][:16])
    with recording(model):
        _, spikes = model_spikes(model, x_seq)
    neurons = dict(spiking_neurons(model))
    assert list(spikes) == list(neurons) == ["features.0.neuron", "features.1.neuron", "classifier.0.neuron"]
    first = model.features[0]
    with torch.no_grad():
        assert torch.equal(spikes["features.0.neuron"], first.neuron.multi_step(first.layer(x_seq))[0])
    for name, s in spikes.items():
        assert s.shape[:2] == (T, 16) and 0 < float(s.mean()) < 1, name
        assert float(neurons[name].spike_count) == float(s.sum()), name
    reset_recording(model)


def test_model_spikes_refuses_a_neuron_its_hooks_cannot_see():
    class Scans(nn.Module):  # calls the neuron's scan itself, never the module
        def __init__(self):
            super().__init__()
            self.layer, self.neuron = QuantLinear(4, 3, bits=2), QuantIFNode(0.5, step_mode="m")

        def forward(self, x):
            return self.neuron.multi_step(self.layer(x))[0]

    with pytest.raises(ValueError, match=r"neuron 'neuron' was called 0 time\(s\).*neuron\(x\)"):
        model_spikes(Scans(), torch.rand(T, 2, 4))


def test_integer_readout_and_soft_reset(digits_data, tmp_path):
    x_train, y_train, x_test, _ = digits_data
    model = trained(x_train, y_train, epochs=1, quantize_readout=True, reset="soft")
    bundle, result, out = _assert_runner_matches(model, x_test, tmp_path / "b")
    readout = bundle.stage("readout")
    assert readout["arithmetic"] == "integer" and result.output.dtype == torch.int32
    # the integer readout is the float readout divided by the grid step alpha / Q, exactly up to float rounding
    torch.testing.assert_close(result.output.float() * readout["step"], out, rtol=1e-5, atol=1e-5)


def test_quantized_first_layer_is_a_float_front_end(digits_data, tmp_path):
    x_train, y_train, x_test, _ = digits_data
    model = trained(x_train, y_train, epochs=1, quantize_first=True)
    bundle, _, _ = _assert_runner_matches(model, x_test, tmp_path / "b")
    first = bundle.stage("features.0.layer")
    assert first["quantized"] and first["arithmetic"] == "float32"  # analog input: codes, but float currents
    assert bundle.stage("features.0.neuron")["membrane"]["bits"] == 2


def test_manifest_describes_the_network(trained_digits, tmp_path):
    model, _, _ = trained_digits
    export(model, tmp_path / "b", device="skmtj7", pattern=PATTERN, timesteps=T, run={"checkpoint": "x.ckpt"})
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["schema_version"] == 1 and manifest["run"] == {"checkpoint": "x.ckpt"}
    assert manifest["device"]["name"] == "skmtj7" and manifest["pattern"]["states"] == list(PATTERN)
    assert manifest["pattern"]["label"] == "-1→R0, 0→R3, +1→R6"
    assert manifest["input"] == {"shape": [1, 8, 8], "timesteps": T, "encoder": "direct"}
    ops = [(e["op"], e["in_shape"], e["out_shape"]) for e in manifest["graph"]]
    assert ops == [
        ("conv2d", [1, 8, 8], [16, 8, 8]),
        ("neuron", [16, 8, 8], [16, 8, 8]),
        ("maxpool2d", [16, 8, 8], [16, 4, 4]),
        ("conv2d", [16, 4, 4], [32, 4, 4]),
        ("neuron", [32, 4, 4], [32, 4, 4]),
        ("maxpool2d", [32, 4, 4], [32, 2, 2]),
        ("flatten", [32, 2, 2], [128]),
        ("linear", [128], [64]),
        ("neuron", [64], [64]),
        ("linear", [64], [10]),
    ]
    layer = model.features[1].layer
    neuron = next(e for e in manifest["graph"] if e["name"] == "features.1.neuron")
    step = layer.alpha.item() / 1  # Q = 1 for 2 bits
    assert neuron["threshold_int"] == math.ceil(0.5 / step) and neuron["reset"] == "hard"
    # requantization boundaries by brute force: the first m whose state round(clip(tanh(m*step)/alpha)) reaches
    # level -Q+1 = 0 and level Q = 1 (Python's round is half-to-even, like torch.round)
    alpha = layer.alpha.item()

    def level(m):
        return round(max(-1.0, min(1.0, math.tanh(m * step) / alpha)))

    first = [next(m for m in range(-200, 200) if level(m) >= k) for k in (0, 1)]
    assert neuron["bounds_no_spike"] == first


def test_programming_map_maps_back_to_the_codes(trained_digits, tmp_path):
    model, _, _ = trained_digits
    bundle = load_bundle(export(model, tmp_path / "b", device="skmtj7", pattern=5, timesteps=T).path)
    states = enumerate_patterns(get_device("skmtj7"), 2)[5].states
    assert bundle.pattern_states == states
    layers = dict(quantized_layers(model))
    assert bundle.quantized_layers() == list(layers)
    for name, layer in layers.items():
        state_map = bundle.state_maps[name]
        assert state_map.dtype == torch.uint8 and state_map.shape == layer.weight.shape
        assert torch.equal(bundle.codes(name), layer.current_codes())
        assert torch.equal(bundle.codes_from_states(name), layer.current_codes())
        for code in (-1, 0, 1):  # each weight sits on the state of its level
            assert set(state_map[layer.current_codes() == code].tolist()) <= {states[code + 1]}


def test_programming_map_by_hand():
    codes = torch.tensor([[-1, 0, 1], [1, 1, -1]], dtype=torch.int8)
    states = programming_map(codes, (2, 0, 5))
    assert states.tolist() == [[2, 0, 5], [5, 5, 2]]
    assert torch.equal(codes_from_states(states, (2, 0, 5)), codes)
    with pytest.raises(ValueError, match="does not use"):
        codes_from_states(torch.tensor([1], dtype=torch.uint8), (2, 0, 5))
    with pytest.raises(ValueError, match="outside|span"):
        programming_map(torch.tensor([2], dtype=torch.int8), (2, 0, 5))


class _NoFloatMode(TorchFunctionMode):
    """Fails on any torch call that takes or returns a floating-point tensor."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        flat = list(args) + list((kwargs or {}).values()) + (list(out) if isinstance(out, tuple) else [out])
        for v in flat:
            assert not (isinstance(v, torch.Tensor) and v.is_floating_point()), f"{func} used a float tensor"
        return out


@pytest.mark.parametrize(
    ("stride", "padding", "dilation", "groups"), [(1, 1, 1, 1), (2, 0, 1, 1), (1, 2, 2, 1), (1, 1, 1, 2)]
)
def test_integer_convolution_is_exact_and_float_free(stride, padding, dilation, groups):
    gen = torch.Generator().manual_seed(0)
    spikes = (torch.rand(3, 4, 7, 6, generator=gen) < 0.4).to(torch.int8)
    codes = torch.randint(-3, 4, (6, 4 // groups, 3, 3), generator=gen, dtype=torch.int8)
    with _NoFloatMode():
        out = int_conv2d(spikes, codes, (stride,) * 2, (padding,) * 2, (dilation,) * 2, groups)
    ref = F.conv2d(spikes.double(), codes.double(), None, stride, padding, dilation, groups)
    assert out.dtype == torch.int32 and torch.equal(out.double(), ref)
    x = (torch.rand(5, 9, generator=gen) < 0.5).to(torch.int8)
    w = torch.randint(-1, 2, (4, 9), generator=gen, dtype=torch.int8)
    with _NoFloatMode():
        y = int_linear(x, w)
    assert torch.equal(y.double(), x.double() @ w.double().t())


@pytest.mark.parametrize("reset", ["hard", "soft"])
def test_integer_scan_matches_the_functional_program(reset):
    program = integer_neuron_program(0.7, 3, NeuronParams(threshold=0.45, reset=reset), transform="tanh")
    currents = torch.randint(-6, 7, (8, 5, 3), generator=torch.Generator().manual_seed(1))
    expected, _ = integer_neuron_scan(currents, program)
    spike_bounds = torch.tensor([program.bounds_spike], dtype=torch.int64).reshape(1, -1)
    with _NoFloatMode():
        spikes = integer_scan(
            currents,
            torch.tensor([program.threshold_int]),
            torch.tensor([program.bounds_no_spike]),
            spike_bounds,
            reset,
            3,
        )
    assert torch.equal(spikes, expected)


@pytest.mark.parametrize("reset", ["hard", "soft"])
def test_bias_becomes_per_channel_integers(reset):
    """A layer with a bias (as after BatchNorm folding): the runner's per-channel programs give the float spikes."""
    gen = torch.Generator().manual_seed(3)
    layer = QuantLinear(24, 6, bias=True, bits=3, transform="identity")
    with torch.no_grad():
        layer.alpha.fill_(0.83)
        layer.weight.copy_(torch.randn(6, 24, generator=gen) * 0.4)
        layer.bias.copy_(torch.randn(6, generator=gen) * 0.3)
    neuron = QuantIFNode(0.5, None if reset == "soft" else 0.0, "triangle", step_mode="m").share_scale_with(layer)
    net = nn.Sequential(layer, neuron)
    programs = compile_neuron(neuron, layer)
    assert programs.per_channel and programs.threshold_int.shape == (6,)
    # theta_int,c = ceil((theta - b_c) / Delta), by hand
    step = 0.83 / 3
    expected = [math.ceil((0.5 - b) / step) for b in layer.bias.tolist()]
    assert programs.threshold_int.tolist() == expected
    x = (torch.rand(10, 16, 24, generator=gen) < 0.3).float()
    with torch.no_grad():
        spikes = net(x)
    currents = int_linear(x.to(torch.int8), layer.current_codes())
    ints = integer_scan(currents, programs.threshold_int, programs.bounds_no_spike, programs.bounds_spike, reset, 3)
    assert 0 < spikes.mean() < 1 and torch.equal(ints.float(), spikes)


def test_zero_bias_gives_the_neurons_own_program():
    layer = QuantLinear(8, 4, bias=True, bits=2)
    with torch.no_grad():
        layer.bias.zero_()
    neuron = QuantIFNode(0.5, None, "triangle", step_mode="m").share_scale_with(layer)
    programs = compile_neuron(neuron, layer)
    program = neuron.integer_program()
    assert set(programs.threshold_int.tolist()) == {program.threshold_int}
    assert all(tuple(row) == program.bounds_no_spike for row in programs.bounds_no_spike.tolist())
    assert all(tuple(row) == program.bounds_spike for row in programs.bounds_spike.tolist())


def _unshared(model):
    model.features[1].neuron._scale_source = []
    return model


def _mem_bits(model):
    model.features[1].neuron.mem_bits = 3
    return model


def _mixed(model):
    model.classifier[0].layer.bits = 3
    return model


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: digits_net(neuron="lif"), r"features\.1\.neuron.*leaky.*LIF"),
        (lambda: digits_net(batch_norm=True), r"BatchNorm 'features\.0\.norm' is not folded.*fold_bn=True"),
        (lambda: digits_net(quantize=False), "needs a model with quantized layers"),
        (lambda: _unshared(digits_net()), r"features\.1\.neuron.*does not share its layer's scale"),
        (lambda: _mem_bits(digits_net()), r"features\.1\.neuron.*mem_bits=3.*bits=2"),
        (lambda: _mixed(digits_net()), r"different bit widths.*classifier\.0\.layer: 3"),
        (lambda: digits_net(pool="avg"), r"features\.1\.layer.*not binary spikes.*max pooling"),
        (lambda: nn.Sequential(QuantLinear(4, 4), nn.ReLU()), r"'1' of type ReLU cannot be exported"),
    ],
)
def test_unrepresentable_networks_are_refused(build, match, tmp_path):
    with pytest.raises(NotDeployableError, match=match):
        export(build(), tmp_path / "b", device="skmtj7", pattern=PATTERN, timesteps=T)
    assert not (tmp_path / "b").exists()  # nothing written


def test_output_folder_is_never_overwritten_silently(trained_digits, tmp_path):
    model, _, _ = trained_digits
    out = tmp_path / "b"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty.*force"):
        export(model, out, device="skmtj7", pattern=PATTERN, timesteps=T)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    export(model, out, device="skmtj7", pattern=PATTERN, timesteps=T, force=True)
    assert (out / "notes.txt").read_text() == "mine"  # only the bundle's own files are written
    assert (out / "manifest.json").exists()


def test_bad_device_pattern_and_damaged_bundles(trained_digits, tmp_path):
    model, _, _ = trained_digits
    with pytest.raises(ValueError, match="out of range.*210 patterns"):
        export(model, tmp_path / "a", device="skmtj7", pattern=210, timesteps=T)
    with pytest.raises(ValueError, match="3 distinct states"):
        export(model, tmp_path / "a", device="skmtj7", pattern=(0, 0, 6), timesteps=T)
    with pytest.raises(ValueError, match="neither a registered device"):
        export(model, tmp_path / "a", device="nope", pattern=0, timesteps=T)
    export(model, tmp_path / "b", device="skmtj7", pattern=PATTERN, timesteps=T)
    with pytest.raises(FileNotFoundError, match="no bundle folder"):
        load_bundle(tmp_path / "missing")
    weights = tmp_path / "b" / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="does not match the hash"):
        load_bundle(tmp_path / "b")
    (tmp_path / "b" / "programming_map.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="programming_map.safetensors is missing"):
        load_bundle(tmp_path / "b")


def test_runner_rejects_a_wrong_input_shape(trained_digits, tmp_path):
    model, x, _ = trained_digits
    runner = IntegerRunner(export(model, tmp_path / "b", device="skmtj7", pattern=PATTERN, timesteps=T))
    with pytest.raises(ValueError, match=r"takes \[B, 1, 8, 8\]"):
        runner.run(torch.zeros(2, 3, 8, 8))
    assert runner.run(DirectEncoder(T)(x[:4]).contiguous()).predictions.shape == (4,)
