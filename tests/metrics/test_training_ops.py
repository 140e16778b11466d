"""Training-step operation counts (forward, backward, weight gradient) against explicit loops over every connection.

The brute force walks (time step, sample, output channel, output position, input channel, kernel offset), skips
padded positions and tests each operand for zero: it shares no code and no formula with the correlations under test.
The recorder's counts on small networks are checked against the same loops fed by independent hooks
(``register_forward_hook`` for the input, ``register_full_backward_hook`` for the gradient at the layer or at its
BatchNorm).
"""

from __future__ import annotations

import doctest
import itertools

import pytest
import torch
from torch import nn

from quest_lightning.devices import get_device, pattern_energies
from quest_lightning.metrics import training as training_module
from quest_lightning.metrics import training_recorder as recorder_module
from quest_lightning.metrics.geometry import LayerGeometry
from quest_lightning.metrics.training import (
    TrainingOpsMeter,
    bounded_support,
    delta_rule,
    price_training_step,
    training_step_counts,
)
from quest_lightning.metrics.training_recorder import TrainingOpsRecorder, layer_codes_for_counts
from quest_lightning.nn import DirectEncoder, QuantConv1d, QuantConv2d, QuantIFNode, QuantLinear, SpikingVGG
from quest_lightning.nn.neurons import make_neuron

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest's: tiny models run faster on one thread


def test_doctests():
    for module in (training_module, recorder_module):
        assert doctest.testmod(module).failed == 0


# --- the brute force ------------------------------------------------------------------------------------------------
def loops_conv(layer: nn.Conv2d, x, d, codes, q, input_grad=True, threshold=0.0):
    """Counts by walking every connection of a conv: (forward, backward, weight_grad) per step, levels summed."""
    steps, batch, c_in, height, width = x.shape
    _, _, c_out, h_out, w_out = d.shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw), g = layer.kernel_size, layer.stride, layer.padding, layer.dilation, 1
    g = layer.groups
    per_in, per_out = c_in // g, c_out // g
    xs = (x != 0).tolist()
    big = d.abs().amax().item()
    ds = (d.abs() > threshold * big).tolist() if threshold else (d != 0).tolist()
    cs = codes.tolist()
    fwd, bwd, wg = [0] * steps, [0] * steps, [0] * steps
    fl, bl = [0] * (2 * q + 1), [0] * (2 * q + 1)
    for t, b, o, ho, wo in itertools.product(range(steps), range(batch), range(c_out), range(h_out), range(w_out)):
        dn = ds[t][b][o][ho][wo]
        for cl, i, j in itertools.product(range(per_in), range(kh), range(kw)):
            h, w = ho * sh - ph + i * dh, wo * sw - pw + j * dw
            if not (0 <= h < height and 0 <= w < width):
                continue  # a padded position is no connection
            xn, code = xs[t][b][(o // per_out) * per_in + cl][h][w], cs[o][cl][i][j]
            fwd[t] += xn and code != 0
            bwd[t] += dn and code != 0 and input_grad
            wg[t] += xn and dn
            fl[code + q] += xn
            bl[code + q] += dn and input_grad
    return fwd, bwd, wg, fl, bl


def loops_conv1d(layer: nn.Conv1d, x, d, codes, q, input_grad=True):
    """The same walk for a 1-D convolution: (time step, sample, output channel, output position, input channel, tap)."""
    steps, batch, c_in, length = x.shape
    c_out, l_out = d.shape[2:]
    (k,), (s,), (p,), (dil,), g = layer.kernel_size, layer.stride, layer.padding, layer.dilation, layer.groups
    per_in, per_out = c_in // g, c_out // g
    xs, ds, cs = (x != 0).tolist(), (d != 0).tolist(), codes.tolist()
    fwd, bwd, wg = [0] * steps, [0] * steps, [0] * steps
    fl, bl = [0] * (2 * q + 1), [0] * (2 * q + 1)
    for t, b, o, lo, cl, j in itertools.product(
        range(steps), range(batch), range(c_out), range(l_out), range(per_in), range(k)
    ):
        pos = lo * s - p + j * dil
        if not 0 <= pos < length:
            continue
        xn, dn, code = xs[t][b][(o // per_out) * per_in + cl][pos], ds[t][b][o][lo], cs[o][cl][j]
        fwd[t] += xn and code != 0
        bwd[t] += dn and code != 0 and input_grad
        wg[t] += xn and dn
        fl[code + q] += xn
        bl[code + q] += dn and input_grad
    return fwd, bwd, wg, fl, bl


def loops_linear(x, d, codes, q, input_grad=True):
    steps = x.shape[0]
    xs, ds = (x != 0).reshape(steps, -1, x.shape[-1]).tolist(), (d != 0).reshape(steps, -1, d.shape[-1]).tolist()
    cs = codes.tolist()
    fwd, bwd, wg = [0] * steps, [0] * steps, [0] * steps
    fl, bl = [0] * (2 * q + 1), [0] * (2 * q + 1)
    for t in range(steps):
        for row_x, row_d in zip(xs[t], ds[t], strict=True):
            for o, i in itertools.product(range(len(cs)), range(len(cs[0]))):
                fwd[t] += row_x[i] and cs[o][i] != 0
                bwd[t] += row_d[o] and cs[o][i] != 0 and input_grad
                wg[t] += row_x[i] and row_d[o]
                fl[cs[o][i] + q] += row_x[i]
                bl[cs[o][i] + q] += row_d[o] and input_grad
    return fwd, bwd, wg, fl, bl


def as_lists(ops):
    return [ops.forward.tolist(), ops.backward.tolist(), ops.weight_grad.tolist()], [
        ops.forward_levels.tolist(),
        ops.backward_levels.tolist(),
    ]


def sparse(shape, p, gen, analog=False):
    x = (torch.rand(shape, generator=gen) < p).float()
    return x * torch.rand(shape, generator=gen) if analog else x


# --- the functional counts ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kw",
    [
        dict(kernel_size=3, padding=1),
        dict(kernel_size=3, stride=2, padding=1),
        dict(kernel_size=(2, 3), dilation=2, padding=(1, 0)),
        dict(kernel_size=3, padding=1, groups=2),
    ],
)
@pytest.mark.parametrize("bits", [2, 3])
def test_conv_counts_equal_the_loops(kw, bits):
    gen = torch.Generator().manual_seed(bits)
    layer = nn.Conv2d(4, 6, bias=False, **kw)
    q = 2 ** (bits - 1) - 1
    codes = torch.randint(-q, q + 1, layer.weight.shape, generator=gen, dtype=torch.int8)
    x = sparse((3, 2, 4, 7, 6), 0.3, gen)
    h_out, w_out = LayerGeometry.of(layer).output_size(7, 6)
    d = sparse((3, 2, 6, h_out, w_out), 0.25, gen) * torch.randn(3, 2, 6, h_out, w_out, generator=gen)
    ops = training_step_counts(LayerGeometry.of(layer), x, d, codes, q)
    fwd, bwd, wg, fl, bl = loops_conv(layer, x, d, codes, q)
    assert as_lists(ops) == ([fwd, bwd, wg], [fl, bl])
    assert ops.delta_nonzero.tolist() == (d != 0).flatten(1).sum(1).tolist()
    assert ops.delta_elements == 2 * 6 * h_out * w_out and ops.samples == 2


def test_counts_without_input_gradient_skip_the_backward_pass_and_count_analog_operands():
    gen = torch.Generator().manual_seed(5)
    layer = nn.Conv2d(3, 4, 3, padding=1, bias=False)
    codes = torch.randint(-1, 2, layer.weight.shape, generator=gen, dtype=torch.int8)
    x = sparse((2, 3, 3, 5, 5), 0.6, gen, analog=True)  # graded pixels with exact zeros
    d = sparse((2, 3, 4, 5, 5), 0.3, gen) * 0.5
    ops = training_step_counts(LayerGeometry.of(layer), x, d, codes, 1, input_grad=False)
    fwd, bwd, wg, fl, bl = loops_conv(layer, x, d, codes, 1, input_grad=False)
    assert as_lists(ops) == ([fwd, bwd, wg], [fl, bl])
    assert sum(bwd) == 0 and sum(wg) > 0
    assert int(ops.nonbinary_inputs) == int(((x != 0) & (x != 1)).sum())


def test_repeated_input_is_counted_at_every_step():
    """Direct coding repeats one input over T as a stride-0 view: each step's pass counts it again."""
    gen = torch.Generator().manual_seed(2)
    layer = nn.Conv2d(2, 3, 3, padding=1, bias=False)
    codes = torch.randint(-1, 2, layer.weight.shape, generator=gen, dtype=torch.int8)
    x0 = sparse((2, 2, 4, 4), 0.5, gen)
    d = sparse((3, 2, 3, 4, 4), 0.4, gen)
    ops = training_step_counts(LayerGeometry.of(layer), x0.unsqueeze(0).expand(3, -1, -1, -1, -1), d, codes, 1)
    fwd, bwd, wg, fl, bl = loops_conv(layer, x0.unsqueeze(0).repeat(3, 1, 1, 1, 1), d, codes, 1)
    assert as_lists(ops) == ([fwd, bwd, wg], [fl, bl])


@pytest.mark.parametrize("shape", [(3, 4), (2, 3, 2)])  # [T, B] and [T, B, N] leading dimensions
def test_linear_counts_equal_the_loops(shape):
    gen = torch.Generator().manual_seed(len(shape))
    codes = torch.randint(-3, 4, (5, 7), generator=gen, dtype=torch.int8)
    x = sparse((*shape, 7), 0.4, gen)
    d = sparse((*shape, 5), 0.5, gen) * torch.randn(*shape, 5, generator=gen)
    ops = training_step_counts(LayerGeometry("linear", 7, 5), x, d, codes, 3)
    assert as_lists(ops) == (list(loops_linear(x, d, codes, 3)[:3]), list(loops_linear(x, d, codes, 3)[3:]))


def test_threshold_counts_only_large_deltas():
    gen = torch.Generator().manual_seed(9)
    layer = nn.Conv2d(2, 2, 3, padding=1, bias=False)
    codes = torch.randint(-1, 2, layer.weight.shape, generator=gen, dtype=torch.int8)
    x = sparse((2, 2, 2, 4, 4), 0.5, gen)
    d = torch.randn(2, 2, 2, 4, 4, generator=gen).pow(3)  # dense, with a heavy tail
    ops = training_step_counts(LayerGeometry.of(layer), x, d, codes, 1, threshold=0.1)
    fwd, bwd, wg, fl, bl = loops_conv(layer, x, d, codes, 1, threshold=0.1)
    assert as_lists(ops) == ([fwd, bwd, wg], [fl, bl])
    assert 0 < sum(ops.delta_nonzero.tolist()) < d.numel()


def test_mismatched_shapes_are_refused():
    g = LayerGeometry("conv2d", 2, 3, (3, 3), padding=(1, 1, 1, 1))
    with pytest.raises(ValueError, match=r"conv delta must be \[T, B, 3, 4, 4\]"):
        training_step_counts(g, torch.ones(1, 2, 2, 4, 4), torch.ones(1, 2, 3, 5, 5), torch.ones(3, 2, 3, 3), 1)
    with pytest.raises(ValueError, match="differ in"):
        training_step_counts(
            LayerGeometry("linear", 2, 2), torch.ones(1, 2, 2), torch.ones(2, 2, 2), torch.ones(2, 2), 1
        )


# --- the recorder on networks ---------------------------------------------------------------------------------------
def capture(model, names, delta_modules):
    """Independent hooks: each layer's input, and the gradient at its delta point (layer or its norm)."""
    seen = {n: {"x": [], "d": []} for n in names}
    modules = dict(model.named_modules())
    for name in names:
        modules[name].register_forward_hook(
            lambda m, a, o, n=name: seen[n]["x"].append((a[0].detach(), a[0].requires_grad))
        )
        point = modules[delta_modules.get(name, name)]
        point.register_full_backward_hook(lambda m, gi, go, n=name: seen[n]["d"].insert(0, go[0].detach()))
    return seen


def brute_from_hooks(layer, captured, d, q, codes):
    x, input_grad = captured
    x = x if x.dim() == layer.feature_dims + 2 else x.unsqueeze(0)
    out_shape = (*x.shape[:2], *d.shape[-layer.feature_dims :])
    d = d.reshape(out_shape)
    if isinstance(layer, nn.Conv1d):
        return loops_conv1d(layer, x, d, codes, q, input_grad=input_grad)
    if isinstance(layer, nn.Conv2d):
        return loops_conv(layer, x, d, codes, q, input_grad=input_grad)
    return loops_linear(x, d, codes, q, input_grad=input_grad)


@pytest.mark.filterwarnings("ignore:Full backward hook is firing")
@pytest.mark.parametrize("batch_norm", [False, True])
def test_recorder_equals_the_loops_on_a_network(batch_norm):
    torch.manual_seed(0)
    model = SpikingVGG([4, 6, "P"], [5], in_channels=2, image_size=6, bits=2, threshold=0.2, batch_norm=batch_norm)
    names = [n for n, m in model.named_modules() if isinstance(m, (QuantConv2d, QuantLinear))]
    norms = {f"features.{k}.layer": f"features.{k}.norm" for k in range(2)} if batch_norm else {}
    seen = capture(model, names, norms)
    recorder = TrainingOpsRecorder(model, timesteps=3).attach()
    assert recorder.delta_points["features.1.layer"] == ("output of features.1.norm" if batch_norm else "layer output")
    x = torch.rand(2, 2, 6, 6) * 2
    with recorder.step():
        out = model(DirectEncoder(3)(x))
        (out * torch.randn_like(out)).sum().backward()
    results = recorder.compute()
    modules = dict(model.named_modules())
    for name in names:
        layer = modules[name]
        codes, q = layer_codes_for_counts(layer)
        fwd, bwd, wg, fl, bl = brute_from_hooks(layer, seen[name]["x"][0], seen[name]["d"][0], q, codes)
        r = results[name]
        n = int(r.samples)
        assert n == 2
        got = [(v * n).tolist() for v in (r.forward, r.backward, r.weight_grad, r.forward_levels, r.backward_levels)]
        assert got == [fwd, bwd, wg, fl, bl], name
    assert sum(results["features.0.layer"].backward.tolist()) == 0  # the input image needs no gradient
    assert sum(results["features.1.layer"].weight_grad.tolist()) > 0


def test_recorder_counts_a_single_step_loop_per_time_step():
    """A user's network called once per time step: call t is time step t, and the batch is counted once."""
    torch.manual_seed(1)
    fc1, fc2 = QuantLinear(6, 5, bits=3), QuantLinear(5, 3, bits=3)
    neuron = QuantIFNode(v_threshold=0.1, surrogate_function="triangle").share_scale_with(fc1)
    model = nn.ModuleDict({"fc1": fc1, "neuron": neuron, "fc2": fc2})
    seen = capture(model, ["fc1", "fc2"], {})
    recorder = TrainingOpsRecorder(model, timesteps=4).attach()
    assert recorder.delta_note == "exact zeros of delta"  # the triangle has bounded support
    x = (torch.rand(4, 3, 6) < 0.5).float().requires_grad_()
    with recorder.step():
        u, outs = None, []
        for t in range(4):
            s, _, u = neuron.step(fc1(x[t]), u)
            outs.append(fc2(s))
        (torch.stack(outs) * torch.randn(4, 3, 3)).sum().backward()
    results = recorder.compute()
    for name, layer in (("fc1", fc1), ("fc2", fc2)):
        totals = [[0] * 4 for _ in range(3)]
        for t in range(4):
            codes, q = layer_codes_for_counts(layer)
            counts = brute_from_hooks(layer, seen[name]["x"][t], seen[name]["d"][t], q, codes)
            for k in range(3):
                totals[k][t] = counts[k][0]
        r = results[name]
        assert int(r.samples) == 3
        assert [(v * 3).tolist() for v in (r.forward, r.backward, r.weight_grad)] == totals, name


@pytest.mark.filterwarnings("ignore:Full backward hook is firing")
def test_recorder_counts_a_1d_convolution():
    """QuantConv1d (strided, padded, grouped) in a multi-step network, against the 1-D loops."""
    torch.manual_seed(4)
    conv = QuantConv1d(4, 6, 3, stride=2, padding=1, groups=2, bits=2, step_mode="m")
    neuron = QuantIFNode(v_threshold=0.1, surrogate_function="triangle", step_mode="m").share_scale_with(conv)
    fc = QuantLinear(6 * 4, 5, bits=2)
    model = nn.ModuleDict({"conv": conv, "neuron": neuron, "fc": fc})
    seen = capture(model, ["conv", "fc"], {})
    recorder = TrainingOpsRecorder(model, timesteps=3).attach()
    x = (torch.rand(3, 2, 4, 8) < 0.4).float().requires_grad_()
    with recorder.step():
        out = fc(neuron(conv(x)).flatten(2))
        (out * torch.randn_like(out)).sum().backward()
    r = recorder.compute()["conv"]
    codes, q = layer_codes_for_counts(conv)
    expected = brute_from_hooks(conv, seen["conv"]["x"][0], seen["conv"]["d"][0], q, codes)
    got = [(v * 2).tolist() for v in (r.forward, r.backward, r.weight_grad, r.forward_levels, r.backward_levels)]
    assert got == [list(e) for e in expected]
    assert sum(expected[2]) > 0 and float(r.macs) == 3 * 2 * 6 * 4  # k * C_in/g * C_out * L_out MACs per row


def run_step(seed, attach):
    torch.manual_seed(seed)
    model = SpikingVGG([4, "P"], [6], in_channels=1, image_size=4, bits=2, threshold=0.2, batch_norm=True)
    recorder = TrainingOpsRecorder(model, timesteps=2).attach() if attach else None
    x = torch.rand(3, 1, 4, 4)
    if recorder is not None:
        recorder.start_step()
        recorder.active = True
    out = model(DirectEncoder(2)(x))
    out.square().sum().backward()
    return out.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}, recorder


def test_recorder_leaves_outputs_and_gradients_bit_identical():
    out_a, grads_a, _ = run_step(3, attach=False)
    out_b, grads_b, recorder = run_step(3, attach=True)
    assert torch.equal(out_a, out_b)
    assert grads_a.keys() == grads_b.keys()
    assert all(torch.equal(grads_a[k], grads_b[k]) for k in grads_a)
    assert recorder.compute()  # and it did count


def test_delta_rule_follows_the_surrogate():
    triangle, atan = (
        make_neuron("spikingjelly", "if", "hard").spike_fn,
        make_neuron("spikingjelly", "if", "hard", surrogate="sj.ATan").spike_fn,
    )
    assert bounded_support(triangle) and not bounded_support(atan)
    assert delta_rule([triangle]) == (0.0, "exact zeros of delta")
    tau, note = delta_rule([triangle, atan])
    assert tau == training_module.DEFAULT_DELTA_THRESHOLD and "threshold" in note and "ATan" in note
    assert delta_rule([atan], 0.0)[1].startswith("exact zeros of delta (but ATan")
    with pytest.raises(ValueError, match="delta_threshold"):
        delta_rule([triangle], -1.0)
    model = SpikingVGG([4, "P"], [6], in_channels=1, image_size=4, surrogate="sj.ATan")
    assert "ATan" in TrainingOpsRecorder(model, timesteps=2).delta_note


def test_meter_refuses_more_steps_than_it_holds_and_bad_arguments():
    g = LayerGeometry("linear", 2, 2)
    meter = TrainingOpsMeter(g, 1, timesteps=2)
    ops = training_step_counts(g, torch.ones(3, 1, 2), torch.ones(3, 1, 2), torch.ones(2, 2, dtype=torch.int8), 1)
    with pytest.raises(ValueError, match="timesteps=2"):
        meter.update(ops)
    with pytest.raises(ValueError, match="timesteps"):
        TrainingOpsMeter(g, 1, timesteps=0)
    with pytest.raises(ValueError, match="delta_at"):
        TrainingOpsRecorder(SpikingVGG([4], [], in_channels=1, image_size=4), 2, delta_at="bn")
    with pytest.raises(ValueError, match="no QuantConv2d"):
        TrainingOpsRecorder(nn.Linear(2, 2), 2)


def test_price_by_hand():
    """CMOS: forward and weight gradient at E_AC (E_MAC for analog input), backward at E_MAC; device reads of the
    quantized layer at the pattern's per-level read energy, zero level skipped."""
    g = LayerGeometry("linear", 3, 2)
    codes = torch.tensor([[1, 0, -1], [0, 1, 1]], dtype=torch.int8)
    meter = TrainingOpsMeter(g, 1, timesteps=1)
    s, d = torch.tensor([[[1.0, 0.0, 1.0]]]), torch.tensor([[[0.5, -1.0]]])
    meter.update(training_step_counts(g, s, d, codes, 1))
    r = meter.compute()
    # forward: x0 meets w00 (+1), x2 meets w02 (-1) and w12 (+1): 3; backward: d0 x 2 non-zero, d1 x 2: 4;
    # weight gradient: 2 inputs x 2 deltas: 4
    assert r.totals() == {"forward": 3.0, "backward": 4.0, "weight_grad": 4.0}
    pe = pattern_energies(get_device("skmtj7"), bits=2)
    e = price_training_step({"fc": r}, "45nm_fp32", energies=pe, pattern_index=7, device_layers=["fc"], write_j=1e-12)
    read = pe.read_j[7].tolist()
    fc = e["layers"]["fc"]
    assert fc["forward_j"] == pytest.approx(3 * 0.9e-12) and fc["backward_j"] == pytest.approx(4 * 4.6e-12)
    assert fc["weight_grad_j"] == pytest.approx(4 * 0.9e-12)
    # forward reads: levels -1: 1, +1: 2; backward reads: d0 meets w00 (+1), w02 (-1); d1 meets w11 (+1), w12 (+1)
    assert fc["read_forward_j"] == pytest.approx(read[0] + 2 * read[2])
    assert fc["read_backward_j"] == pytest.approx(read[0] + 3 * read[2])
    assert e["total_j"] == pytest.approx(e["compute_j"] + e["device_read_j"] + 1e-12)
    analog = price_training_step({"fc": r}, analog=["fc"])["layers"]["fc"]
    assert analog["forward_j"] == pytest.approx(3 * 4.6e-12) and analog["weight_grad_j"] == pytest.approx(4 * 4.6e-12)
    with pytest.raises(ValueError, match="device_layers"):
        price_training_step({"fc": r}, device_layers=["fc"])
