"""Integer-only inference: with weights and membrane on one grid (b_u = b_w, shared alpha), the fake-quant float
network and the integer program (additions and comparisons only) give bit-identical spikes."""

import math
import random
import zlib

import pytest
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from quest_lightning.functional.grid import qmax
from quest_lightning.functional.integer import integer_neuron_program, integer_neuron_scan
from quest_lightning.functional.neuron import NeuronParams
from quest_lightning.functional.surrogate import fires_at_threshold
from quest_lightning.nn import QuantConv2d, QuantIFNode, QuantLeaky, QuantLinear

T, B = 6, 4
THETA = 0.5
MARGIN = 1e-4


def _dist_to_int(v: float) -> float:
    return abs(v - round(v))


def _tie_margin(alpha: float, bits: int, transform: str, reset: str, m_max: int) -> float:
    """How far (in grid units) the float path stays from a rounding tie: the threshold ratio theta/Delta from an
    integer, and every requantized state (accumulator m, minus theta after a soft reset) from a half-integer."""
    q = qmax(bits)
    step = alpha / q
    margins = [_dist_to_int(THETA / step)]
    shifts = (0.0, THETA) if reset == "soft" else (0.0,)
    for m in range(-m_max, m_max + 1):
        for shift in shifts:
            v = m * step - shift
            t = math.tanh(v) if transform == "tanh" else v
            if abs(t) < alpha:
                margins.append(_dist_to_int(t / alpha * q - 0.5))
    return min(margins)


def _pick_alpha(rng: random.Random, bits: int, transform: str, reset: str, m_max: int) -> float:
    """A random alpha (float32-representable) whose float path has no near-ties."""
    for _ in range(100):
        alpha = float(torch.tensor(rng.uniform(0.2, 0.95)))
        if _tie_margin(alpha, bits, transform, reset, m_max) > MARGIN:
            return alpha
    raise AssertionError("no tie-free alpha found")


class _NoFloatMode(TorchFunctionMode):
    """Fails on any torch call that takes or returns a floating-point tensor."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        flat = list(args) + list((kwargs or {}).values()) + (list(out) if isinstance(out, tuple) else [out])
        for v in flat:
            assert not (isinstance(v, torch.Tensor) and v.is_floating_point()), f"{func} used a float tensor"
        return out


def _layer(kind: str, bits: int, transform: str, alpha: float, gen: torch.Generator):
    if kind == "linear":
        layer = QuantLinear(24, 10, bits=bits, transform=transform)
        x = (torch.rand(T, B, 24, generator=gen) < 0.4).float()
    else:
        layer = QuantConv2d(3, 5, 3, padding=1, bits=bits, transform=transform)
        x = (torch.rand(T, B, 3, 5, 5, generator=gen) < 0.4).float()
    with torch.no_grad():
        layer.alpha.fill_(alpha)
        layer.weight.copy_(torch.randn(layer.weight.shape, generator=gen) * 0.6 * alpha)
    return layer, x


def _integer_currents(layer, x: torch.Tensor) -> torch.Tensor:
    """Sum of weight codes over the input spikes, exactly (float64 sums of small integers), as int64."""
    codes = layer.codes.to(torch.float64)
    if isinstance(layer, QuantLinear):
        current = F.linear(x.to(torch.float64), codes)
    else:
        current = F.conv2d(x.flatten(0, 1).to(torch.float64), codes, padding=1).unflatten(0, x.shape[:2])
    assert torch.equal(current, current.round())
    return current.to(torch.int64)


def _float_spikes(neuron_kind: str, reset: str, layer, x: torch.Tensor):
    """Fake-quant float forward: spikes and the final carried state."""
    if neuron_kind == "ifnode":
        neuron = QuantIFNode(THETA, 0.0 if reset == "hard" else None, "triangle", step_mode="m")
        neuron.share_scale_with(layer)
        spikes = neuron(layer(x))
        return neuron, spikes, neuron.v
    neuron = QuantLeaky(1.0, THETA, None, "zero" if reset == "hard" else "subtract").share_scale_with(layer)
    current = layer(x)
    spikes = torch.stack([neuron(current[t])[0] for t in range(current.shape[0])])
    return neuron, spikes, neuron.post_reset_membrane()  # mem is snnTorch's pre-reset membrane


@pytest.mark.parametrize("bits", [2, 3, 4])
@pytest.mark.parametrize("reset", ["hard", "soft"])
@pytest.mark.parametrize("transform", ["tanh", "identity"])
@pytest.mark.parametrize("layer_kind", ["linear", "conv"])
@pytest.mark.parametrize("neuron_kind", ["ifnode", "leaky"])
def test_integer_path_matches_fake_quant(bits, reset, transform, layer_kind, neuron_kind):
    seed = zlib.crc32(f"{bits}-{reset}-{transform}-{layer_kind}-{neuron_kind}".encode())
    q = qmax(bits)
    fan_in = 24 if layer_kind == "linear" else 27
    m_max = q * (fan_in + 1)  # |u| <= Q and |current| <= fan_in * Q
    alpha = _pick_alpha(random.Random(seed), bits, transform, reset, m_max)
    assert _tie_margin(alpha, bits, transform, reset, m_max) > MARGIN
    layer, x = _layer(layer_kind, bits, transform, alpha, torch.Generator().manual_seed(seed))

    with torch.no_grad():
        neuron, spikes, u_last = _float_spikes(neuron_kind, reset, layer, x)
    assert 0 < spikes.mean() < 1  # both firing and silence occur

    program = integer_neuron_program(
        alpha,
        bits,
        NeuronParams(threshold=THETA, reset=reset),
        transform=transform,
        fire_at_threshold=fires_at_threshold(neuron.spike_fn),
    )
    assert program.threshold_int == math.ceil(THETA / (alpha / q))
    currents = _integer_currents(layer, x)
    with _NoFloatMode():
        int_spikes, u_int = integer_neuron_scan(currents, program)
    assert int_spikes.dtype == torch.int8 and u_int.dtype == torch.int64
    assert torch.equal(int_spikes.to(spikes.dtype), spikes)
    # the carried float state is the integer state on the grid
    assert u_int.abs().max() <= q
    assert torch.equal((u_last * q / alpha).round().to(torch.int64), u_int)
    torch.testing.assert_close(u_last, u_int.to(torch.float32) * alpha / q)


@pytest.mark.parametrize(("surrogate", "fire_at_threshold"), [("triangle", True), ("snntorch.atan", False)])
def test_exact_ties_follow_the_surrogate_convention(surrogate, fire_at_threshold):
    """alpha = 0.5, 2 bits: the grid step equals theta, so an accumulator of 1 sits exactly at the threshold."""
    layer = QuantLinear(2, 1, bits=2, transform="identity")
    with torch.no_grad():
        layer.alpha.fill_(0.5)
        layer.weight.copy_(torch.tensor([[0.5, -0.5]]))  # codes [1, -1]
    neuron = QuantIFNode(THETA, 0.0, surrogate, step_mode="m").share_scale_with(layer)
    assert fires_at_threshold(neuron.spike_fn) is fire_at_threshold
    x = torch.tensor([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0], [1.0, 0.0], [1.0, 0.0]]).reshape(5, 1, 2)
    with torch.no_grad():
        spikes = neuron(layer(x)).flatten()
    program = integer_neuron_program(
        0.5, 2, NeuronParams(threshold=THETA), fire_at_threshold=fire_at_threshold, transform="identity"
    )
    assert program.threshold_int == (1 if fire_at_threshold else 2)
    int_spikes, _ = integer_neuron_scan(_integer_currents(layer, x), program)
    assert torch.equal(int_spikes.flatten().float(), spikes)
    # currents 1, 0, 0, 1, 1. At-threshold: m = 1 fires at once (t = 0, 3, 4). Strict: m = 1 is carried as u = 1
    # and m = 1, 1, 2, 1 follows, so only t = 3 reaches 2.
    expected = [1, 0, 0, 1, 1] if fire_at_threshold else [0, 0, 0, 1, 0]
    assert spikes.tolist() == expected


def test_identity_requantization_is_a_clamp():
    program = integer_neuron_program(0.6, 3, NeuronParams(threshold=0.45, reset="soft"), transform="identity")
    # Q = 3, step 0.2, theta / step = 2.25 -> threshold 3; a soft reset subtracts 2.25 grid units before rounding
    assert program.threshold_int == 3
    assert program.bounds_no_spike == (-2, -1, 0, 1, 2, 3)  # u = -3 + #{b <= m} = clamp(m, -3, 3)
    assert program.bounds_spike == (0, 1, 2, 3, 4, 5)  # round(clamp(m - 2.25, -3, 3)) >= k  <=>  m >= k + 1.75
    currents = torch.tensor([2, 0, -5, 9, 1, 0], dtype=torch.int64).reshape(6, 1)
    spikes, u = integer_neuron_scan(currents, program)
    # m = 2 -> u 2; m = 2 -> 2; m = -3 -> -3; m = 6 fires, 3.75 clipped to 3; m = 4 fires, 1.75 -> 2; m = 2 -> 2
    assert spikes.flatten().tolist() == [0, 0, 0, 1, 1, 0]
    assert u.item() == 2


def test_integer_program_rejects_bad_inputs():
    with pytest.raises(ValueError, match="bits=1"):
        integer_neuron_program(0.5, 1)
    with pytest.raises(ValueError, match="reset='none'"):
        integer_neuron_program(0.5, 2, NeuronParams(reset="none"))
    with pytest.raises(TypeError, match="integer currents"):
        integer_neuron_scan(torch.zeros(3, 2), integer_neuron_program(0.5, 2))
