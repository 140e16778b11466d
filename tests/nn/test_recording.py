"""What a layer records: exact counts in every dtype and autocast, samples and T in every batch layout, whether the
input was spikes or analog, and no host synchronisation in the forward pass."""

import pytest
import torch
from host_reads import no_host_reads
from torch import Tensor, nn

from quest_lightning.nn import (
    DirectEncoder,
    LayerRecording,
    QuantConv2d,
    QuantLeaky,
    QuantLinear,
    SpikingVGG,
    input_kind_of,
    layer_recording,
    layer_recordings,
    make_neuron,
    recording,
    reset_recording,
)
from quest_lightning.nn.vgg import SpikingBlock

T, B, F = 4, 5, 6


def _spikes(*shape, p=0.5, seed=0, dtype=torch.float32) -> Tensor:
    return (torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) < p).to(dtype)


def _recount(x: Tensor, feature_dims: int) -> Tensor:
    """An independent recount: every input element as an int64, summed over the leading dimensions."""
    return x.detach().to(torch.int64).reshape(-1, *x.shape[x.dim() - feature_dims :]).sum(0)


# --------------------------------------------------------------------------------------------------------------------
# exact counts


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_counts_are_exact_for_low_precision_spikes(dtype):
    """3200 rows of dense spikes: counts near 2900, which neither bf16 (8-bit mantissa) nor fp16 (11-bit) holds."""
    rows_t, rows_b = 4, 800
    x = _spikes(rows_t, rows_b, F, p=0.9, dtype=dtype)
    layer = QuantLinear(F, 3, bits=2, dtype=dtype)
    layer.record = True
    layer(x)
    exact = _recount(x, 1)
    naive = x.flatten(0, 1).sum(0)  # what a sum in the input's dtype gives
    assert not torch.equal(naive.to(torch.int64), exact)  # so this test can tell the difference
    assert layer.input_counts.dtype == torch.float64
    assert torch.equal(layer.input_counts.to(torch.int64), exact)
    assert int(layer.nonbinary_inputs) == 0


def test_counts_are_exact_under_bf16_autocast_through_a_spiking_network():
    """Under torch.autocast(bfloat16) the spikes reaching the second and third layers are bf16; the recorded counts
    equal an int64 recount of what each layer received (captured by a forward pre-hook)."""
    torch.manual_seed(0)
    net = nn.Sequential(
        SpikingBlock(QuantConv2d(2, 8, 3, padding=1, bits=2), make_neuron("spikingjelly", "if", "hard")),
        SpikingBlock(QuantConv2d(8, 8, 3, padding=1, bits=2), make_neuron("spikingjelly", "if", "hard")),
        SpikingBlock(QuantLinear(8 * 4 * 4, 10, bits=2), make_neuron("spikingjelly", "if", "hard")),
    )
    seen, fired = {}, {}
    for name, block in net.named_children():
        block.layer.register_forward_pre_hook(lambda m, args, name=name: seen.__setitem__(name, args[0].detach()))
        block.register_forward_hook(lambda m, args, out, name=name: fired.__setitem__(name, out.detach()))
    x = torch.rand(T, 400, 2, 4, 4, generator=torch.Generator().manual_seed(1)) * 3
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16), recording(net):
        h = net[0](x)
        h = net[1](h)
        net[2](h.flatten(2))
    for name, block in net.named_children():
        x_in, layer = seen[name], block.layer
        if name != "0":
            assert x_in.dtype == torch.bfloat16
            counts = _recount(x_in, layer.feature_dims)
            assert counts.max() > 256  # beyond what bf16 holds exactly
            assert torch.equal(layer.input_counts.to(torch.int64), counts)
            assert input_kind_of(layer) == "spikes"
        else:
            assert input_kind_of(layer) == "analog"
        # the neurons' spike counts are exact too
        assert block.neuron.spike_count.dtype == torch.float64
        assert int(block.neuron.spike_count) == int(fired[name].to(torch.int64).sum())


def test_analog_counts_accumulate_in_float64():
    layer = QuantLinear(F, 3, bits=2)
    layer.record = True
    x = torch.rand(T, B, F, generator=torch.Generator().manual_seed(0))
    layer(x)
    torch.testing.assert_close(layer.input_counts, x.double().sum((0, 1)), rtol=1e-12, atol=0)
    assert int(layer.nonbinary_inputs) == (x * (1 - x) != 0).sum().item() > 0


def _analog_with_zeros(*shape, seed=0, dtype=torch.float32) -> Tensor:
    """Grey values, negative ones and about half exact zeros (what NeuroBench's Effective_MACs binarize)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g)
    return torch.where(torch.rand(*shape, generator=g) < 0.5, torch.zeros(()), x).to(dtype)


def _nonzero_recount(x: Tensor, feature_dims: int) -> Tensor:
    """An independent recount of the non-zero input elements per position, in int64."""
    nonzero = (x.detach() != 0).to(torch.int64)
    return nonzero.reshape(-1, *x.shape[x.dim() - feature_dims :]).sum(0)


@pytest.mark.parametrize("layout", ["linear [T, B, F]", "conv [T, B, C, H, W]", "single-step loop", "direct coding"])
def test_nonzero_counts_equal_a_recount_in_every_layout(layout):
    if layout == "conv [T, B, C, H, W]":
        layer, x = QuantConv2d(2, 3, 3, padding=1, bits=2), _analog_with_zeros(T, B, 2, 5, 5)
        seen, calls = x, [x]
    elif layout == "direct coding":
        layer, image = QuantLinear(F, 3, bits=2), _analog_with_zeros(B, F, seed=1)
        x = DirectEncoder(T)(image)
        assert x.stride(0) == 0  # recorded once and multiplied by T
        seen, calls = image.expand(T, B, F).contiguous(), [x]
    else:
        layer, x = QuantLinear(F, 3, bits=2), _analog_with_zeros(T, B, F, seed=2)
        seen, calls = x, (list(x) if layout == "single-step loop" else [x])
    layer.record = True
    for _ in range(2):  # two batches accumulate
        for c in calls:
            layer(c)
    expected = 2 * _nonzero_recount(seen, layer.feature_dims)
    assert 0 < int(expected.sum()) < 2 * seen.numel()  # zeros and non-zeros both present
    assert layer.nonzero_counts.dtype == torch.float64
    assert torch.equal(layer.nonzero_counts.to(torch.int64), expected)
    assert layer.nonzero_input_counts() is layer.nonzero_counts
    # the sums are still the sums of the values, not of the non-zero flags
    torch.testing.assert_close(layer.input_counts, 2 * seen.double().sum((0, 1)), rtol=1e-12, atol=1e-9)


def test_nonzero_counts_are_exact_in_bf16():
    """3200 rows of bf16 grey values, about 90% non-zero: counts near 2900, which a bf16 count would round."""
    g = torch.Generator().manual_seed(5)
    x = (torch.rand(4, 800, F, generator=g) * (torch.rand(4, 800, F, generator=g) < 0.9)).to(torch.bfloat16)
    layer = QuantLinear(F, 3, bits=2, dtype=torch.bfloat16)
    layer.record = True
    with torch.autocast("cpu", dtype=torch.bfloat16):
        layer(x)
    exact = _nonzero_recount(x, 1)
    naive = (x != 0).to(torch.bfloat16).flatten(0, 1).sum(0)
    assert not torch.equal(naive.to(torch.int64), exact)  # so this test can tell the difference
    assert torch.equal(layer.nonzero_counts.to(torch.int64), exact)


def test_spike_declared_layers_keep_no_nonzero_counts():
    """A layer declared input_kind="spikes" pays nothing more: its non-zero counts are its spike counts."""
    spikes = _spikes(T, B, F, seed=6)
    layer = QuantLinear(F, 3, bits=2, input_kind="spikes")
    layer.record = True
    layer(spikes)
    assert layer.nonzero_counts.numel() == 0
    assert layer.nonzero_input_counts() is layer.input_counts
    assert torch.equal(layer.nonzero_input_counts().to(torch.int64), _nonzero_recount(spikes, 1))
    # declared spikes, then not: the first calls count through their sums, the later ones are counted
    analog = _analog_with_zeros(T, B, F, seed=7)
    layer.input_kind = "auto"
    layer(analog)
    layer.input_kind = "spikes"
    layer(spikes)
    expected = 2 * _nonzero_recount(spikes, 1) + _nonzero_recount(analog, 1)
    assert torch.equal(layer.nonzero_input_counts().to(torch.int64), expected)


# --------------------------------------------------------------------------------------------------------------------
# samples and T in every layout


class _BatchMajor(nn.Module):
    """A user's module that takes [B, T, F] and hands the layer a time-major view."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = QuantLinear(F, 3, bits=2)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(x.transpose(0, 1))


class _SingleStepLoop(nn.Module):
    """The snnTorch idiom: a loop over T calling the layer and the neuron on [B, F]."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = QuantLinear(F, 3, bits=2)
        self.lif = QuantLeaky(beta=1.0, threshold=0.5).share_scale_with(self.fc)

    def forward(self, x: Tensor) -> Tensor:
        mem, out = None, []
        for t in range(x.shape[0]):
            spk, mem = self.lif(self.fc(x[t]), mem)
            out.append(spk)
        return torch.stack(out)


def _layouts():
    spikes = _spikes(T, B, F, seed=3)
    image = torch.rand(B, F, generator=torch.Generator().manual_seed(4))
    return {
        # name: (module, input, the time-major [T, B, F] tensor the layer sees, analog?)
        "batch-major": (_BatchMajor(), spikes.transpose(0, 1).contiguous(), spikes, False),
        "time-major": (nn.Sequential(QuantLinear(F, 3, bits=2)), spikes, spikes, False),
        "single-step loop": (_SingleStepLoop(), spikes, spikes, False),
        "direct coding": (
            nn.Sequential(QuantLinear(F, 3, bits=2)),
            DirectEncoder(T)(image),
            image.expand(T, B, F),
            True,
        ),
    }


@pytest.mark.parametrize("layout", list(_layouts()))
def test_every_layout_gives_samples_and_timesteps(layout):
    module, x, seen, analog = _layouts()[layout]
    if layout == "direct coding":
        assert x.stride(0) == 0
    with recording(module):
        module(x)
        module(x)  # a second batch of the same size
    ((name, rec),) = layer_recordings(module).items()
    assert rec.samples == 2 * B // 2 and rec.timesteps == 2 * T
    assert rec.rows == 2 * T * B
    assert rec.calls == (2 * T if layout == "single-step loop" else 2)
    torch.testing.assert_close(rec.input_counts, 2 * seen.double().sum((0, 1)), rtol=1e-12, atol=0)
    assert input_kind_of(rec) == ("analog" if analog else "spikes")
    one_batch = layer_recordings(module)[name]
    reset_recording(module)
    assert layer_recordings(module) == {}
    with recording(module):
        module(x[:, :2] if layout != "batch-major" else x[:2])  # a smaller batch: 2 samples
    after = layer_recording(name, dict(module.named_modules())[name])
    assert after.samples == 2 and after.timesteps == T
    assert one_batch.samples == B


def test_since_gives_one_batch_of_an_accumulating_record():
    layer = QuantLinear(F, 3, bits=2)
    layer.record = True
    layer(_spikes(T, B, F, seed=0))
    first = layer_recording("fc", layer)
    x = _spikes(T, 2, F, seed=1)
    layer(x)
    total = layer_recording("fc", layer)
    assert total.samples is None  # 4*5 + 4*2 rows over 8 steps: two batch sizes, no single answer
    batch = total.since(first)
    assert (batch.samples, batch.timesteps, batch.calls) == (2, T, 1)
    assert torch.equal(batch.input_counts.to(torch.int64), _recount(x, 1))
    with pytest.raises(ValueError, match="earlier snapshot of layer 'fc'"):
        first.since(total)


@pytest.mark.parametrize(("mode", "steps"), [("m", T), ("s", 1)])
def test_step_mode_attribute_decides_over_the_rank(mode, steps):
    layer = QuantLinear(F, 3, bits=2)
    layer.step_mode = mode  # as a SpikingJelly-style layer carries it
    layer.record = True
    layer(_spikes(T, B, F))
    rec = layer_recording("fc", layer)
    assert rec.steps == steps and rec.rows == T * B


def test_multi_step_conv_and_vgg_record_samples_timesteps_and_kinds():
    torch.manual_seed(0)
    net = SpikingVGG([4, "P", 8, "P"], [16], in_channels=1, image_size=8, bits=2, pool="avg")
    seen = {}
    for name, m in net.named_modules():
        if isinstance(m, QuantConv2d | QuantLinear):
            m.register_forward_pre_hook(lambda m, args, name=name: seen.__setitem__(name, args[0].detach()))
    x = DirectEncoder(T)(torch.rand(B, 1, 8, 8))
    with torch.no_grad(), recording(net):
        net(x)
    records = layer_recordings(net)
    assert list(records) == ["features.0.layer", "features.1.layer", "classifier.0.layer", "readout"]
    for rec in records.values():
        assert (rec.samples, rec.timesteps, rec.calls) == (B, T, 1)
    kinds = {name: input_kind_of(rec) for name, rec in records.items()}
    # what each layer saw, classified independently: graded values after average pooling are analog
    assert kinds == {name: "spikes" if bool(((v == 0) | (v == 1)).all()) else "analog" for name, v in seen.items()}
    assert kinds["features.0.layer"] == kinds["features.1.layer"] == "analog"  # pixels; avg-pooled spikes
    assert kinds["readout"] == "spikes"


# --------------------------------------------------------------------------------------------------------------------
# input kind


def test_input_kind_is_decided_by_what_the_layer_saw_not_its_position():
    first, second = QuantLinear(F, F, bits=2), QuantLinear(F, 3, bits=2)
    model = nn.Sequential(first, second)
    assert input_kind_of(first) is None  # nothing recorded yet
    with recording(model):
        second(first(_spikes(T, B, F)))  # rate-coded spikes into the first layer; analog currents into the second
    assert input_kind_of(first) == "spikes"
    assert input_kind_of(second) == "analog"
    first.input_kind, second.input_kind = "analog", "spikes"  # a user's override
    assert input_kind_of(first) == "analog" and input_kind_of(second) == "spikes"
    assert layer_recording("0", first).input_kind == "analog"
    layer = QuantConv2d(1, 2, 3, input_kind="spikes")
    assert input_kind_of(layer) == "spikes"
    with pytest.raises(ValueError, match=r"input_kind='pixels' is unknown: use 'auto'"):
        layer.input_kind = "pixels"
    with pytest.raises(ValueError, match=r"input_kind='x' is unknown"):
        QuantLinear(2, 2, input_kind="x")


def test_reset_zeroes_every_record():
    layer = QuantLinear(F, 3, bits=2)
    layer.record = True
    layer(torch.rand(T, B, F))
    layer.reset_recording()
    assert layer.input_counts.abs().sum() == 0 and int(layer.nonbinary_inputs) == 0
    assert layer.nonzero_counts.numel() == F and layer.nonzero_counts.abs().sum() == 0
    assert (layer.recorded_rows, layer.recorded_calls, layer.recorded_steps) == (0, 0, 0)
    assert isinstance(layer_recording("fc", layer), LayerRecording)


# --------------------------------------------------------------------------------------------------------------------
# no host synchronisation


@pytest.mark.parametrize("layout", ["time-major", "direct coding", "single-step loop"])
def test_recording_forward_does_not_read_tensors_on_the_host(layout):
    module, x, _, _ = _layouts()[layout]
    with recording(module):
        module(x)  # first call allocates the records
        with torch.no_grad():
            for m in module.modules():
                if isinstance(m, QuantLinear):
                    m.alpha.fill_(-1.0)  # the projection runs too
        with no_host_reads():
            module(x)
    with no_host_reads(), pytest.raises(AssertionError, match="read on the host"):
        bool(torch.ones(()))  # the guard itself works
