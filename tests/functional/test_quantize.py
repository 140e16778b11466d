"""The MINT quantizer against hand-computed codes, values and gradients, plus property tests over random inputs."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from quest_lightning.functional.grid import num_levels, qmax
from quest_lightning.functional.quantize import (
    alpha_grad_scale,
    init_alpha,
    mint_codes,
    mint_quantize,
    round_ste,
    scale_grad,
)

# (transform, bits, alpha, x, codes, x_q): every number computed by hand from
# code = round(clip(T(x)/alpha, -1, 1) * Q), x_q = code * alpha / Q, with Q = 1, 3, 7 for 2, 3, 4 bits.
GOLDEN = [
    # x/alpha*Q = [-1.5, -0.6, -0.4, 0, 0.3, 0.7, 2.0]; clipped to [-1, 1]
    (
        "identity",
        2,
        1.0,
        [-1.5, -0.6, -0.4, 0.0, 0.3, 0.7, 2.0],
        [-1, -1, 0, 0, 0, 1, 1],
        [-1.0, -1.0, 0.0, 0.0, 0.0, 1.0, 1.0],
    ),
    # step alpha/Q = 0.25: x/0.25 = [-4, -1.2, -0.4, 0.4, 0.8, 1.6, 2.6, 3.2]
    (
        "identity",
        3,
        0.75,
        [-1.0, -0.3, -0.1, 0.1, 0.2, 0.4, 0.65, 0.8],
        [-3, -1, 0, 0, 1, 2, 3, 3],
        [-0.75, -0.25, 0.0, 0.0, 0.25, 0.5, 0.75, 0.75],
    ),
    # step 0.1: x/0.1 = [-8, -3.3, -0.4, 0.6, 2.6, 4.4, 6.9, 12]
    (
        "identity",
        4,
        0.7,
        [-0.8, -0.33, -0.04, 0.06, 0.26, 0.44, 0.69, 1.2],
        [-7, -3, 0, 1, 3, 4, 7, 7],
        [-0.7, -0.3, 0.0, 0.1, 0.3, 0.4, 0.7, 0.7],
    ),
    # tanh(x)/0.5 = [-1.93, -0.583, -0.199, 0.395, 0.583, 1.52]
    ("tanh", 2, 0.5, [-2.0, -0.3, -0.1, 0.2, 0.3, 1.0], [-1, -1, 0, 0, 1, 1], [-0.5, -0.5, 0.0, 0.0, 0.5, 0.5]),
    # tanh(x)/0.9*3 = [-3.32, -1.54, 0.332, 0.658, 1.54, 2.39, 2.78, 3.32]
    (
        "tanh",
        3,
        0.9,
        [-3.0, -0.5, 0.1, 0.2, 0.5, 0.9, 1.2, 3.0],
        [-3, -2, 0, 1, 2, 2, 3, 3],
        [-0.9, -0.6, 0.0, 0.3, 0.6, 0.6, 0.9, 0.9],
    ),
    # tanh(x)/0.7*7 = 10 tanh(x) = [-2.91, 0.300, 1.19, 2.91, 4.62, 6.04, 6.64, 9.64]
    (
        "tanh",
        4,
        0.7,
        [-0.3, 0.03, 0.12, 0.3, 0.5, 0.7, 0.8, 2.0],
        [-3, 0, 1, 3, 5, 6, 7, 7],
        [-0.3, 0.0, 0.1, 0.3, 0.5, 0.6, 0.7, 0.7],
    ),
]


@pytest.mark.parametrize(("transform", "bits", "alpha", "x", "codes", "x_q"), GOLDEN)
def test_golden_codes_and_values(transform, bits, alpha, x, codes, x_q):
    xq, c = mint_quantize(torch.tensor(x), torch.tensor(alpha), bits, transform)
    assert c.dtype == torch.int8
    assert c.tolist() == codes
    torch.testing.assert_close(xq, torch.tensor(x_q), rtol=0, atol=1e-6)
    assert mint_codes(torch.tensor(x), torch.tensor(alpha), bits, transform).tolist() == codes


@pytest.mark.parametrize(("bits", "q", "levels"), [(1, 0, 1), (2, 1, 3), (3, 3, 7), (4, 7, 15), (8, 127, 255)])
def test_grid_size(bits, q, levels):
    assert qmax(bits) == q
    assert num_levels(bits) == levels
    x = torch.linspace(-3, 3, 20001)
    codes = mint_codes(x, torch.tensor(1.0), bits, "identity")
    assert codes.unique().tolist() == list(range(-q, q + 1))


def test_two_bit_is_ternary_and_three_bit_has_seven_levels():
    x = torch.linspace(-2, 2, 4001)
    for transform in ("tanh", "identity"):
        xq2, _ = mint_quantize(x, torch.tensor(0.4), 2, transform)
        assert sorted(round(v, 6) for v in xq2.unique().tolist()) == [-0.4, 0.0, 0.4]
        xq3, c3 = mint_quantize(x, torch.tensor(0.6), 3, transform)
        assert c3.unique().tolist() == [-3, -2, -1, 0, 1, 2, 3]
        assert xq3.unique().numel() == 7


def test_one_bit_is_a_single_zero_level():
    xq, codes = mint_quantize(torch.randn(50), torch.tensor(0.3), 1, "identity")
    assert codes.abs().max() == 0 and xq.abs().max() == 0


def _alpha_grads(x, alpha, bits, transform, grad_scale=None):
    """Per-element d x_q / d alpha and d x_q / d x."""
    dalpha, dx = [], []
    for v in x:
        xv = torch.tensor(v, requires_grad=True)
        a = torch.tensor(alpha, requires_grad=True)
        xq, _ = mint_quantize(xv, a, bits, transform, grad_scale)
        xq.backward()
        dalpha.append(a.grad.item())
        dx.append(xv.grad.item())
    return dalpha, dx


def test_ste_and_alpha_gradient_identity():
    # bits 3, alpha 0.75: Q = 3, codes [-3, -1, 1, 3, 3]; -1.0 and 0.8 are clipped.
    x = [-1.0, -0.3, 0.2, 0.65, 0.8]
    dalpha, dx = _alpha_grads(x, 0.75, 3, "identity")
    assert dx == [0.0, 1.0, 1.0, 1.0, 0.0]  # 1 inside the clip range, 0 outside
    # code/Q - x/alpha inside, sign(x) when clipped
    expected = [-1.0, -1 / 3 + 0.3 / 0.75, 1 / 3 - 0.2 / 0.75, 1.0 - 0.65 / 0.75, 1.0]
    assert dalpha == pytest.approx(expected, abs=1e-6)
    assert expected == pytest.approx([-1.0, 1 / 15, 1 / 15, 2 / 15, 1.0])


def test_ste_and_alpha_gradient_tanh():
    # bits 2, alpha 0.5: inside iff |tanh x| < 0.5; tanh(-0.3) = -0.291313, tanh(0.2) = 0.197375
    x = [-2.0, -0.3, 0.2, 1.0]
    dalpha, dx = _alpha_grads(x, 0.5, 2, "tanh")
    assert dx == pytest.approx([0.0, 1 - 0.291313**2, 1 - 0.197375**2, 0.0], abs=1e-5)
    assert dx == pytest.approx([0.0, 0.915137, 0.961043, 0.0], abs=1e-5)
    # code/Q - tanh(x)/alpha: -1 + 0.582626 and 0 - 0.394751
    assert dalpha == pytest.approx([-1.0, -0.417374, -0.394751, 1.0], abs=1e-5)


def test_alpha_gradient_scale_is_lsq():
    x = torch.tensor([-1.0, -0.3, 0.2, 0.65, 0.8], requires_grad=True)
    scale = alpha_grad_scale(x.numel(), 3)
    assert scale == pytest.approx(1 / math.sqrt(5 * 3))
    a = torch.tensor(0.75, requires_grad=True)
    xq, _ = mint_quantize(x, a, 3, "identity", grad_scale=scale)
    xq_plain, _ = mint_quantize(x.detach(), torch.tensor(0.75), 3, "identity")
    assert torch.equal(xq.detach(), xq_plain)  # the scale touches the gradient only
    xq.sum().backward()
    # unscaled sum: -1 + 1/15 + 1/15 + 2/15 + 1 = 4/15
    assert a.grad.item() == pytest.approx((4 / 15) / math.sqrt(15), abs=1e-6)
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]
    assert alpha_grad_scale(100, 2) == pytest.approx(0.1)


def test_round_ste_and_scale_grad():
    x = torch.tensor([0.4, 1.6, -2.7], requires_grad=True)
    y = round_ste(x)
    (y * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert y.tolist() == [0.0, 2.0, -3.0]
    assert x.grad.tolist() == [1.0, 2.0, 3.0]
    a = (torch.rand(1000) * 3 + 0.01).requires_grad_(True)
    b = scale_grad(a, 0.1)
    assert torch.equal(b, a)  # bit-exact identity in the forward pass
    b.sum().backward()
    torch.testing.assert_close(a.grad, torch.full_like(a, 0.1))


def test_init_alpha():
    w = torch.tensor([[0.5, -1.0], [0.25, -0.25]])  # mean |W| = 0.5
    assert init_alpha(w, 2).item() == pytest.approx(1.0)  # 2 * 0.5 / sqrt(1)
    assert init_alpha(w, 3).item() == pytest.approx(1 / math.sqrt(3))
    assert init_alpha(w, 4).item() == pytest.approx(1 / math.sqrt(7))
    assert init_alpha(torch.zeros(3), 2).item() > 0  # never zero


# --------------------------------------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------------------------------------


@st.composite
def _cases(draw):
    shape = tuple(draw(st.lists(st.integers(1, 6), min_size=1, max_size=4)))
    bits = draw(st.integers(1, 8))
    alpha = draw(st.floats(0.02, 3.0))
    transform = draw(st.sampled_from(["tanh", "identity"]))
    seed = draw(st.integers(0, 2**31 - 1))
    spread = draw(st.floats(0.1, 5.0))
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed)) * spread
    return x, torch.tensor(alpha), bits, transform


@settings(max_examples=150, deadline=None)
@given(_cases())
def test_properties(case):
    x, alpha, bits, transform = case
    q = qmax(bits)
    xq, codes = mint_quantize(x, alpha, bits, transform)
    assert codes.dtype == torch.int8 and codes.shape == x.shape and xq.shape == x.shape
    assert codes.abs().max() <= q
    if q == 0:
        assert xq.abs().max() == 0
        return
    torch.testing.assert_close(xq, codes.float() * alpha / q, rtol=1e-6, atol=1e-7)
    t = torch.tanh(x) if transform == "tanh" else x
    inside = t.abs() <= alpha
    err = (xq - t).abs()
    assert (err[inside] <= alpha / (2 * q) * (1 + 1e-5) + 1e-7).all()  # half a step at most
    assert torch.equal(codes[~inside].long(), torch.sign(t[~inside]).long() * q)  # saturated to +-alpha
    # odd symmetry and monotonicity
    assert torch.equal(mint_codes(-x, alpha, bits, transform), -codes)
    order = t.flatten().argsort()
    assert (codes.flatten()[order].long().diff() >= 0).all()
    # the grid is a fixed point: requantizing x_q (identity) gives the same codes and values
    xq2, codes2 = mint_quantize(xq, alpha, bits, "identity")
    assert torch.equal(codes2, codes)
    torch.testing.assert_close(xq2, xq, rtol=0, atol=0)
    # grad_scale never changes the forward pass
    xq3, codes3 = mint_quantize(x, alpha, bits, transform, grad_scale=alpha_grad_scale(x.numel(), bits))
    assert torch.equal(codes3, codes) and torch.equal(xq3, xq)


@pytest.mark.parametrize("transform", ["tanh", "identity"])
@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("grad_scale", [None, 0.01])
def test_fused_quantizer_matches_composed_reference(transform, bits, grad_scale):
    """The single autograd node gives the reference's values exactly and its gradients to fp32 rounding."""
    from quest_lightning.functional.quantize import mint_quantize_reference

    g = torch.Generator().manual_seed(bits)
    w = torch.randn(64, 33, generator=g) * 0.3
    alpha0 = torch.tensor(0.21)
    upstream = torch.randn(64, 33, generator=g)
    results = []
    for fn in (mint_quantize, mint_quantize_reference):
        x, a = w.clone().requires_grad_(True), alpha0.clone().requires_grad_(True)
        xq, codes = fn(x, a, bits, transform, grad_scale)
        (xq * upstream).sum().backward()
        results.append((xq.detach(), codes, x.grad, a.grad))
    (xq1, c1, gx1, ga1), (xq2, c2, gx2, ga2) = results
    assert torch.equal(xq1, xq2) and torch.equal(c1, c2)
    assert (c1 != 0).any() and (c1.abs() == (2 ** (bits - 1) - 1)).any()  # both interior and clipped values
    torch.testing.assert_close(gx1, gx2, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(ga1, ga2, rtol=1e-5, atol=1e-7)


def test_fused_quantizer_chunked_path_matches_reference():
    """Tensors larger than one CPU chunk are processed chunk by chunk with identical values."""
    from quest_lightning.functional.quantize import _CHUNK, mint_quantize_reference

    g = torch.Generator().manual_seed(0)
    w = torch.randn(_CHUNK * 2 + 1001, generator=g).view(-1, 1) * 0.3
    upstream = torch.randn_like(w)
    results = []
    for fn in (mint_quantize, mint_quantize_reference):
        x, a = w.clone().requires_grad_(True), torch.tensor(0.2, requires_grad=True)
        xq, codes = fn(x, a, 3, "tanh", 1e-3)
        (xq * upstream).sum().backward()
        results.append((xq.detach(), codes, x.grad, a.grad))
    (xq1, c1, gx1, ga1), (xq2, c2, gx2, ga2) = results
    assert torch.equal(xq1, xq2) and torch.equal(c1, c2)
    torch.testing.assert_close(gx1, gx2, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(ga1, ga2, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    "layout",
    [
        lambda w: w.to(memory_format=torch.channels_last),  # dense, not contiguous: a common GPU layout for convs
        lambda w: w.transpose(0, 1),  # a strided view
    ],
    ids=["channels_last", "transposed"],
)
def test_fused_quantizer_on_non_contiguous_weights(layout):
    """A weight that is not in the standard contiguous layout gets the codes, values and gradients of the composed
    reference on the same weight made contiguous, element by element."""
    from quest_lightning.functional.quantize import mint_quantize_reference

    g = torch.Generator().manual_seed(4)
    w0 = torch.randn(8, 6, 3, 3, generator=g) * 0.4
    upstream = layout(torch.randn(8, 6, 3, 3, generator=g)).contiguous()
    results = []
    for fn, strided in ((mint_quantize, True), (mint_quantize_reference, False)):
        leaf, a = w0.clone().requires_grad_(True), torch.tensor(0.3, requires_grad=True)
        x = layout(leaf) if strided else layout(leaf).contiguous()
        assert x.is_contiguous() is not strided
        xq, codes = fn(x, a, 3, "tanh", None)
        (xq * upstream).sum().backward()
        results.append((xq.detach(), codes, leaf.grad, a.grad))
    (xq1, c1, gx1, ga1), (xq2, c2, gx2, ga2) = results
    assert torch.equal(xq1, xq2) and torch.equal(c1, c2)
    assert (c1 != 0).any() and (c1 == 0).any()
    torch.testing.assert_close(gx1, gx2, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(ga1, ga2, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    "values",
    [[0.3, -2.5, 1.0], [-0.1, 0.2, 3.0], [0.0, -0.0], [], [float("nan"), 1.0]],
    ids=["largest-negative", "largest-positive", "zeros", "empty", "nan"],
)
@pytest.mark.parametrize("transform", ["tanh", "identity"])
def test_alpha_floor_is_the_ratio_of_the_largest_magnitude(values, transform):
    """alpha_min = r * max(T(max |W|), eps), with max |W| taken by hand over the values (NaN stays NaN)."""
    from quest_lightning.functional.quantize import ALPHA_FLOOR_RATIO, alpha_floor

    w = torch.tensor(values, dtype=torch.float32).view(-1, 1)
    floor = float(alpha_floor(w, transform))
    if any(math.isnan(v) for v in values):
        assert math.isnan(floor)
        return
    top = max((abs(v) for v in values), default=0.0)
    top = math.tanh(top) if transform == "tanh" else top
    expected = torch.tensor(max(top, torch.finfo(torch.float32).eps), dtype=torch.float32) * ALPHA_FLOOR_RATIO
    assert floor == float(expected)
