"""QuantConv2d and QuantLinear: drop-in nn layers with MINT weights, multi-step input and input recording."""

import pytest
import torch
from torch import nn

from quest_lightning.functional.quantize import init_alpha, mint_codes, mint_quantize
from quest_lightning.nn import QuantConv2d, QuantLinear

T, B = 3, 2


def _conv(**kwargs):
    torch.manual_seed(0)
    return QuantConv2d(3, 4, 3, padding=1, **kwargs)


def _linear(**kwargs):
    torch.manual_seed(0)
    return QuantLinear(6, 5, **kwargs)


LAYERS = {
    "conv": (_conv, (3, 5, 5)),
    "linear": (_linear, (6,)),
}


def _input(kind, *lead, seed=1):
    return torch.randn(*lead, *LAYERS[kind][1], generator=torch.Generator().manual_seed(seed))


def test_layers_are_nn_subclasses():
    assert issubclass(QuantConv2d, nn.Conv2d)
    assert issubclass(QuantLinear, nn.Linear)
    assert isinstance(_conv(), nn.Conv2d) and isinstance(_linear(), nn.Linear)


@pytest.mark.parametrize("kind", LAYERS)
def test_alpha_init_and_grid(kind):
    layer = LAYERS[kind][0](bits=3)
    w = layer.weight.detach()
    assert layer.alpha.item() == pytest.approx(2 * w.abs().mean().item() / 3**0.5)
    assert layer.num_levels == 7 and layer.qmax == 3
    torch.testing.assert_close(layer.step_size, layer.alpha.detach() / 3)
    # a quantized 1-bit layer is refused (tests/nn/test_scale.py); a full-precision one may keep bits=1
    assert [LAYERS[kind][0](bits=b, enabled=b > 1).num_levels for b in (1, 2, 3, 4, 8)] == [1, 3, 7, 15, 255]


@pytest.mark.parametrize("kind", LAYERS)
def test_forward_uses_quantized_weights_and_refreshes_codes(kind):
    make, _ = LAYERS[kind]
    layer = make(bits=2)
    assert layer.codes.abs().sum() == 0  # nothing computed yet
    x = _input(kind, B)
    y = layer(x)
    w_q, codes = mint_quantize(layer.weight, layer.alpha, 2, "tanh")
    assert torch.equal(layer.codes, codes)
    assert set(layer.codes.unique().tolist()) == {-1, 0, 1}
    ref = make(bits=2, enabled=False)
    with torch.no_grad():
        ref.weight.copy_(w_q)
    torch.testing.assert_close(y, ref(x), rtol=0, atol=0)
    # the codes follow the weights on the next forward pass
    with torch.no_grad():
        layer.weight.neg_()
    assert torch.equal(layer.codes, codes)
    assert torch.equal(layer.current_codes(), -codes)  # read without a forward pass
    layer(x)
    assert torch.equal(layer.codes, -codes)
    assert torch.equal(layer.codes, mint_codes(layer.weight, layer.alpha, 2, "tanh"))


def test_disabled_equals_plain_layers_exactly():
    torch.manual_seed(0)
    q = QuantConv2d(3, 4, 3, stride=2, padding=1, bias=True, enabled=False)
    ref = nn.Conv2d(3, 4, 3, stride=2, padding=1, bias=True)
    ref.load_state_dict({k: v for k, v in q.state_dict().items() if k != "alpha"})
    x = torch.randn(B, 3, 7, 7)
    assert torch.equal(q(x), ref(x))
    lq = QuantLinear(6, 5, bias=True, enabled=False)
    lref = nn.Linear(6, 5)
    lref.load_state_dict({k: v for k, v in lq.state_dict().items() if k != "alpha"})
    x = torch.randn(B, 6)
    assert torch.equal(lq(x), lref(x))
    assert lq.codes.abs().sum() == 0  # no codes when quantization is off


@pytest.mark.parametrize("kind", LAYERS)
def test_multi_step_equals_per_step_loop(kind):
    layer = LAYERS[kind][0](bits=3)
    x = _input(kind, T, B).requires_grad_(True)
    y = layer(x)
    assert y.shape[:2] == (T, B)
    x_loop = x.detach().clone().requires_grad_(True)
    y_loop = torch.stack([layer(x_loop[t]) for t in range(T)])
    torch.testing.assert_close(y, y_loop, rtol=1e-6, atol=1e-6)
    g = torch.randn(y.shape, generator=torch.Generator().manual_seed(5))
    (y * g).sum().backward()
    (y_loop * g).sum().backward()
    torch.testing.assert_close(x.grad, x_loop.grad, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kind", LAYERS)
def test_repeated_input_fast_path_matches_materialised_input(kind):
    """Direct coding repeats one tensor as a stride-0 view; the layer computes it once, with identical results."""
    results = []
    for materialise in (False, True):
        layer = LAYERS[kind][0](bits=2)
        base = _input(kind, B).requires_grad_(True)
        x = base.unsqueeze(0).expand(T, *base.shape)
        if materialise:
            x = x.contiguous()
        else:
            assert x.stride(0) == 0
        y = layer(x)
        assert y.shape[:2] == (T, B)
        g = torch.randn(y.shape, generator=torch.Generator().manual_seed(7))
        (y * g).sum().backward()
        results.append((y.detach(), base.grad, layer.weight.grad, layer.alpha.grad))
    for fast, full in zip(*results, strict=True):
        torch.testing.assert_close(fast, full, rtol=1e-4, atol=1e-5)
    assert results[0][3].abs() > 0  # alpha receives a gradient


@pytest.mark.parametrize("kind", LAYERS)
@pytest.mark.parametrize("expanded", [False, True])
def test_recording_counts_inputs(kind, expanded):
    layer = LAYERS[kind][0](bits=2)
    gen = torch.Generator().manual_seed(3)
    shape = LAYERS[kind][1]
    if expanded:
        base = (torch.rand(B, *shape, generator=gen) < 0.5).float()
        x = base.unsqueeze(0).expand(T, *base.shape)
    else:
        x = (torch.rand(T, B, *shape, generator=gen) < 0.5).float()
    layer(x)  # record is off by default: nothing is stored
    assert layer.input_counts.numel() == 0 and layer.recorded_rows == 0
    layer.record = True
    layer(x)
    expected = x.sum(dim=(0, 1), dtype=torch.float64)
    assert layer.input_counts.dtype == torch.float64
    assert torch.equal(layer.input_counts, expected)
    assert layer.recorded_rows == T * B
    layer(x[0])  # single-step input adds B rows
    assert torch.equal(layer.input_counts, expected + x[0].sum(0, dtype=torch.float64))
    assert layer.recorded_rows == T * B + B
    layer.reset_recording()
    assert layer.input_counts.abs().sum() == 0 and layer.recorded_rows == 0
    layer.record = False
    layer(x)
    assert layer.input_counts.abs().sum() == 0 and layer.recorded_rows == 0


def test_recording_is_exact_across_row_blocks():
    """The float64 sums run block by block over the rows: spike counts over many blocks, and one beyond float32's
    exact integers, are exact, and so is the count of non-binary elements (against int64 recounts)."""
    from quest_lightning.nn.layer_input import _SUM_BLOCK

    layer = QuantLinear(2, 3, bits=2)
    layer.record = True
    rows = 3 * _SUM_BLOCK // 2 + 17  # blocks of _SUM_BLOCK // 2 rows of two features, and a partial one
    x = (torch.rand(rows, 2, generator=torch.Generator().manual_seed(0)) < 0.9).float()
    x[:4, 0] = torch.tensor([0.5, -1.0, 2.0, 0.25])  # analog values in the first feature
    layer(x)
    layer(x)
    assert int(layer.input_counts[1]) == 2 * int(x[:, 1].to(torch.int64).sum())
    assert float(layer.input_counts[0]) == pytest.approx(2 * float(x[:, 0].double().sum()), rel=1e-12)
    assert int(layer.nonbinary_inputs) == 2 * 4
    ones = QuantLinear(1, 1, bits=2)
    ones.record = True
    ones(torch.ones(2**24 + 3, 1))
    assert int(ones.input_counts) == 2**24 + 3  # an odd count past 2^24: not a float32 number


def test_codes_are_not_checkpointed_and_alpha_is():
    layer = _conv(bits=2)
    assert set(layer.state_dict()) == {"weight", "alpha"}
    other = QuantConv2d(3, 4, 3, padding=1, bits=2)
    other.load_state_dict(layer.state_dict())
    x = _input("conv", B)
    assert torch.equal(other(x), layer(x))


def test_reset_alpha_and_transform_option():
    layer = _linear(bits=4, transform="identity")
    with torch.no_grad():
        layer.alpha.fill_(5.0)
    layer.reset_alpha()
    torch.testing.assert_close(layer.alpha.detach(), init_alpha(layer.weight, 4))
    layer(_input("linear", B))
    assert torch.equal(layer.codes, mint_codes(layer.weight, layer.alpha, 4, "identity"))
    assert "bits=4" in repr(layer) and "identity" in repr(layer)
