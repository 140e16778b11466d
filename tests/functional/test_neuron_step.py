"""Golden trajectories of the shared neuron step, computed by hand, with and without MINT membrane quantization.

All inputs are dyadic rationals, so float32 is exact and the trajectories can be compared with ``==``. The surrogate is
the triangle (SpikingJelly's ``PiecewiseQuadratic(alpha=1)``), which fires at ``H == theta``.
"""

import pytest
import torch

from quest_lightning.functional.neuron import (
    MembraneQuant,
    NeuronParams,
    neuron_step,
    reset_membrane,
    reset_membrane_vjp,
)
from quest_lightning.functional.scan import neuron_scan
from quest_lightning.functional.surrogate import fires_at_threshold, get_surrogate
from quest_lightning.nn import QuantIFNode, QuantLeaky, QuantLIFNode, QuantLinear, make_neuron

TRIANGLE = get_surrogate("triangle")

# Full precision, theta = 0.5.
X_FP = [0.25, 0.375, 0.125, 0.75, 0.25]
GOLDEN_FP = [
    # (decay, reset, spikes, H (pre-reset), U (carried))
    (1.0, "hard", [0, 1, 0, 1, 0], [0.25, 0.625, 0.125, 0.875, 0.25], [0.25, 0, 0.125, 0, 0.25]),
    (1.0, "soft", [0, 1, 0, 1, 1], [0.25, 0.625, 0.25, 1.0, 0.75], [0.25, 0.125, 0.25, 0.5, 0.25]),
    # LIF lambda = 0.5; at t = 1, H = 0.125 + 0.375 = 0.5 == theta fires (triangle convention)
    (0.5, "hard", [0, 1, 0, 1, 0], [0.25, 0.5, 0.125, 0.8125, 0.25], [0.25, 0, 0.125, 0, 0.25]),
    (0.5, "soft", [0, 1, 0, 1, 0], [0.25, 0.5, 0.125, 0.8125, 0.40625], [0.25, 0, 0.125, 0.3125, 0.40625]),
]

# Membrane on the 2-bit grid of alpha = 1 (U in {-1, 0, 1}), identity transform, theta = 0.625:
# U_t = round(clip(post-reset H_t, -1, 1)).
X_Q = [0.375, 0.5625, -0.75, -0.75, 0.375, 1.75, 2.0, 0.0625]
GOLDEN_Q = [
    # t=1: H = 0.5625 does not fire but is carried as 1; t=6 (soft): 2.0 - 0.625 = 1.375 is clipped to 1
    (
        1.0,
        "hard",
        [0, 0, 0, 0, 0, 1, 1, 0],
        [0.375, 0.5625, 0.25, -0.75, -0.625, 0.75, 2.0, 0.0625],
        [0, 1, 0, -1, -1, 0, 0, 0],
    ),
    (
        1.0,
        "soft",
        [0, 0, 0, 0, 0, 1, 1, 1],
        [0.375, 0.5625, 0.25, -0.75, -0.625, 0.75, 2.0, 1.0625],
        [0, 1, 0, -1, -1, 0, 1, 0],
    ),
    (
        0.5,
        "hard",
        [0, 0, 0, 0, 0, 1, 1, 0],
        [0.375, 0.5625, -0.25, -0.75, -0.125, 1.75, 2.0, 0.0625],
        [0, 1, 0, -1, 0, 0, 0, 0],
    ),
    (
        0.5,
        "soft",
        [0, 0, 0, 0, 0, 1, 1, 0],
        [0.375, 0.5625, -0.25, -0.75, -0.125, 1.75, 2.5, 0.5625],
        [0, 1, 0, -1, 0, 1, 1, 1],
    ),
]

# The same grid with the tanh transform, IF soft: U_t = round(clip(tanh(post), -1, 1)), so the state rounds to 1 only
# above atanh(0.5) = 0.549: 0.53125 is carried as 0 (tanh = 0.486) where the identity carries 1.
X_T = [0.53125, 0.53125, 1.5, 0.0]
GOLDEN_T = [
    # (transform, spikes, U); t=2 (tanh): post = 0.875, tanh = 0.704 -> 1; t=3: post = 0.375 -> 0
    ("tanh", [0, 0, 1, 1], [0, 0, 1, 0]),
    ("identity", [0, 1, 1, 1], [1, 1, 1, 0]),
]


def _as_float(values):
    return torch.tensor(values, dtype=torch.float32)


@pytest.mark.parametrize(("decay", "reset", "spikes", "h", "u"), GOLDEN_FP)
def test_full_precision_trajectory(decay, reset, spikes, h, u):
    params = NeuronParams(decay=decay, threshold=0.5, reset=reset)
    s_seq, h_seq, _ = neuron_scan(_as_float(X_FP), TRIANGLE, params, return_membrane="pre")
    _, u_seq, u_last = neuron_scan(
        _as_float(X_FP), TRIANGLE, NeuronParams(decay=decay, reset=reset), return_membrane="post"
    )
    assert s_seq.tolist() == spikes
    assert h_seq.tolist() == h
    assert u_seq.tolist() == u
    assert u_last.item() == u[-1]


def _step_by_step(x, decay, reset, threshold, quant):
    u, out = None, []
    for xt in _as_float(x):
        s, h, u = neuron_step(xt, u, TRIANGLE, NeuronParams(decay=decay, threshold=threshold, reset=reset), quant)
        out.append((s.item(), h.item(), u.item()))
    return [list(col) for col in zip(*out, strict=True)]


@pytest.mark.parametrize(("decay", "reset", "spikes", "h", "u"), GOLDEN_Q)
def test_quantized_membrane_trajectory(decay, reset, spikes, h, u):
    quant = MembraneQuant(torch.tensor(1.0), bits=2, transform="identity")
    s_got, h_got, u_got = _step_by_step(X_Q, decay, reset, 0.625, quant)
    assert s_got == spikes
    assert h_got == h  # H_t is built from the quantized carried state U_{t-1}
    assert u_got == u
    assert set(u_got) <= {-1.0, 0.0, 1.0}


def test_quantization_changes_the_trajectory():
    """Without membrane quantization the same input (IF hard, theta 0.625) fires at t = 1 instead of being carried."""
    s, _, _ = _step_by_step(X_Q, 1.0, "hard", 0.625, None)
    assert s == [0, 1, 0, 0, 0, 1, 1, 0]
    assert s != GOLDEN_Q[0][2]


@pytest.mark.parametrize(("transform", "spikes", "u"), GOLDEN_T)
def test_quantized_membrane_transform(transform, spikes, u):
    quant = MembraneQuant(torch.tensor(1.0), bits=2, transform=transform)
    s_got, _, u_got = _step_by_step(X_T, 1.0, "soft", 0.625, quant)
    assert s_got == spikes
    assert u_got == u


def test_threshold_convention_differs_between_libraries():
    """At H == theta exactly, the SpikingJelly-style triangle fires and snnTorch's atan does not."""
    atan = get_surrogate("snntorch.atan")
    assert fires_at_threshold(TRIANGLE) and not fires_at_threshold(atan)
    x = _as_float([0.25, 0.25])
    assert neuron_scan(x, TRIANGLE, NeuronParams(threshold=0.5))[0].tolist() == [0, 1]
    assert neuron_scan(x, atan, NeuronParams(threshold=0.5))[0].tolist() == [0, 0]


@pytest.mark.parametrize(
    ("reset", "detach_reset", "du_dx"),
    [
        # H = 0.75, theta = 0.5: S = 1 and the triangle's slope is 1 - |0.25| = 0.75
        ("hard", False, 0.0 - 0.75 * 0.75),  # d[H (1 - S)]/dH = (1 - S) - H S'
        ("hard", True, 0.0),  # (1 - S)
        ("soft", False, 1.0 - 0.5 * 0.75),  # d[H - theta S]/dH = 1 - theta S'
        ("soft", True, 1.0),
    ],
)
def test_reset_gradient(reset, detach_reset, du_dx):
    x = torch.tensor(0.75, requires_grad=True)
    s, _, u = neuron_step(x, None, TRIANGLE, NeuronParams(threshold=0.5, reset=reset, detach_reset=detach_reset))
    (ds_dx,) = torch.autograd.grad(s, x, retain_graph=True)
    assert ds_dx.item() == pytest.approx(0.75)
    (got,) = torch.autograd.grad(u, x)
    assert got.item() == pytest.approx(du_dx)


def _layer_with_unit_grid():
    layer = QuantLinear(3, 1, bits=2, transform="identity")
    with torch.no_grad():
        layer.alpha.fill_(1.0)
    return layer


@pytest.mark.parametrize("golden", GOLDEN_Q, ids=lambda g: f"decay{g[0]}-{g[1]}")
def test_modules_follow_the_golden_trajectory(golden):
    """Both adapters, sharing the scale of a layer with alpha = 1 and 2 bits, carry the same quantized states."""
    decay, reset, spikes, _, u = golden
    layer = _layer_with_unit_grid()
    x = _as_float(X_Q).reshape(-1, 1, 1)  # [T, B=1, N=1]
    for backend in ("spikingjelly", "snntorch"):
        neuron = make_neuron(backend, "if" if decay == 1.0 else "lif", reset, threshold=0.625, decay=decay)
        neuron.share_scale_with(layer)
        s, u_seq, _ = neuron.multi_step(x, return_membrane="post")
        assert s.flatten().tolist() == spikes, backend
        assert u_seq.flatten().tolist() == u, backend
    if decay == 1.0:  # SpikingJelly-style module, multi-step with stored membranes
        node = QuantIFNode(0.625, 0.0 if reset == "hard" else None, "triangle", step_mode="m", store_v_seq=True)
        assert node(x).flatten().tolist() != spikes  # no shared scale yet: full precision fires at t = 1
        node.share_scale_with(layer).reset()
        assert node(x).flatten().tolist() == spikes
        assert node.v_seq.flatten().tolist() == u
    else:  # tau = 2 without input decay is lambda = 0.5
        node = QuantLIFNode(2.0, False, 0.625, 0.0 if reset == "hard" else None, "triangle", step_mode="m")
        node.share_scale_with(layer)
        assert node(x).flatten().tolist() == spikes
        assert node.v.flatten().tolist() == u[-1:]


def test_snntorch_style_step_returns_pre_reset_membrane():
    """``QuantLeaky`` steps one time step at a time; with reset_delay it reports H_t, otherwise the carried U_t."""
    layer = _layer_with_unit_grid()
    _, _, spikes, h, u = GOLDEN_Q[1]  # IF soft
    for reset_delay, expected in ((True, h), (False, u)):
        neuron = QuantLeaky(1.0, 0.625, "triangle", "subtract", reset_delay).share_scale_with(layer)
        got_s, got_m = [], []
        for xt in _as_float(X_Q):
            s, m = neuron(xt.reshape(1, 1))
            got_s.append(s.item())
            got_m.append(m.item())
        assert got_s == spikes
        assert got_m == expected


def test_disabled_layer_turns_membrane_quantization_off():
    layer = _layer_with_unit_grid()
    layer.enabled = False
    neuron = QuantIFNode(0.625, 0.0, "triangle", step_mode="m").share_scale_with(layer)
    s = neuron(_as_float(X_Q).reshape(-1, 1, 1))
    assert s.flatten().tolist() == [0, 1, 0, 0, 0, 1, 1, 0]  # the full-precision trajectory


# (fields, message): every refused value names the field, the value and the fix
BAD_PARAMS = [
    (dict(threshold=float("nan")), r"threshold=nan must be positive and finite: the firing threshold theta"),
    (dict(threshold=float("inf")), r"threshold=inf must be positive and finite"),
    (dict(threshold=0.0), r"threshold=0\.0 must be positive"),
    (dict(threshold=-0.5), r"threshold=-0\.5 must be positive"),
    (dict(threshold="0.5"), r"threshold='0\.5' must be positive and finite"),
    (dict(decay=1.5), r"decay=1\.5 \(the leak factor lambda\) must lie in \[0, 1\]: use 1 for an IF neuron"),
    (dict(decay=-0.1), r"decay=-0\.1 .* must lie in \[0, 1\]"),
    (dict(decay=float("nan")), r"decay=nan .* must lie in \[0, 1\]"),
    (dict(decay=True), r"decay=True .* must lie in \[0, 1\]"),
    (dict(reset="partial"), r"reset='partial' is unknown: use 'hard' \(to zero\), 'soft'"),
    (dict(soft_reset_amount=0.0), r"soft_reset_amount=0\.0 must be positive and finite: a soft reset subtracts it"),
    (dict(soft_reset_amount=float("-inf")), r"soft_reset_amount=-inf must be positive and finite"),
]


@pytest.mark.parametrize(("fields", "match"), BAD_PARAMS, ids=[str(f) for f, _ in BAD_PARAMS])
def test_neuron_params_refuse_bad_values(fields, match):
    with pytest.raises(ValueError, match=match):
        NeuronParams(**fields)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        # (decay, threshold, reset, detach_reset, soft_reset_amount, leaky, reset_amount)
        (dict(), (1.0, 0.5, "hard", False, None, False, 0.5)),
        (dict(decay=0, threshold=2), (0.0, 2.0, "hard", False, None, True, 2.0)),  # ints become floats
        (dict(decay=0.5, reset="soft", soft_reset_amount=1), (0.5, 0.5, "soft", False, 1.0, True, 1.0)),
        (dict(reset="none", detach_reset=1), (1.0, 0.5, "none", True, None, False, 0.5)),
    ],
)
def test_neuron_params_accept_and_normalise(fields, expected):
    p = NeuronParams(**fields)
    got = (p.decay, p.threshold, p.reset, p.detach_reset, p.soft_reset_amount, p.leaky, p.reset_amount)
    assert got == expected
    assert all(type(v) is float for v in (p.decay, p.threshold))
    with pytest.raises(AttributeError):
        p.threshold = 1.0  # frozen


def test_neuron_attributes_replace_validated_params():
    """A neuron's threshold, decay, reset_mode and soft_reset_amount read its one NeuronParams; setting one replaces
    the params with a validated copy, and the step uses it at once."""
    neuron = QuantIFNode(0.5, None, "triangle", step_mode="m")
    before = neuron.params
    neuron.threshold = 0.25
    assert neuron.params == NeuronParams(threshold=0.25, reset="soft") and before.threshold == 0.5
    x = _as_float([0.25, 0.25]).reshape(2, 1)
    assert neuron(x).flatten().tolist() == [1, 1]  # 0.25 >= 0.25 fires at once with the new threshold
    with pytest.raises(ValueError, match=r"threshold=-1\.0 must be positive"):
        neuron.threshold = -1.0
    assert neuron.threshold == 0.25
    neuron.reset_mode = "hard"
    assert neuron.params.reset == "hard" and neuron.leaky is False
    neuron.decay = 0.5
    assert neuron.leaky and neuron.params.decay == 0.5


@pytest.mark.parametrize("reset", ["hard", "soft", "none"])
@pytest.mark.parametrize("detach_reset", [False, True])
def test_reset_vjp_matches_autograd(reset, detach_reset):
    """The hand-written reset VJP (used by the fused scan) equals autograd through the reset itself."""
    g = torch.Generator().manual_seed(2)
    h = torch.randn(7, generator=g).requires_grad_(True)
    s = (torch.rand(7, generator=g) < 0.5).float().requires_grad_(True)
    g_u = torch.randn(7, generator=g)
    params = NeuronParams(threshold=0.5, reset=reset, detach_reset=detach_reset, soft_reset_amount=0.75)
    u = reset_membrane(h, s, params)
    want_h, want_s = torch.autograd.grad(u, (h, s), g_u, allow_unused=True)
    got_h, got_s = reset_membrane_vjp(g_u, h.detach(), s.detach(), params)
    torch.testing.assert_close(got_h, want_h if want_h is not None else torch.zeros(7), rtol=0, atol=0)
    if got_s is None:
        assert want_s is None or not want_s.any()
    else:
        torch.testing.assert_close(got_s, want_s, rtol=0, atol=0)
    assert (got_s is None) == (detach_reset or reset == "none")
