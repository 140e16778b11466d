"""The exact AOR count against an independent brute force.

The brute force walks every recorded row (time step × sample), every output position and every weight, finds the
input that weight meets there from the conv arithmetic (stride, padding, dilation, groups), and counts the
operations whose input spike is 1, per weight level. It shares no code with the meter: it does not unfold, pad or
call any convolution.
"""

import pytest
import torch
from torch import nn

from quest_lightning.metrics import ActivationOperationRate, LayerGeometry, ann_ops, level_operation_counts
from quest_lightning.nn import QuantConv2d, QuantLinear

T, B = 2, 3


def _spikes(shape, p=0.35, seed=0):
    return (torch.rand(shape, generator=torch.Generator().manual_seed(seed)) < p).float()


def _random_codes(shape, qmax, seed=1):
    return torch.randint(-qmax, qmax + 1, shape, generator=torch.Generator().manual_seed(seed), dtype=torch.int8)


def _record(layer, x):
    """The real recording path: ``record=True`` and one multi-step forward."""
    layer.record = True
    with torch.no_grad():
        y = layer(x)
    layer.record = False
    return y, layer.input_counts.clone(), int(layer.recorded_rows)


def _conv_padding(layer, height, width):
    """(top, left) padding and output size, from the conv definition only."""
    kh, kw = layer.kernel_size
    sh, sw = layer.stride
    dh, dw = layer.dilation
    if layer.padding == "same":  # total padding d*(k-1), the extra one on the bottom/right (as PyTorch does)
        top, left = dh * (kh - 1) // 2, dw * (kw - 1) // 2
        bottom, right = dh * (kh - 1) - top, dw * (kw - 1) - left
    else:
        top = bottom = layer.padding[0]
        left = right = layer.padding[1]
    h_out = (height + top + bottom - dh * (kh - 1) - 1) // sh + 1
    w_out = (width + left + right - dw * (kw - 1) - 1) // sw + 1
    return top, left, h_out, w_out


def brute_force_conv(layer, x, codes, qmax):
    """Per-level counts N(v), N_eff, and the ANN MACs per row, by explicit loops."""
    rows = x.flatten(0, 1).tolist()  # [rows][C][H][W]
    c_in, height, width = x.shape[-3:]
    w = codes.tolist()
    c_out = layer.out_channels
    groups = layer.groups
    cin_g, cout_g = c_in // groups, c_out // groups
    kh, kw = layer.kernel_size
    sh, sw = layer.stride
    dh, dw = layer.dilation
    top, left, h_out, w_out = _conv_padding(layer, height, width)
    levels = [0] * (2 * qmax + 1)
    effective = 0
    macs_per_row = 0
    for r, sample in enumerate(rows):
        for oh in range(h_out):
            for ow in range(w_out):
                for o in range(c_out):
                    g = o // cout_g
                    for c in range(cin_g):
                        ci = g * cin_g + c
                        for i in range(kh):
                            for j in range(kw):
                                if r == 0:
                                    macs_per_row += 1
                                ih, iw = oh * sh - top + i * dh, ow * sw - left + j * dw
                                if not (0 <= ih < height and 0 <= iw < width):
                                    continue  # zero padding: no spike
                                if sample[ci][ih][iw] == 1.0:
                                    code = w[o][c][i][j]
                                    levels[code + qmax] += 1
                                    effective += code != 0
    return levels, effective, macs_per_row, (h_out, w_out)


def brute_force_linear(x, codes, qmax):
    rows = x.reshape(-1, x.shape[-1]).tolist()
    w = codes.tolist()
    levels = [0] * (2 * qmax + 1)
    effective = 0
    for sample in rows:
        for weights in w:
            for f, value in enumerate(sample):
                if value == 1.0:
                    levels[weights[f] + qmax] += 1
                    effective += weights[f] != 0
    return levels, effective, len(w) * len(w[0])


CONVS = {
    "plain": dict(in_channels=4, out_channels=4, kernel_size=3),
    "stride2_pad1": dict(in_channels=4, out_channels=6, kernel_size=3, stride=2, padding=1),
    "pad2": dict(in_channels=3, out_channels=4, kernel_size=3, padding=2),
    "dilation2": dict(in_channels=3, out_channels=4, kernel_size=3, dilation=2, padding=1),
    "groups2": dict(in_channels=4, out_channels=6, kernel_size=3, padding=1, groups=2),
    "depthwise": dict(in_channels=4, out_channels=4, kernel_size=3, padding=1, groups=4),
    "same": dict(in_channels=3, out_channels=4, kernel_size=3, padding="same", dilation=2),
    "same_even_kernel": dict(in_channels=2, out_channels=3, kernel_size=(2, 4), padding="same"),
    "rect_stride": dict(in_channels=2, out_channels=4, kernel_size=(3, 2), stride=(2, 1), padding=(1, 0)),
}


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("bits", [2, 3])
@pytest.mark.parametrize("name", list(CONVS))
def test_conv_level_counts_match_brute_force(name, bits):
    torch.manual_seed(0)
    layer = QuantConv2d(**CONVS[name], bits=bits)
    qmax = layer.qmax
    height, width = 7, 6
    x = _spikes((T, B, layer.in_channels, height, width))
    y, counts, rows = _record(layer, x)
    assert rows == T * B
    torch.testing.assert_close(counts, x.sum((0, 1)).double())

    codes = _random_codes(layer.weight.shape, qmax)
    levels, effective, macs, (h_out, w_out) = brute_force_conv(layer, x, codes, qmax)
    assert (h_out, w_out) == tuple(y.shape[-2:])

    # ANN MACs by hand: k_h k_w * C_in/g * C_out * H_out * W_out
    kh, kw = layer.kernel_size
    by_hand = kh * kw * (layer.in_channels // layer.groups) * layer.out_channels * h_out * w_out
    assert ann_ops(LayerGeometry.of(layer), (layer.in_channels, height, width)) == by_hand == macs

    got = level_operation_counts(LayerGeometry.of(layer), counts, codes, qmax)
    assert got.dtype == torch.float64
    assert got.tolist() == [float(v) for v in levels]
    assert sum(levels) > 0 and effective > 0

    meter = ActivationOperationRate(LayerGeometry.of(layer), qmax)
    meter.update(counts, codes, rows, B)
    out = meter.compute()
    assert out.level_ops.tolist() == [float(v) for v in levels]
    assert out.aor.item() == pytest.approx(effective / (by_hand * T * B), rel=1e-12)
    assert out.synaptic_rate.item() == pytest.approx(sum(levels) / (by_hand * T * B), rel=1e-12)
    assert out.level_ops_per_sample.tolist() == pytest.approx([v / B for v in levels], rel=1e-12)
    assert out.timesteps.item() == pytest.approx(T)
    assert out.ops.item() == by_hand


def test_conv_with_the_layers_own_codes_and_a_direct_coding_input():
    """The codes of the forward pass, and a stride-0 (repeated over T) input as direct coding makes it."""
    torch.manual_seed(3)
    layer = QuantConv2d(3, 5, 3, stride=2, padding=1, bits=3)
    with torch.no_grad():
        layer.weight.mul_(4)  # spread the codes over every level
    frame = _spikes((B, 3, 6, 6), seed=4)
    x = frame.unsqueeze(0).expand(T, *frame.shape)
    assert x.stride(0) == 0
    _, counts, rows = _record(layer, x)
    assert rows == T * B
    codes = layer.codes
    assert len(codes.unique()) >= 5
    levels, effective, macs, _ = brute_force_conv(layer, x.contiguous(), codes, layer.qmax)
    meter = ActivationOperationRate(LayerGeometry.of(layer), layer.qmax)
    meter.update(counts, codes, rows, B)
    out = meter.compute()
    assert out.level_ops.tolist() == [float(v) for v in levels]
    assert out.aor.item() == pytest.approx(effective / (macs * T * B), rel=1e-12)


@pytest.mark.parametrize("bits", [2, 3])
def test_linear_level_counts_match_brute_force(bits):
    torch.manual_seed(0)
    layer = QuantLinear(13, 7, bits=bits)
    x = _spikes((T, B, 13), seed=5)
    _, counts, rows = _record(layer, x)
    assert rows == T * B and counts.shape == (13,)
    codes = _random_codes(layer.weight.shape, layer.qmax, seed=6)
    levels, effective, macs = brute_force_linear(x, codes, layer.qmax)
    assert ann_ops(LayerGeometry.of(layer), (13,)) == macs == 13 * 7
    geometry = LayerGeometry.of(layer)
    assert level_operation_counts(geometry, counts, codes, layer.qmax).tolist() == [float(v) for v in levels]
    meter = ActivationOperationRate(LayerGeometry.of(layer), layer.qmax)
    meter.update(counts, codes, rows, B)
    assert meter.compute().aor.item() == pytest.approx(effective / (macs * T * B), rel=1e-12)


def test_meter_accumulates_over_batches_and_merges_like_ddp():
    """Two updates (two batches, or two ranks merged) equal the brute force over all rows."""
    torch.manual_seed(0)
    layer = QuantConv2d(4, 6, 3, stride=2, padding=1, groups=2, bits=2)
    codes = _random_codes(layer.weight.shape, layer.qmax, seed=9)
    xs = [_spikes((T, B, 4, 5, 5), seed=s) for s in (10, 11)]
    meters = [ActivationOperationRate(LayerGeometry.of(layer), layer.qmax) for _ in xs]
    total = ActivationOperationRate(LayerGeometry.of(layer), layer.qmax)
    for meter, x in zip(meters, xs, strict=True):
        layer.reset_recording()
        _, counts, rows = _record(layer, x)
        meter.update(counts, codes, rows, B)
        total.update(counts, codes, rows, B)
    meters[0].merge_state(meters[1])  # what the sum reduction across ranks does
    levels, effective, macs, _ = brute_force_conv(layer, torch.cat(xs, 1), codes, layer.qmax)
    for out in (total.compute(), meters[0].compute()):
        assert out.level_ops.tolist() == [float(v) for v in levels]
        assert out.aor.item() == pytest.approx(effective / (macs * T * 2 * B), rel=1e-12)
        assert out.samples.item() == 2 * B


def test_full_precision_layer_is_not_supported_with_circular_padding():
    layer = nn.Conv2d(2, 2, 3, padding=1, padding_mode="circular")
    with pytest.raises(ValueError, match="padding_mode"):
        codes = torch.ones(2, 2, 3, 3, dtype=torch.int8)
        level_operation_counts(LayerGeometry.of(layer), torch.ones(2, 4, 4), codes, 1)


@pytest.mark.parametrize(
    "kwargs",
    [dict(kernel_size=3), dict(kernel_size=3, stride=2, padding=1, groups=2), dict(kernel_size=2, padding="same")],
    ids=["plain", "strided-groups", "same-even"],
)
def test_conv1d_level_counts_match_brute_force(kwargs):
    """A 1-D convolution (a plain nn.Conv1d, as in a mixed model) by explicit loops over rows, outputs and weights."""
    layer = nn.Conv1d(4, 6, **kwargs, bias=False)
    x = _spikes((T, B, 4, 11), seed=12)
    codes = _random_codes(layer.weight.shape, 1, seed=13)
    geometry = LayerGeometry.of(layer)
    (k,), (s,), (d,), groups = layer.kernel_size, layer.stride, layer.dilation, layer.groups
    left = d * (k - 1) // 2 if layer.padding == "same" else layer.padding[0]
    total_pad = d * (k - 1) if layer.padding == "same" else 2 * layer.padding[0]
    length = x.shape[-1]
    out_len = (length + total_pad - d * (k - 1) - 1) // s + 1
    levels, macs = [0, 0, 0], 0
    w = codes.tolist()
    for r, row in enumerate(x.flatten(0, 1).tolist()):
        for o in range(6):
            g = o // (6 // groups)
            for c in range(4 // groups):
                for j in range(k):
                    for p in range(out_len):
                        macs += r == 0
                        i = p * s - left + j * d
                        if 0 <= i < length and row[g * (4 // groups) + c][i] == 1.0:
                            levels[w[o][c][j] + 1] += 1
    counts = x.flatten(0, 1).sum(0, dtype=torch.float64)
    assert geometry.ops((4, length)) == macs
    assert level_operation_counts(geometry, counts, codes, 1).tolist() == [float(v) for v in levels]
