"""Every fast path is exact: it gives what the reference path gives.

* Transitions from the changed weights only (:func:`transition_changes`) against the full matrix
  (:func:`transition_counts`) and a brute force, with the levels chained from step to step; both histogram branches.
* The float32 correlation of the AOR count against the float64 one.
* Whole Trainer runs on random networks, in both neuron back-ends, fast (transitions against the next forward pass's
  codes, operations once per weight update) against the reference (codes recomputed after every step, operations per
  batch): the same transition matrices, trajectories, samples, per-level counts, rates and writes per cell, across
  stage boundaries, the last step of an epoch, gradient accumulation, ``every_n_steps`` and mid-epoch validation.
  The forward pass's codes equal the codes recomputed from the weights, in 32-bit and under bf16 autocast.
"""

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from quest_lightning.lightning.callbacks import AORMeter, WeightTransitionMonitor
from quest_lightning.lightning.callbacks.activity_counts import ActivityCounts
from quest_lightning.lightning.callbacks.transition_counts import TransitionCounts
from quest_lightning.lightning.module import QuestModule
from quest_lightning.metrics import LayerGeometry, level_counts, level_operation_counts, transition_counts
from quest_lightning.metrics.histogram import _histc, histogram
from quest_lightning.metrics.transitions import _changed_pairs, transition_changes
from quest_lightning.nn import QuantLayerMixin, SpikingVGG


def _brute(previous, current, qmax):
    levels = 2 * qmax + 1
    out = [[0] * levels for _ in range(levels)]
    for a, b in zip(previous.flatten().tolist(), current.flatten().tolist(), strict=True):
        out[a + qmax][b + qmax] += 1
    return out


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_transitions_from_the_changed_weights_equal_the_full_count(bits):
    qmax = 2 ** (bits - 1) - 1
    g = torch.Generator().manual_seed(bits)
    codes = torch.randint(-qmax, qmax + 1, (6, 5, 3, 3), generator=g, dtype=torch.int8)
    levels = None
    for step in range(4):  # a chain of steps, the levels carried from one to the next
        flip = torch.rand(codes.shape, generator=g) < 0.05 * (step + 1)
        new = torch.where(flip, torch.randint(-qmax, qmax + 1, codes.shape, generator=g, dtype=torch.int8), codes)
        fast = transition_changes(codes, new, qmax, levels)
        assert fast.counts.tolist() == transition_counts(codes, new, qmax).tolist() == _brute(codes, new, qmax)
        assert fast.levels.tolist() == level_counts(new, qmax).tolist()
        assert torch.equal(fast.changed, codes != new)
        assert fast.index.tolist() == (codes != new).flatten().nonzero().flatten().tolist()
        writes = [torch.zeros(codes.shape, dtype=torch.int32) for _ in range(2)]
        fast.add_writes(writes[0])
        fast._replace(index=None).add_writes(writes[1])  # the mask, as off the CPU
        assert torch.equal(writes[0], (codes != new).to(torch.int32)) and torch.equal(writes[1], writes[0])
        for index in (fast.index, None):  # both branches, on any device
            pairs = _changed_pairs(codes, new, codes != new, qmax, index=index).view(2 * qmax + 1, -1)
            assert torch.equal(pairs + torch.diag(fast.counts.diagonal()), fast.counts)
        codes, levels = new, fast.levels


def test_the_histc_histogram_is_exact_past_float32s_integers():
    index = torch.cat([torch.zeros(2**24 + 3, dtype=torch.int32), torch.tensor([2, 2, 4], dtype=torch.int32)])
    assert _histc(index, 5).tolist() == histogram(index, 5).tolist() == [2**24 + 3, 0, 2, 0, 1]


@pytest.mark.parametrize(
    "layer",
    [
        torch.nn.Conv2d(4, 6, 3, padding=1),
        torch.nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2),
        torch.nn.Conv1d(3, 5, 3, padding="same", dilation=2),
    ],
    ids=["conv", "strided-groups", "conv1d"],
)
def test_the_float32_correlation_gives_the_float64_counts(layer):
    geometry = LayerGeometry.of(layer)
    shape = (layer.in_channels, 8, 8) if geometry.kind == "conv2d" else (layer.in_channels, 16)
    g = torch.Generator().manual_seed(0)
    rows = 4000  # spike counts up to 4000 per position: a float32 sum of them is exact below 2**24
    counts = torch.randint(0, rows + 1, shape, generator=g).to(torch.float64)
    codes = torch.randint(-1, 2, geometry.weight_shape, generator=g, dtype=torch.int8)
    exact = level_operation_counts(geometry, counts, codes, 1)
    fast = level_operation_counts(geometry, counts, codes, 1, max_count=rows)
    assert exact.dtype == fast.dtype == torch.float64 and torch.equal(fast, exact)
    assert exact.max() > 2**16  # sums where a half-precision correlation would round


# ---------------------------------------------------------------------------------------------------------------------
class CodesCheck(pl.Callback):
    """Before every optimizer step, the codes the forward pass computed equal the codes of the weights."""

    def __init__(self):
        self.checked = 0

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        for m in pl_module.modules():
            if isinstance(m, QuantLayerMixin) and m.enabled:
                assert torch.equal(m.codes, m.current_codes())
                self.checked += 1


STAGES = [("a", 2, 5), ("b", 7, 9, None), ("late", 11, 99, 1)]
CASES = {
    "stages": dict(),
    "accumulate": dict(accumulate_grad_batches=3),
    "every-2nd": dict(every_n_steps=2),
    "all-steps-bf16": dict(stages="all", precision="bf16-mixed"),
    "sampled-and-cut": dict(train_every_n_batches=2, max_steps=17),
}


def _fit(backend, fast, monkeypatch, case):
    kwargs = dict(CASES[case])
    monkeypatch.setattr(TransitionCounts, "fast", fast)
    monkeypatch.setattr(ActivityCounts, "fast", fast)
    pl.seed_everything(0, verbose=False)
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.rand(44, 1, 8, 8, generator=g), torch.randint(0, 10, (44,), generator=g))
    net = SpikingVGG([4, "P", 8, "P"], [16], in_channels=1, image_size=8, num_classes=10, backend=backend)
    monitor = WeightTransitionMonitor(
        stages=kwargs.pop("stages", STAGES),
        every_n_steps=kwargs.pop("every_n_steps", 1),
        trajectories=5,
        track_writes_per_cell=True,
    )
    meter, check = AORMeter(train_every_n_batches=kwargs.pop("train_every_n_batches", 1)), CodesCheck()
    trainer = pl.Trainer(
        max_epochs=2,
        callbacks=[monitor, meter, check],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        val_check_interval=0.5,
        **kwargs,
    )
    loader = DataLoader(data, batch_size=4)  # 11 batches: a partial accumulation window at the end of each epoch
    trainer.fit(QuestModule(net, timesteps=2, lr=0.5, optimizer="sgd"), loader, DataLoader(data, batch_size=8))
    assert check.checked > 0
    summary = monitor.counts.run_summary()
    return summary, {n: w.clone() for n, w in monitor.writes_per_cell.items()}


@pytest.mark.filterwarnings("ignore:.*start after max_steps")
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("backend", ["spikingjelly", "snntorch"])
def test_the_fast_paths_count_what_the_reference_paths_count(backend, case, monkeypatch):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fast, fast_writes = _fit(backend, True, monkeypatch, case)
        reference, reference_writes = _fit(backend, False, monkeypatch, case)
    finally:
        torch.set_num_threads(threads)
    assert fast.transitions and fast.activity["train"] and fast.activity["val"]
    changed = sum(
        sum(map(sum, layer.counts)) - sum(layer.counts[i][i] for i in range(len(layer.counts)))
        for stage in fast.transitions.values()
        for layer in stage.layers.values()
    )
    assert changed > 0, "the run is meant to move codes"
    assert fast.transitions == reference.transitions  # matrices, steps, samples, trajectories, fractions
    assert fast.activity == reference.activity  # per-level counts, AOR, rates, samples, kinds
    assert fast.writes == reference.writes and fast.writes is not None and fast.writes.max_writes > 0
    assert fast_writes.keys() == reference_writes.keys()
    for name, writes in fast_writes.items():
        assert torch.equal(writes, reference_writes[name]), name


def _fit_aor_alone(backend, fast, monkeypatch):
    monkeypatch.setattr(ActivityCounts, "fast", fast)
    pl.seed_everything(1, verbose=False)
    g = torch.Generator().manual_seed(1)
    data = TensorDataset(torch.rand(24, 1, 8, 8, generator=g), torch.randint(0, 10, (24,), generator=g))
    net = SpikingVGG([4, "P"], [24, 16], in_channels=1, image_size=8, num_classes=10, backend=backend)
    meter = AORMeter()
    trainer = pl.Trainer(
        max_epochs=2,
        callbacks=[meter],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(QuestModule(net, timesteps=2, lr=0.5, optimizer="sgd"), DataLoader(data, batch_size=4))
    return meter.counts.run_summary().activity, meter.counts.activity._columns


@pytest.mark.parametrize("backend", ["spikingjelly", "snntorch"])
def test_the_kept_linear_level_counts_without_the_transition_count_equal_the_reference(backend, monkeypatch):
    """Without the transition count the linear layers' per-column level counts follow the codes by their own
    comparison: the per-level operation counts equal the reference's, epoch after epoch."""
    fast, columns = _fit_aor_alone(backend, True, monkeypatch)
    reference, _ = _fit_aor_alone(backend, False, monkeypatch)
    assert len(columns) == 2 and all(c.table is not None for c in columns.values())  # both hidden linear layers
    linear = [r for r in fast["train"][-1].layers if r.layer in columns]
    assert len(linear) == 2 and all(sum(r.level_ops) > 0 for r in linear)
    assert fast == reference
