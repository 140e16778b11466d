"""The exact integer products of the quantized layers (``functional.intmm``).

What is guaranteed, and tested here against independent computations:

* a quantized layer declared to see spikes gives, for 0/1 input, the float64 product of its codes and the input
  scaled by the grid step, rounded once to float32, bit for bit, for every layer kind and option the integer kernels
  cover (the float32 product of the same operands is not that exact: the test shows a case where it differs);
* its gradients are bit for bit those of the float layer for the same upstream gradient (input, weight, alpha, bias);
* an input that is not 0/1 makes the output NaN, never a silently wrong number, and the forward pass reads nothing
  on the host;
* every case the integer kernels do not cover takes the float product;
* on random spiking VGGs, in both back-ends, every spike, the readout, the codes and every parameter gradient equal
  those of a reference network whose quantized layers compute with float products and then output the float64
  product rounded to float32 (a forward hook).
"""

import pytest
import torch
import torch.nn.functional as F
from host_reads import no_host_reads
from torch import nn

from quest_lightning.functional.intmm import spikes_int8
from quest_lightning.nn import QuantConv1d, QuantConv2d, QuantLinear, SpikingVGG, quantized_layers, spiking_neurons
from quest_lightning.nn.layers import QuantLayerMixin

T, B = 3, 4


def _spikes(*shape, p=0.3, seed=0):
    return (torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) < p).float()


def _exact(layer: QuantLayerMixin, x: torch.Tensor) -> torch.Tensor:
    """The float64 product of the layer's codes and ``x``, times the grid step (alpha / Q in float32, the weight of
    code 1), rounded to float32 once (float64 holds it exactly: a 24-bit step times an integer sum below 2^24), then
    the bias in float32."""
    step = (layer.alpha.detach() / layer.qmax).double()
    w = layer.codes.double() * step
    lead = x.dim() - layer.feature_dims
    xd = x.double().flatten(0, lead - 1) if lead > 1 else x.double()
    if isinstance(layer, QuantLinear):
        y = xd @ w.t()
    else:
        conv = F.conv2d if isinstance(layer, QuantConv2d) else F.conv1d
        y = conv(xd, w, None, layer.stride, layer.padding, layer.dilation)
    y = y.float().unflatten(0, x.shape[:lead]) if lead > 1 else y.float()
    if layer.bias is not None:
        y = y + layer.bias.detach().view(-1, *([1] * (layer.feature_dims - 1)))
    return y


def _integer(y: torch.Tensor) -> bool:
    """Whether ``y`` came out of an integer product (its autograd node, under the time-unfolding views)."""
    fn = y.grad_fn
    while fn is not None and type(fn).__name__ in ("ViewBackward0", "UnsafeViewBackward0"):
        fn = fn.next_functions[0][0]
    return fn is not None and type(fn).__name__.startswith("_Spike")


LAYERS = {
    "linear-2bit": (lambda: QuantLinear(37, 11, bits=2), (T, B, 37)),
    "linear-3bit-identity": (lambda: QuantLinear(300, 40, bits=3, transform="identity"), (T, B, 300)),
    "linear-8bit-bias-single-step": (lambda: QuantLinear(64, 9, bits=8, bias=True), (B, 64)),
    "linear-4bit-4d": (lambda: QuantLinear(20, 7, bits=4), (T, B, 5, 20)),
    "conv2d-2bit": (lambda: QuantConv2d(3, 5, 3, padding=1, bits=2), (T, B, 3, 6, 6)),
    "conv2d-strided-dilated-bias": (
        lambda: QuantConv2d(4, 6, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2), bias=True, bits=3),
        (T, B, 4, 9, 8),
    ),
    "conv2d-4bit-single-step": (lambda: QuantConv2d(2, 3, 5, padding=2, bits=4), (B, 2, 7, 7)),
    "conv1d-dilated": (lambda: QuantConv1d(3, 5, 3, padding=2, dilation=2, bits=2), (T, B, 3, 10)),
}


def _layer(name: str, seed: int = 0) -> tuple[QuantLayerMixin, torch.Tensor]:
    build, shape = LAYERS[name]
    torch.manual_seed(seed)
    layer = build()
    if layer.bias is not None:
        with torch.no_grad():
            layer.bias.uniform_(-0.5, 0.5)
    layer.input_kind = "spikes"
    return layer, _spikes(*shape, seed=seed + 1)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_integer_product_is_the_float64_product_rounded_once(name):
    layer, x = _layer(name)
    y = layer(x)
    assert _integer(y), "the integer path was not taken"
    assert torch.equal(y, _exact(layer, x))
    assert y.dtype == torch.float32 and y.shape == layer._apply_weight(x, layer.quantized_weight()).shape
    assert layer.codes.abs().max() == layer.qmax and (layer.codes.abs() < layer.qmax).any()  # clipped and interior


def test_the_float32_product_is_less_exact():
    """The float product rounds every partial sum: on a 300-wide layer it misses the exact value on most outputs,
    which the integer product hits everywhere."""
    layer, x = _layer("linear-3bit-identity")
    y = layer(x)  # refreshes the codes
    exact = _exact(layer, x)
    assert torch.equal(y, exact)
    layer.integer_products = False
    floats = layer(x)
    assert not torch.equal(floats, exact)
    assert (floats != exact).float().mean() > 0.3
    torch.testing.assert_close(floats, exact, rtol=1e-6, atol=1e-6)  # the same product, rounded differently


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_gradients_are_those_of_the_float_layer(name):
    """For one upstream gradient, the integer layer's gradients equal the float layer's bit for bit: only the
    forward product changed."""
    grads = []
    for integer in (True, False):
        layer, x = _layer(name)
        layer.integer_products = integer
        x.requires_grad_(True)
        y = layer(x)
        assert _integer(y) is integer
        upstream = torch.randn(y.shape, generator=torch.Generator().manual_seed(7))
        (y * upstream).sum().backward()
        bias = [layer.bias.grad] if layer.bias is not None else []
        grads.append([x.grad, layer.weight.grad, layer.alpha.grad, *bias])
    for ours, floats in zip(*grads, strict=True):
        assert torch.equal(ours, floats)
    assert grads[0][2].abs() > 0 and grads[0][1].abs().sum() > 0


@pytest.mark.parametrize(
    ("values", "binary"),
    [
        ([0.0, 1.0, 1.0, 0.0], True),
        ([], True),
        ([0.0, 0.5], False),
        ([1.0, 2.0], False),
        ([0.0, -1.0], False),
        ([-0.0, 1.0], False),  # a negative zero is not what a spike function emits
        ([1.0, float("nan")], False),
        ([0.0, float("inf")], False),
        ([1e-45, 1.0], False),  # a denormal
        ([1.0 - 2**-24, 0.0], False),
    ],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_spike_test_is_exact(values, binary, dtype):
    x = torch.tensor(values, dtype=torch.float32).to(dtype)
    if dtype == torch.bfloat16 and values and values[0] in (1.0 - 2**-24, 1e-45):
        return  # rounds to 1.0 or 0.0 in bfloat16
    xi, ok = spikes_int8(x)
    assert bool(ok) is binary
    assert xi.dtype == torch.int8
    if binary:
        assert xi.tolist() == [int(v) for v in values]


def test_the_hysteresis_quantizer_keeps_the_product_exact():
    """With write-aware hysteresis the codes are the held ones; the integer product is still theirs, exactly, and the
    gradients are still the float layer's."""
    from quest_lightning.energy.aware import set_hysteresis

    grads = []
    for integer in (True, False):
        layer, x = _layer("conv2d-2bit")
        set_hysteresis(layer, 0.3)
        layer.integer_products = integer
        with torch.no_grad():
            layer(x)
            layer.weight.add_(torch.randn(layer.weight.shape, generator=torch.Generator().manual_seed(2)) * 0.05)
        x.requires_grad_(True)
        y = layer(x)
        assert _integer(y) is integer
        if integer:
            assert torch.equal(y, _exact(layer, x))
            assert not torch.equal(layer.codes, _plain_codes(layer))  # the held codes, not the plain MINT ones
        (y * torch.randn(y.shape, generator=torch.Generator().manual_seed(7))).sum().backward()
        grads.append((x.grad, layer.weight.grad, layer.alpha.grad))
    for ours, floats in zip(*grads, strict=True):
        assert torch.equal(ours, floats)


def _plain_codes(layer):
    from quest_lightning.functional.quantize import mint_codes

    return mint_codes(layer.weight, layer.alpha, layer.bits, layer.transform)


@pytest.mark.parametrize("bad", [0.5, 2.0, -1.0, float("nan")])
def test_input_that_is_not_spikes_gives_nan_not_a_wrong_number(bad):
    layer, x = _layer("conv2d-2bit")
    x[1, 2, 0, 3, 3] = bad
    y = layer(x)
    assert _integer(y) and torch.isnan(y).all()
    layer.input_kind = "auto"  # undeclared: the float product, whatever the input
    assert not _integer(layer(x))


@pytest.mark.parametrize("record", [False, True])
def test_integer_forward_reads_nothing_on_the_host(record):
    layer, x = _layer("linear-2bit")
    layer.record = record
    layer(x)  # the first call allocates the records
    with no_host_reads():
        y = layer(x)
    assert _integer(y) and torch.equal(y, _exact(layer, x))


def _no_integer_cases():
    def perturbed():
        layer = QuantLinear(8, 3, input_kind="spikes")
        layer.weight_perturbation = lambda w, codes: w * 1.01
        return layer, _spikes(B, 8)

    def disabled_after(flag):
        def build():
            layer = QuantLinear(8, 3, input_kind="spikes")
            setattr(layer, flag[0], flag[1])
            return layer, _spikes(B, 8)

        return build

    return {
        "undeclared": lambda: (QuantLinear(8, 3), _spikes(B, 8)),
        "analog": lambda: (QuantLinear(8, 3, input_kind="analog"), _spikes(B, 8)),
        "switched-off": disabled_after(("integer_products", False)),
        "full-precision": lambda: (QuantLinear(8, 3, enabled=False, input_kind="spikes"), _spikes(B, 8)),
        "perturbed-weights": perturbed,
        "float64": lambda: (QuantLinear(8, 3, input_kind="spikes", dtype=torch.float64), _spikes(B, 8).double()),
        "groups": lambda: (QuantConv2d(4, 4, 3, groups=2, input_kind="spikes"), _spikes(B, 4, 5, 5)),
        "same-padding": lambda: (QuantConv2d(2, 3, 3, padding="same", input_kind="spikes"), _spikes(B, 2, 5, 5)),
        "reflect-padding": lambda: (
            QuantConv2d(2, 3, 3, padding=1, padding_mode="reflect", input_kind="spikes"),
            _spikes(B, 2, 5, 5),
        ),
        "sums-beyond-float32": lambda: (  # 127 * K reaches 2^24
            QuantLinear(2**24 // 127 + 1, 1, bits=8, input_kind="spikes"),
            _spikes(1, 2**24 // 127 + 1),
        ),
    }


@pytest.mark.parametrize("case", sorted(_no_integer_cases()))
def test_cases_the_integer_kernels_do_not_cover_take_the_float_product(case):
    layer, x = _no_integer_cases()[case]()
    y = layer(x)
    assert not _integer(y)
    assert torch.isfinite(y).all()


def test_autocast_takes_the_float_product():
    layer, x = _layer("linear-2bit")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(x)
    assert y.dtype == torch.bfloat16 and not _integer(y)


# --------------------------------------------------------------------------------------------------------------------
# whole networks


class _ExactOutput(torch.autograd.Function):
    """Forward: the exact value; backward: the gradient straight to the float output (the float layer's)."""

    @staticmethod
    def forward(ctx, y, exact):
        return exact

    @staticmethod
    def backward(ctx, grad):
        return grad, None


def _run(net: nn.Module, x: torch.Tensor, reference: bool):
    """Spikes of every neuron call, the readout, the codes and the parameter gradients; with ``reference`` the
    quantized layers take float products and output the float64 product rounded (a forward hook)."""
    handles, spikes, integer = [], [], []
    for _, layer in quantized_layers(net):
        layer.integer_products = not reference
        if reference and layer.input_kind == "spikes":
            hook = lambda m, args, y: _ExactOutput.apply(y, _exact(m, args[0]).detach())  # noqa: E731
            handles.append(layer.register_forward_hook(hook))
        handles.append(layer.register_forward_hook(lambda m, args, y: integer.append(_integer(y))))

    def keep(m, args, out):
        spikes.append(out[0] if isinstance(out, tuple) else out)  # snnTorch's Leaky returns (spikes, membrane)

    for _, neuron in spiking_neurons(net):  # the blocks call the neuron modules, so their hooks see every call
        handles.append(neuron.register_forward_hook(keep))
    net.zero_grad(set_to_none=True)
    out = net(x)
    out.pow(2).sum().backward()
    for h in handles:
        h.remove()
    codes = [layer.codes.clone() for _, layer in quantized_layers(net)]
    grads = {name: p.grad.clone() for name, p in net.named_parameters() if p.grad is not None}
    return [s.detach() for s in spikes], out.detach(), codes, grads, integer


@pytest.mark.parametrize("backend", ["spikingjelly", "snntorch"])
@pytest.mark.parametrize(("neuron", "reset", "bits"), [("if", "hard", 2), ("lif", "soft", 3)])
def test_random_networks_match_the_exact_reference(backend, neuron, reset, bits):
    torch.manual_seed(3)
    options = dict(image_size=8, bits=bits, backend=backend, neuron=neuron, reset=reset, threshold=0.3)
    net = SpikingVGG([6, "P", 8, 8, "P"], [24, 16], **options)
    with torch.no_grad():  # larger weights: more spikes deep in the network
        for _, layer in quantized_layers(net):
            layer.weight.mul_(4.0)
            layer.reset_alpha()
    x = (torch.rand(B, 3, 8, 8, generator=torch.Generator().manual_seed(5)) * 2).expand(T, B, 3, 8, 8)
    ours = _run(net, x, reference=False)
    ref = _run(net, x, reference=True)
    spikes, out, codes, grads, integer = ours
    assert sum(integer) == 4 and not any(ref[4])  # the four spike-fed quantized layers; none in the reference
    assert len(spikes) == len(ref[0]) > 0
    for s, r in zip(spikes, ref[0], strict=True):
        assert torch.equal(s, r)
    last = torch.stack(spikes[-T:]) if backend == "snntorch" else spikes[-1]  # snnTorch's neurons: one call a step
    assert 0 < float(last.mean()) < 1  # the deepest neurons fire, not all the time
    assert torch.equal(out, ref[1])
    for c, r in zip(codes, ref[2], strict=True):
        assert torch.equal(c, r)
    assert grads.keys() == ref[3].keys()
    for name, g in grads.items():
        assert torch.equal(g, ref[3][name]), name


def test_spiking_vgg_declares_spikes_where_a_neuron_feeds_the_layer():
    def kinds(net):
        blocks = [*net.features, *net.classifier]
        return [b.layer.input_kind for b in blocks] + [net.readout.input_kind]

    assert kinds(SpikingVGG([4, "P", 4], [8, 8])) == ["auto", "spikes", "spikes", "spikes", "spikes"]
    assert kinds(SpikingVGG([4, "P", 4], [8, 8], pool="avg")) == ["auto", "auto", "spikes", "spikes", "spikes"]
    assert kinds(SpikingVGG([4, 4, "P"], [8, 8], pool="avg")) == ["auto", "spikes", "auto", "spikes", "spikes"]
    assert kinds(SpikingVGG([4, "P", 4], [8, 8], dropout=0.5)) == ["auto", "spikes", "spikes", "auto", "auto"]
