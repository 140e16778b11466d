"""Configuration errors raise early with a message that names the value and what would be valid."""

from dataclasses import dataclass

import pytest
import torch

from quest_lightning.devices.capability import DeviceCapability, check_model
from quest_lightning.functional.grid import check_bits
from quest_lightning.functional.quantize import mint_quantize
from quest_lightning.functional.surrogate import get_surrogate
from quest_lightning.nn import (
    DirectEncoder,
    QuantConv2d,
    QuantIFNode,
    QuantLeaky,
    QuantLIFNode,
    QuantLinear,
    SpikingVGG,
    make_encoder,
    make_neuron,
    spiking_vgg,
)


@dataclass(frozen=True)
class StubDevice:
    """A stand-in for a device spec: only the capability protocol."""

    name: str
    can_leak: bool
    num_states: int


NO_LEAK = StubDevice("stub-mtj", can_leak=False, num_states=7)
SEVEN = StubDevice("seven-state", can_leak=True, num_states=7)
SMALL = dict(config=[4, "P"], fc=[8], image_size=4)


def test_stub_satisfies_the_protocol():
    assert isinstance(NO_LEAK, DeviceCapability)


BITS = r"use an integer from 1 to 8"
LEAK = r"device 'stub-mtj' cannot leak \(can_leak=False\).*only IF neurons are supported.*Use an IF neuron"
FIT = r"needs 15 weight levels \(2\*\*4 - 1\) but device 'seven-state' has only 7 states; use {} <= 3 or a device"

CASES = [
    # bit widths
    ("bits=0 layer", lambda: QuantLinear(4, 4, bits=0), rf"bits=0 is not supported: {BITS}"),
    ("bits=9 conv", lambda: QuantConv2d(1, 1, 3, bits=9), rf"bits=9 is not supported: {BITS}"),
    ("bits=9 vgg", lambda: SpikingVGG(**SMALL, bits=9), rf"bits=9 is not supported: {BITS}"),
    ("bits=2.0", lambda: check_bits(2.0), rf"bits=2.0 is not supported: {BITS}"),
    ("bits quantize", lambda: mint_quantize(torch.zeros(2), torch.tensor(1.0), 0), rf"bits=0 .*{BITS}"),
    ("mem_bits", lambda: QuantIFNode(mem_bits=12), rf"mem_bits=12 is not supported: {BITS}"),
    # time steps
    ("T=0", lambda: DirectEncoder(0), r"timesteps \(T\) = 0 must be an integer >= 1"),
    ("T=-2 rate", lambda: make_encoder("rate", -2), r"timesteps \(T\) = -2 must be an integer >= 1"),
    # input shapes
    (
        "4-D into VGG",
        lambda: SpikingVGG(**SMALL)(torch.rand(2, 3, 4, 4)),
        r"SpikingVGG expects \[T, B, C, H, W\] input \(encode the batch first\), got shape \(2, 3, 4, 4\)",
    ),
    (
        "3-D into conv",
        lambda: QuantConv2d(3, 4, 3)(torch.rand(3, 4, 4)),
        r"expects \[B, C, H, W\] or \[T, B, C, H, W\] input, got shape \(3, 4, 4\)",
    ),
    ("wrong features", lambda: QuantLinear(4, 2)(torch.rand(2, 5)), r"expects \[\.\.\., 4\] input, got shape \(2, 5\)"),
    (
        "1-D multi-step",
        lambda: QuantIFNode(step_mode="m")(torch.rand(5)),
        r"step_mode='m' expects \[T, B, \.\.\.\] input, got shape \(5,\)",
    ),
    ("1-D scan", lambda: QuantLeaky().multi_step(torch.rand(5)), r"must be \[T, B, \.\.\.\], got shape \(5,\)"),
    # neuron kind, back-end, surrogate, reset
    ("neuron kind", lambda: make_neuron("spikingjelly", "izh", "hard"), r"neuron='izh' is unknown: use 'if'.*'lif'"),
    ("neuron kind vgg", lambda: SpikingVGG(**SMALL, neuron="alif"), r"neuron='alif' is unknown"),
    ("backend", lambda: make_neuron("brian2", "if", "hard"), r"backend='brian2' is unknown: use one of .*spikingjelly"),
    ("backend vgg", lambda: SpikingVGG(**SMALL, backend="norse"), r"backend='norse' is unknown"),
    ("surrogate", lambda: get_surrogate("sigmoidish"), r"surrogate='sigmoidish' is unknown: use 'triangle', 'sj\."),
    ("surrogate vgg", lambda: SpikingVGG(**SMALL, surrogate="boxcar"), r"surrogate='boxcar' is unknown"),
    (
        "sj surrogate",
        lambda: get_surrogate("sj.Boxcar"),
        r"'sj\.Boxcar' is not a SpikingJelly surrogate; choose one of",
    ),
    ("snntorch surrogate", lambda: get_surrogate("snntorch.nope"), r"'snntorch\.nope' is not an snnTorch surrogate"),
    ("surrogate kwargs", lambda: get_surrogate(lambda x: x, alpha=2.0), r"keyword arguments only apply"),
    ("v_reset", lambda: QuantIFNode(v_reset=-0.5), r"v_reset=-0\.5 is not supported.*v_reset=0\.0.*v_reset=None"),
    ("v_reset lif", lambda: QuantLIFNode(v_reset=0.2), r"v_reset=0\.2 is not supported"),
    ("reset vgg", lambda: SpikingVGG(**SMALL, reset="partial"), r"reset='partial' is unknown: use 'hard' or 'soft'"),
    ("leaky reset", lambda: QuantLeaky(reset_mechanism="half"), r"reset_mechanism='half' is unknown"),
    ("step_mode", lambda: QuantIFNode(step_mode="x"), r"step_mode='x' is unknown"),
    ("transform", lambda: QuantLinear(2, 2, transform="sigmoid"), r"transform='sigmoid' is unknown"),
    ("pool", lambda: SpikingVGG(**SMALL, pool="min"), r"pool='min' is unknown: use 'max' or 'avg'"),
    ("dropout", lambda: SpikingVGG(**SMALL, dropout=1.0), r"dropout p=1\.0 must lie in \[0, 1\)"),
    ("beta", lambda: QuantLeaky(beta=1.5), r"beta=1\.5 must lie in \(0, 1\]"),
    ("tau", lambda: QuantLIFNode(tau=0.5), r"tau=0\.5 must be greater than 1"),
    ("lif decay", lambda: make_neuron("snntorch", "lif", "hard", decay=1.0), r"decay=1\.0 must lie in \(0, 1\)"),
    ("threshold", lambda: QuantIFNode(v_threshold=0.0), r"threshold=0\.0 must be positive"),
    ("model", lambda: spiking_vgg("vgg7"), r"model 'vgg7' is unknown"),
    # devices (checked on the built model): LIF where the state cannot leak
    ("LIF node on MTJ", lambda: check_model(QuantLIFNode(), NO_LEAK), rf"QuantLIFNode is leaky.*{LEAK}"),
    ("Leaky on MTJ", lambda: check_model(QuantLeaky(beta=0.5), NO_LEAK), rf"QuantLeaky is leaky.*{LEAK}"),
    ("make_neuron on MTJ", lambda: check_model(make_neuron("spikingjelly", "lif", "soft"), NO_LEAK), rf"'lif'.*{LEAK}"),
    ("VGG LIF on MTJ", lambda: check_model(SpikingVGG(**SMALL, neuron="lif"), NO_LEAK), LEAK),
    # devices: more levels than states
    ("layer bits on 7 states", lambda: check_model(QuantLinear(4, 4, bits=4), SEVEN), "bits=4 " + FIT.format("bits")),
    ("VGG bits on 7 states", lambda: check_model(SpikingVGG(**SMALL, bits=4), SEVEN), "bits=4 " + FIT.format("bits")),
    (
        "mem_bits on 7 states",
        lambda: check_model(QuantIFNode(mem_bits=4), SEVEN),
        "mem_bits=4 " + FIT.format("mem_bits"),
    ),
]


@pytest.mark.parametrize(("build", "match"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_configuration_errors(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_share_scale_with_a_plain_layer_is_a_type_error():
    with pytest.raises(TypeError, match=r"share_scale_with expects a QuantConv2d or QuantLinear, got Linear"):
        QuantIFNode().share_scale_with(torch.nn.Linear(2, 2))


def test_valid_device_configurations_pass():
    """The same devices accept what they can hold: IF on a non-leaky device, 3 bits (7 levels) on 7 states."""
    check_model(QuantIFNode(), NO_LEAK)
    check_model(QuantLeaky(beta=1.0), NO_LEAK)
    check_model(QuantLinear(4, 4, bits=3), SEVEN)
    model = SpikingVGG(**SMALL, bits=3, neuron="if")
    check_model(model, NO_LEAK)
    assert model(torch.rand(2, 1, 3, 4, 4)).shape == (2, 1, 10)
    # a disabled (full-precision) layer is not held on the device, so it is not checked
    check_model(QuantLinear(4, 4, bits=8, enabled=False), SEVEN)
    check_model(SpikingVGG(**SMALL, bits=4, quantize=False), SEVEN)


@pytest.mark.parametrize(
    ("build", "device", "match"),
    [
        # the second conv block of a two-conv net: its layer is quantized, the first conv is full precision
        (
            lambda: SpikingVGG(config=[4, 4, "P"], fc=[8], image_size=4, bits=4),
            SEVEN,
            r"^features\.1\.layer \(QuantConv2d\): bits=4 ",
        ),
        (
            lambda: SpikingVGG(**SMALL, neuron="lif"),
            NO_LEAK,
            r"^features\.0\.neuron \(neuron='lif', decay=0\.5\): QuantLIFNode is leaky",
        ),
        (
            lambda: SpikingVGG(**SMALL, neuron="lif", backend="snntorch"),
            NO_LEAK,
            r"^features\.0\.neuron \(neuron='lif', decay=0\.5\): QuantLeaky is leaky",
        ),
        # one conv: the full-precision first layer is skipped, so the first quantized layer is the hidden FC
        (lambda: SpikingVGG(**SMALL, bits=4), SEVEN, r"^classifier\.0\.layer \(QuantLinear\): bits=4 needs 15"),
        (lambda: QuantLinear(4, 4, bits=4), SEVEN, r"^model \(QuantLinear\): bits=4 needs 15"),
        (
            lambda: torch.nn.Sequential(torch.nn.Flatten(), QuantIFNode(mem_bits=4)),
            SEVEN,
            r"^1 \(QuantIFNode\): mem_bits=4",
        ),
    ],
    ids=["conv layer", "sj neuron", "snntorch neuron", "first quantized layer", "bare layer", "sequential neuron"],
)
def test_device_errors_name_the_module_path(build, device, match):
    with pytest.raises(ValueError, match=match):
        check_model(build(), device)


def test_removed_device_keyword_points_to_check_model():
    with pytest.raises(TypeError, match=r"QuantConv2d got unknown keyword\(s\) \['device_spec'\].*check_model"):
        QuantConv2d(1, 1, 3, device_spec=SEVEN)
