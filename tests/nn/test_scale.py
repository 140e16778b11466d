"""The MINT scale alpha: strictly positive by construction, the two initialisations, and 1-bit grids refused."""

import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from quest_lightning.functional.grid import check_quant_bits
from quest_lightning.functional.integer import integer_neuron_program
from quest_lightning.functional.quantize import (
    ALPHA_FLOOR_RATIO,
    alpha_floor,
    init_alpha,
    init_alpha_range,
    initial_alpha,
    mint_codes,
    mint_quantize,
)
from quest_lightning.nn import QuantConv2d, QuantIFNode, QuantLeaky, QuantLinear, SpikingVGG, make_neuron
from quest_lightning.nn.vgg import SpikingBlock


@pytest.fixture(scope="module")
def issue_case() -> QuantLinear:
    """The reported case: QuantLinear(1024, 64) under the recipe's optimizer (Adam, lr 1e-3, weight decay 1e-4),
    driven towards zero output. Before alpha was kept positive it ended with alpha = -0.00015 after 60 steps."""
    torch.manual_seed(0)
    layer = QuantLinear(1024, 64, bits=2)
    opt = torch.optim.Adam(layer.parameters(), lr=1e-3, weight_decay=1e-4)
    x = torch.randn(32, 1024)
    for _ in range(60):
        loss = layer(x).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return layer


def _signs_agree(layer) -> None:
    """Codes, quantized weights and (transformed) weights agree in sign; nothing is NaN."""
    alpha = layer.alpha.detach()
    assert alpha.item() > 0 and math.isfinite(alpha.item())
    codes = layer.current_codes()
    t = torch.tanh(layer.weight.detach()) if layer.transform == "tanh" else layer.weight.detach()
    nonzero = codes != 0
    assert nonzero.any()
    assert torch.equal(torch.sign(codes[nonzero]).float(), torch.sign(t[nonzero]))
    w_q = layer.quantized_weight().detach()
    assert not torch.isnan(w_q).any()
    assert torch.equal(torch.sign(w_q), torch.sign(codes).to(w_q.dtype))


def test_issue_case_keeps_alpha_positive_and_codes_in_sign(issue_case):
    layer = issue_case
    # read straight after the last optimizer step, with no forward pass in between
    alpha = layer.alpha.item()
    assert alpha > 0
    # the case does drive alpha to the floor: without it alpha would be negative (it was -0.00015)
    floor = ALPHA_FLOOR_RATIO * math.tanh(layer.weight.detach().abs().max().item())
    assert alpha == pytest.approx(floor, rel=1e-6)
    _signs_agree(layer)


def test_alpha_stays_positive_under_an_optimizer_step_without_a_forward_pass():
    layer = QuantLinear(8, 4, bits=3)
    opt = torch.optim.SGD([layer.alpha], lr=10.0)
    layer.alpha.grad = torch.ones_like(layer.alpha)  # one step takes alpha to about -10
    opt.step()
    assert layer.alpha.item() == pytest.approx(alpha_floor(layer.weight).item())


@pytest.mark.parametrize("value", [0.0, -0.05])
@pytest.mark.parametrize("make", [lambda: QuantLinear(16, 8, bits=2), lambda: QuantConv2d(2, 4, 3, bits=3)])
def test_alpha_set_by_hand_to_zero_or_negative_is_projected_before_use(make, value):
    torch.manual_seed(0)
    layer = make()
    with torch.no_grad():
        layer.alpha.fill_(value)
    x = torch.randn(3, *((16,) if isinstance(layer, QuantLinear) else (2, 5, 5)))
    y = layer(x)
    assert not torch.isnan(y).any()
    assert layer.alpha.item() == pytest.approx(alpha_floor(layer.weight).item())
    assert torch.equal(layer.codes, layer.current_codes())
    _signs_agree(layer)
    with torch.no_grad():  # current_codes and step_size project too
        layer.alpha.fill_(value)
    assert torch.equal(layer.current_codes(), mint_codes(layer.weight, alpha_floor(layer.weight), layer.bits))
    layer.alpha.data.fill_(value)
    assert layer.step_size.item() > 0


def test_healthy_alpha_is_untouched_bit_for_bit():
    torch.manual_seed(0)
    layer = QuantLinear(64, 32, bits=4)
    before = layer.alpha.detach().clone()
    x = torch.randn(5, 64)
    y = layer(x)
    assert torch.equal(layer.alpha.detach(), before)
    w_q, _ = mint_quantize(layer.weight, before, 4, "tanh")
    assert torch.equal(y, torch.nn.functional.linear(x, w_q))


def test_projection_inside_one_graph_keeps_a_single_step_loop_differentiable():
    """A layer called T times in one graph: projecting alpha before each call must not invalidate the saved alpha
    (the gradient equals that of a layer whose alpha was set to the floor beforehand)."""
    torch.manual_seed(0)
    layer = QuantLinear(6, 4, bits=2)
    ref = QuantLinear(6, 4, bits=2)
    ref.load_state_dict(layer.state_dict())
    with torch.no_grad():
        layer.alpha.fill_(-1.0)
        ref.alpha.copy_(alpha_floor(ref.weight))
    x = torch.randn(3, 2, 6)
    for model in (layer, ref):
        sum(model(x[t]).square().sum() for t in range(3)).backward()
    assert layer.alpha.grad is not None and layer.alpha.grad.abs() > 0
    torch.testing.assert_close(layer.alpha.grad, ref.alpha.grad, rtol=0, atol=0)
    torch.testing.assert_close(layer.weight.grad, ref.weight.grad, rtol=0, atol=0)


def test_membrane_quantizer_and_integer_path_read_the_positive_alpha(issue_case):
    torch.manual_seed(0)
    block = SpikingBlock(QuantLinear(8, 4, bits=2), make_neuron("spikingjelly", "if", "hard"))
    with torch.no_grad():
        block.layer.alpha.fill_(-0.3)
    block(torch.rand(4, 2, 8))  # the layer projects alpha before the neuron builds its membrane quantizer
    quant = block.neuron.membrane_quantizer()
    assert quant.alpha is block.layer.alpha and quant.alpha.item() > 0
    alpha = float(issue_case.alpha.detach())
    program = integer_neuron_program(alpha, 2, transform="tanh")  # Q = 1: the step is alpha itself
    assert program.threshold_int == math.ceil(np.float32(0.5) / np.float32(alpha)) > 0


class _Holder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = QuantLinear(16, 8, bits=2)


def test_old_checkpoint_with_negative_alpha_loads_as_its_magnitude_with_the_same_weights():
    torch.manual_seed(0)
    old = _Holder()
    state = old.state_dict()
    state["fc.alpha"] = torch.tensor(-0.00015)  # negative, as the old code could leave it
    w = state["fc.weight"]
    old_w_q, old_codes = mint_quantize(w, state["fc.alpha"], 2, "tanh")  # what the old forward used
    new = _Holder()
    with pytest.warns(UserWarning, match=r"fc\.alpha=-0\.00015 is negative"):
        new.load_state_dict(state)
    assert new.fc.alpha.item() == pytest.approx(0.00015)
    assert torch.equal(new.fc.quantized_weight().detach(), old_w_q)  # the same quantized weights, bit for bit
    assert torch.equal(new.fc.codes, -old_codes)  # whose codes now agree with them in sign
    assert state["fc.alpha"].item() < 0  # the caller's state dict is left alone


@pytest.mark.parametrize("bad", [0.0, float("nan"), float("inf")])
def test_checkpoint_with_unusable_alpha_is_refused_naming_the_layer(bad):
    state = _Holder().state_dict()
    state["fc.alpha"] = torch.tensor(bad)
    with pytest.raises(RuntimeError, match=r"fc\.alpha=.* is not a usable MINT scale: it must be positive"):
        _Holder().load_state_dict(state)


def test_state_dict_keeps_the_alpha_key_and_round_trips():
    layer = QuantConv2d(3, 4, 3, bits=2)
    assert set(layer.state_dict()) == {"weight", "alpha"}
    other = QuantConv2d(3, 4, 3, bits=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        other.load_state_dict(layer.state_dict())
    assert torch.equal(other.alpha, layer.alpha)


# --------------------------------------------------------------------------------------------------------------------
# initialisation


def _clipped_share(layer) -> float:
    t = torch.tanh(layer.weight.detach())
    return (t.abs() > layer.alpha.detach()).float().mean().item()


@pytest.mark.parametrize(("bits", "share"), [(3, 0.42), (4, 0.62), (8, 0.91)])
def test_mint_init_clips_most_weights_as_method_md_says(bits, share):
    """Uniform weights on [-a, a]: alpha_0 = 2 mean|W| / sqrt(Q) = a / sqrt(Q), so 1 - 1/sqrt(Q) of them lie beyond
    it (42%, 62%, 91% at 3, 4, 8 bits); the range init clips about 0.1%."""
    torch.manual_seed(0)
    mint = QuantLinear(4096, 256, bits=bits)
    assert _clipped_share(mint) == pytest.approx(1 - 1 / math.sqrt(2 ** (bits - 1) - 1), abs=0.01)
    assert _clipped_share(mint) == pytest.approx(share, abs=0.01)
    ranged = QuantLinear(4096, 256, bits=bits, alpha_init="range")
    assert _clipped_share(ranged) == pytest.approx(0.001, abs=2e-4)


@pytest.mark.parametrize("transform", ["tanh", "identity"])
def test_range_init_is_the_nearest_rank_percentile(transform):
    w = torch.randn(37, 11, generator=torch.Generator().manual_seed(0)) * 2
    t = np.abs(np.tanh(w.numpy()) if transform == "tanh" else w.numpy()).ravel()
    for p in (50.0, 99.0, 99.9, 100.0):
        expected = np.percentile(t, p, method="inverted_cdf")
        assert init_alpha_range(w, transform, p).item() == pytest.approx(float(expected), rel=1e-6)
    expected = np.percentile(t, 99.9, method="inverted_cdf")
    assert initial_alpha(w, 3, transform, "range").item() == pytest.approx(float(expected))
    assert initial_alpha(w, 3, transform, "mint").item() == pytest.approx(init_alpha(w, 3).item())


def test_range_init_option_on_layers_reset_and_vgg():
    torch.manual_seed(0)
    layer = QuantConv2d(8, 16, 3, bits=4, alpha_init="range")
    assert layer.alpha.item() == pytest.approx(init_alpha_range(layer.weight).item())
    with torch.no_grad():
        layer.weight.mul_(0.5)
    layer.reset_alpha()
    assert layer.alpha.item() == pytest.approx(init_alpha_range(layer.weight).item())
    net = SpikingVGG([4, "P"], [8], in_channels=1, image_size=4, bits=3, alpha_init="range", quantize_readout=True)
    for m in net.modules():
        if isinstance(m, QuantConv2d | QuantLinear):
            assert m.alpha_init == "range"
            assert m.alpha.item() == pytest.approx(init_alpha_range(m.weight).item())


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: QuantLinear(4, 4, alpha_init="max"), r"alpha_init='max' is unknown: use 'mint'"),
        (lambda: SpikingVGG([4], [], alpha_init="lsq"), r"alpha_init='lsq' is unknown"),
        (lambda: init_alpha_range(torch.ones(3), percentile=0), r"percentile=0 must lie in \(0, 100\]"),
    ],
)
def test_bad_alpha_init_options(make, match):
    with pytest.raises(ValueError, match=match):
        make()


# --------------------------------------------------------------------------------------------------------------------
# 1-bit grids


@pytest.mark.parametrize(
    "make",
    [
        lambda **kw: QuantLinear(4, 4, **kw),
        lambda **kw: QuantConv2d(1, 2, 3, **kw),
        lambda **kw: SpikingVGG([4], [8], in_channels=1, image_size=4, **kw),
    ],
)
def test_one_bit_quantized_layers_are_refused_at_construction(make):
    with pytest.raises(ValueError, match=r"bits=1 gives .* a grid with only the zero level .* Use bits >= 2"):
        make(bits=1)


def test_one_bit_full_precision_layers_are_allowed_until_quantization_is_turned_on():
    layer = QuantLinear(4, 4, bits=1, enabled=False)
    assert layer.num_levels == 1
    SpikingVGG([4], [8], in_channels=1, image_size=4, bits=1, quantize=False)
    with pytest.raises(ValueError, match=r"bits=1 gives QuantLinear\(in_features=4, out_features=4, bias=False\)"):
        layer.enabled = True
    assert not layer.enabled


def test_check_quant_bits_names_the_option():
    assert check_quant_bits(2, name="mem_bits") == 2
    with pytest.raises(ValueError, match=r"mem_bits=1 gives the membrane a grid with only the zero level"):
        check_quant_bits(1, name="mem_bits", what="the membrane")
    with pytest.raises(ValueError, match=r"mem_bits=9 is not supported"):
        check_quant_bits(9, name="mem_bits")


@pytest.mark.parametrize("make", [QuantIFNode, QuantLeaky], ids=["sj", "snntorch"])
def test_a_one_bit_membrane_is_refused_at_construction(make):
    with pytest.raises(ValueError, match=r"mem_bits=1 gives the membrane a grid with only the zero level"):
        make(mem_bits=1)
