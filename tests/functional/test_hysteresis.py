"""The write-aware hysteresis quantizer: the decision by hand, MINT's codes and gradients where it must agree, fewer
code changes where it must not, and a layer that is bit-identical to the plain one when the option is off."""

from __future__ import annotations

import copy
import doctest

import pytest
import torch

from quest_lightning.energy.aware import set_hysteresis
from quest_lightning.functional import hysteresis as hysteresis_module
from quest_lightning.functional.hysteresis import check_margin, hysteresis_codes, hysteresis_quantize
from quest_lightning.functional.quantize import mint_codes, mint_quantize
from quest_lightning.nn import QuantConv2d, QuantLinear


def test_doctests():
    assert doctest.testmod(hysteresis_module).failed == 0


def decide(u: float, held: int, q: int, margin) -> int:
    """The rule as a choice between two candidates: stay at the held level unless moving to the nearest level
    brings the code closer by more than twice the transition's margin (ties stay)."""
    nearest = max(-q, min(q, int(torch.round(torch.tensor(u)).item())))
    h = margin[held + q][nearest + q] if isinstance(margin, list) else margin
    stay, move = abs(u - held), abs(u - nearest) + 2 * h
    return nearest if move < stay else held


@pytest.mark.parametrize("bits", [2, 3])
@pytest.mark.parametrize("weighted", [False, True])
def test_codes_follow_the_rule_element_by_element(bits, weighted):
    gen = torch.Generator().manual_seed(bits)
    q = 2 ** (bits - 1) - 1
    x = torch.randn(400, generator=gen) * 0.2
    alpha = torch.tensor(0.25)
    held = torch.randint(-q, q + 1, (400,), generator=gen, dtype=torch.int8)
    if weighted:
        table = torch.rand(2 * q + 1, 2 * q + 1, generator=gen, dtype=torch.float64) * 0.49
        margin = check_margin(table)
        plain = margin.tolist()
    else:
        margin = plain = 0.3
    codes = hysteresis_codes(x, alpha, bits, "tanh", held, margin)
    u = (torch.clamp(torch.tanh(x) / alpha, -1, 1) * q).tolist()
    expected = [decide(ui, hi, q, plain) for ui, hi in zip(u, held.tolist(), strict=True)]
    assert codes.tolist() == expected
    assert (codes != held).any() and (codes == held).any()  # both branches are exercised


def test_by_hand():
    alpha = torch.tensor(1.0)
    x = torch.tensor([0.7, 0.85, -0.2, 0.2, -0.9])  # identity transform, Q = 1: u = x
    held = torch.tensor([0, 0, 1, -1, 1], dtype=torch.int8)
    # 0.7: 0.2 past the midpoint 0.5, not > 0.25: stays 0; 0.85: 0.35 past: moves to 1; -0.2 from +1: nearest is 0,
    # 0.3 past the midpoint: moves; 0.2 from -1: moves to 0; -0.9 from +1: nearest -1, |u - 1| - |u + 1| = 1.8 > 0.5
    assert hysteresis_codes(x, alpha, 2, "identity", held, 0.25).tolist() == [0, 1, 0, 0, -1]


def test_without_held_codes_it_is_mint():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(50, 40, generator=gen) * 0.1
    alpha = torch.tensor(0.07, requires_grad=True)
    xq_h, codes_h = hysteresis_quantize(x, alpha, 3, "tanh", None, None, margin=0.4)
    xq_m, codes_m = mint_quantize(x, alpha, 3, "tanh")
    assert torch.equal(codes_h, codes_m) and torch.equal(xq_h, xq_m)
    assert torch.equal(hysteresis_codes(x, alpha, 3, "tanh", None, 0.4), mint_codes(x, alpha, 3, "tanh"))


def test_gradients_are_mints_for_the_codes_used():
    """Straight through the decision: with the held codes equal to MINT's, values and gradients are MINT's."""
    gen = torch.Generator().manual_seed(1)
    x1 = (torch.randn(30, 20, generator=gen) * 0.2).requires_grad_()
    x2 = x1.detach().clone().requires_grad_()
    a1, a2 = torch.tensor(0.15, requires_grad=True), torch.tensor(0.15, requires_grad=True)
    g = torch.randn(30, 20, generator=gen)
    held = mint_codes(x1, a1, 2, "tanh")
    y1, _ = hysteresis_quantize(x1, a1, 2, "tanh", 0.01, held, margin=0.3)
    y2, _ = mint_quantize(x2, a2, 2, "tanh", 0.01)
    (y1 * g).sum().backward()
    (y2 * g).sum().backward()
    assert torch.equal(y1, y2) and torch.equal(x1.grad, x2.grad) and torch.equal(a1.grad, a2.grad)


def test_hysteresis_cuts_the_changes_of_oscillating_weights():
    """Latent weights on a random walk around the grid's boundaries: every step's codes against the last."""
    gen = torch.Generator().manual_seed(2)
    alpha = torch.tensor(1.0)
    w = torch.full((2000,), 0.5) + torch.randn(2000, generator=gen) * 0.05
    plain_prev, held = mint_codes(w, alpha, 2, "identity"), mint_codes(w, alpha, 2, "identity")
    plain_changes = hyst_changes = 0
    for _ in range(50):
        w = w + torch.randn(2000, generator=gen) * 0.03
        plain = mint_codes(w, alpha, 2, "identity")
        new = hysteresis_codes(w, alpha, 2, "identity", held, 0.1)
        plain_changes += int((plain != plain_prev).sum())
        hyst_changes += int((new != held).sum())
        plain_prev, held = plain, new
    assert plain_changes > 0 and hyst_changes < plain_changes / 3


def test_bad_margins_are_refused():
    for bad in (-0.1, float("nan"), True, "0.5", 0.5):
        with pytest.raises(ValueError, match="margin"):
            check_margin(bad)
    frozen = torch.tensor([[0.0, 0.5, 0.2], [0.1, 0.0, 0.1], [0.2, 0.1, 0.0]])  # -1 -> 0 could never happen
    with pytest.raises(ValueError, match=r"below \|i - j\| / 2"):
        check_margin(frozen, 3)
    check_margin(torch.tensor([[0.0, 0.4, 0.9], [0.1, 0.0, 0.1], [0.2, 0.1, 0.0]]), 3)  # -1 -> +1 may take 0.9
    with pytest.raises(ValueError, match=r"\[3, 3\]"):
        check_margin(torch.zeros(5, 5), 3)
    with pytest.raises(ValueError, match=">= 0"):
        check_margin(-torch.ones(3, 3), 3)
    assert check_margin(torch.full((3, 3), 0.3), 3).diagonal().tolist() == [0.0, 0.0, 0.0]


# --- in a layer -----------------------------------------------------------------------------------------------------
def forward_backward(layer, x):
    out = layer(x)
    out.square().sum().backward()
    return out.detach(), {n: p.grad.clone() for n, p in layer.named_parameters()}


def test_off_the_layer_is_bit_identical_to_the_plain_layer():
    torch.manual_seed(0)
    plain = QuantConv2d(3, 4, 3, padding=1, bits=2)
    toggled = copy.deepcopy(plain)
    set_hysteresis(toggled, 0.4)
    set_hysteresis(toggled, None)
    x = torch.rand(2, 3, 3, 5, 5)
    out_a, grads_a = forward_backward(plain, x)
    out_b, grads_b = forward_backward(toggled, x)
    assert torch.equal(out_a, out_b) and all(torch.equal(grads_a[k], grads_b[k]) for k in grads_a)
    assert torch.equal(plain.codes, toggled.codes)
    assert set(plain.state_dict()) == set(toggled.state_dict())


def test_on_the_layer_exposes_the_codes_its_forward_used():
    torch.manual_seed(1)
    layer = QuantLinear(16, 8, bits=3)
    set_hysteresis(layer, 0.3)
    opt = torch.optim.SGD(layer.parameters(), lr=0.5)
    x = torch.rand(4, 16)
    for _ in range(5):
        before = layer.current_codes()
        w_q = layer.quantized_weight()
        assert torch.equal(layer.codes, before)  # the codes the monitor read before the step are the forward's
        assert torch.equal(w_q, layer.codes.float() * (layer.alpha / layer.qmax))
        opt.zero_grad()
        layer(x).square().sum().backward()
        opt.step()
        after = layer.current_codes()
        layer(x)  # the next forward uses exactly the codes current_codes() announced
        assert torch.equal(layer.codes, after)
        for _ in range(3):  # repeated passes on the same weights (a single-step loop over T) keep them
            layer(x)
            assert torch.equal(layer.codes, after)


def test_the_held_codes_travel_with_the_checkpoint():
    torch.manual_seed(2)
    layer = QuantLinear(8, 4, bits=2)
    set_hysteresis(layer, 0.45)
    with torch.no_grad():
        layer.weight.mul_(1.3)  # move the latent weights; the held codes resist
    layer(torch.rand(2, 8))
    state = layer.state_dict()
    assert "held_codes" in state
    fresh = QuantLinear(8, 4, bits=2)
    set_hysteresis(fresh, 0.45)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.current_codes(), layer.current_codes())
    with pytest.raises(TypeError, match="QuantConv2d/QuantLinear"):
        set_hysteresis(torch.nn.Linear(2, 2), 0.5)
