"""The meters as torchmetrics Metrics: functional twins, class metadata, exact int64/float64 sums whatever the input
dtype, checkpointed states (every figure ``compute`` returns survives a state_dict round trip), the layer geometry
as numbers, and the runnable examples in the docstrings."""

import doctest

import pytest
import torch
from torch import nn

import quest_lightning.metrics.functional as functional_module
import quest_lightning.metrics.geometry as geometry_module
import quest_lightning.metrics.meters as meters_module
from quest_lightning.metrics import (
    ActivationOperationRate,
    LayerGeometry,
    SpikeRate,
    TransitionCounter,
    WeightSparsity,
    activation_operation_rate,
    spike_rate,
    transition_counts,
    transition_summary,
    weight_sparsity,
)


@pytest.mark.parametrize("module", [geometry_module, functional_module, meters_module], ids=lambda m: m.__name__)
def test_docstring_examples_run(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize(
    "meter, higher",
    [(SpikeRate, None), (WeightSparsity, True), (ActivationOperationRate, False), (TransitionCounter, None)],
)
def test_class_metadata(meter, higher):
    assert meter.is_differentiable is False
    assert meter.full_state_update is False
    assert meter.higher_is_better is higher


def test_weight_sparsity_counts_zero_codes_by_hand_and_merges_like_ddp():
    a = torch.tensor([[0, 1, -1], [0, 0, 1]], dtype=torch.int8)  # 3 zeros of 6
    b = torch.tensor([1, 0, 1, 1], dtype=torch.int8)  # 1 zero of 4
    meter, other = WeightSparsity(), WeightSparsity()
    meter.update(a)
    other.update(b)
    assert float(other.compute()) == 0.25
    meter.merge_state(other)  # what the sum reduction across ranks does
    assert float(meter.compute()) == pytest.approx(4 / 10, rel=1e-15)
    assert float(weight_sparsity(a)) == 0.5
    assert meter.zeros.dtype == torch.int64 and meter.total.dtype == torch.int64
    with pytest.raises(ValueError, match="codes is empty"):
        weight_sparsity(torch.zeros(0, dtype=torch.int8))


def test_spike_rate_by_hand_and_equal_to_its_functional_twin():
    gen = torch.Generator().manual_seed(0)
    spikes = (torch.rand(3, 5, 7, generator=gen) < 0.3).float()  # [T, B, N]
    total = int(spikes.sum())
    meter = SpikeRate()
    meter.update(spikes[:, :2].sum(), neurons=7, samples=2, rows=6)
    meter.update(spikes[:, 2:].sum(), neurons=7, samples=3, rows=9)
    out = meter.compute()
    assert float(out.rate) == pytest.approx(total / (7 * 5), rel=1e-15)
    assert float(out.rate_per_step) == pytest.approx(total / (7 * 15), rel=1e-15)
    assert int(out.neuron_samples) == 35 and float(out.spikes) == total
    twin = spike_rate(spikes, neurons=7, samples=5, rows=15)
    assert [float(v) for v in twin] == [float(v) for v in out]
    for bad in (dict(neurons=0), dict(samples=-1), dict(rows=2.5)):
        with pytest.raises(ValueError, match=f"{next(iter(bad))}="):
            spike_rate(spikes, **{"neurons": 7, "samples": 5, "rows": 15, **bad})


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_sums_are_exact_whatever_the_input_dtype(dtype):
    """3,001 ones summed in bf16 or fp16 round (bf16 is exact up to 256, fp16 up to 2048); the meters convert first."""
    ones = torch.ones(3001, dtype=dtype)
    assert float(ones.sum()) != 3001 or dtype == torch.float32  # the trap the meters must avoid
    meter = SpikeRate()
    for _ in range(3):
        meter.update(ones, neurons=1, samples=3001, rows=3001)
    assert meter.spikes.dtype == torch.float64 and float(meter.spikes) == 3 * 3001
    assert meter.neuron_samples.dtype == torch.int64 and int(meter.neuron_samples) == 3 * 3001
    aor = ActivationOperationRate(LayerGeometry("linear", 2, 1), qmax=1)
    aor.update(torch.tensor([3001.0, 5.0]).to(torch.float64), torch.tensor([[1, -1]], dtype=torch.int8), 3001, 3001)
    aor.update(torch.tensor([1.0, 0.0], dtype=dtype), torch.tensor([[1, -1]], dtype=torch.int8), 1, 1)
    assert aor.level_ops.dtype == torch.float64 and aor.level_ops.tolist() == [5.0, 0.0, 3002.0]
    assert aor.rows.dtype == aor.samples.dtype == aor.dense_ops.dtype == torch.int64
    assert int(aor.dense_ops) == 2 * 3002


@pytest.mark.filterwarnings("ignore:The ``compute`` method of metric")
def test_activation_operation_rate_twin_equals_the_meter_and_the_meter_checkpoints_every_figure():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)
    geometry = LayerGeometry.of(conv)
    counts = torch.randint(0, 5, (3, 6, 6)).double()
    codes = torch.randint(-1, 2, conv.weight.shape, dtype=torch.int8)
    meter = ActivationOperationRate(geometry, qmax=1)
    meter.update(counts, codes, rows=8, samples=4)
    out = meter.compute()
    twin = activation_operation_rate(geometry, counts, codes, qmax=1, rows=8, samples=4)
    assert out._fields == twin._fields
    for a, b in zip(out, twin, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert int(out.ops) == 9 * 3 * 4 * 3 * 3 and float(out.timesteps) == 2.0

    fresh = ActivationOperationRate(geometry, qmax=1)
    fresh.load_state_dict(meter.state_dict())  # ops, rows and samples are states: nothing lives outside them
    restored = fresh.compute()
    for a, b in zip(restored, out, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert set(meter.state_dict()) == {"level_ops", "rows", "dense_ops", "samples"}


def test_an_empty_meter_reports_zero_rows_and_recording_nothing_adds_nothing():
    meter = ActivationOperationRate(LayerGeometry("linear", 3, 2), qmax=1)
    meter.update(torch.zeros(0), torch.zeros(2, 3, dtype=torch.int8), rows=0, samples=5)  # the layer never ran
    out = meter.compute()
    assert int(out.rows) == 0 and out.level_ops.tolist() == [0.0, 0.0, 0.0] and int(out.ops) == 0
    with pytest.raises(ValueError, match="rows=0"):
        activation_operation_rate(LayerGeometry("linear", 3, 2), torch.ones(3), torch.zeros(2, 3), 1, rows=0, samples=1)


def test_transition_counter_does_not_sum_across_ranks_and_summary_says_none_when_empty():
    counter = TransitionCounter(qmax=1)
    assert counter.sync_on_compute is False  # every rank holds the same weights
    assert TransitionCounter(qmax=1, sync_on_compute=True).sync_on_compute is True
    prev = torch.tensor([-1, 0, 1, 1], dtype=torch.int8)
    counter.update(prev, prev.flip(0))
    assert counter.compute().tolist() == transition_counts(prev, prev.flip(0), 1).tolist()
    assert counter.counts.dtype == torch.int64
    assert transition_summary(torch.zeros(3, 3, dtype=torch.int64))._asdict() == {
        "frozen_fraction": None,
        "changed_fraction": None,
        "non_adjacent_fraction": None,
    }
    assert transition_summary(torch.eye(3, dtype=torch.int64)).non_adjacent_fraction == 0.0


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize(
    "kwargs",
    [
        dict(kernel_size=3, padding="same", dilation=2),
        dict(kernel_size=(2, 4), padding="same"),
        dict(kernel_size=3, padding="valid"),
        dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 0)),
    ],
)
def test_geometry_padding_is_what_pytorch_pads(kwargs):
    conv = nn.Conv2d(2, 4, **kwargs)
    left, right, top, bottom = conv._reversed_padding_repeated_twice  # PyTorch's own resolution, as a check
    geometry = LayerGeometry.of(conv)
    assert geometry.padding == (top, bottom, left, right)
    assert geometry.output_size(9, 7) == tuple(conv(torch.zeros(1, 2, 9, 7)).shape[-2:])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(kind="conv3d", in_channels=1, out_channels=1), r"kind='conv3d' is unknown: use 'conv2d' or 'linear'"),
        (dict(kind="conv2d", in_channels=0, out_channels=1), r"in_channels=0 is invalid: expected a positive"),
        (dict(kind="conv2d", in_channels=4, out_channels=6, groups=4), r"groups=4 must divide in_channels=4 and out"),
        (dict(kind="conv2d", in_channels=1, out_channels=1, stride=(0, 1)), r"stride=\(0, 1\) is invalid"),
        (dict(kind="conv2d", in_channels=1, out_channels=1, padding=(1, 1)), r"padding=\(1, 1\) is invalid"),
        (dict(kind="linear", in_channels=3, out_channels=2, kernel_size=(3, 3)), "a linear LayerGeometry has no"),
    ],
)
def test_geometry_is_validated(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LayerGeometry(**kwargs)


def test_meters_refuse_a_module_or_a_bad_qmax():
    with pytest.raises(TypeError, match=r"takes a LayerGeometry, got Linear; pass LayerGeometry.of\(layer\)"):
        ActivationOperationRate(nn.Linear(2, 2), 1)
    with pytest.raises(ValueError, match=r"qmax=-1 is invalid"):
        TransitionCounter(qmax=-1)
    with pytest.raises(TypeError, match="supports nn.Conv2d and nn.Linear, got ReLU"):
        LayerGeometry.of(nn.ReLU())
