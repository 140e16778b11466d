"""The per-sample divisor is the samples actually seen: partial last batches, gradient accumulation with a partial
window, ``limit_train_batches`` and mid-epoch validation. Every expected figure is computed here by hand: the
transitions from codes an independent callback captures, priced in loops, over samples counted from the data layout.
"""

import lightning.pytorch as pl
import pytest
import torch
from callback_helpers import CodeSnapshots
from torch.utils.data import DataLoader, TensorDataset

from quest_lightning.devices import get_device, pattern_energies
from quest_lightning.lightning.callbacks import AORMeter, DeviceEnergyCallback
from quest_lightning.lightning.module import QuestModule
from quest_lightning.nn import SpikingVGG

STATES = (0, 3, 6)
PE = pattern_energies(get_device("skmtj7"), 2, STATES)


def joules_of_writes(before, after):
    """sum over layers of sum_{i != j} #(weights from level i to j) E_w^p[i, j], every pattern, in loops."""
    out = [0.0] * len(PE.patterns)
    for name in before:
        for old, new in zip(before[name].flatten().tolist(), after[name].flatten().tolist(), strict=True):
            if old != new:
                for p in range(len(out)):
                    out[p] += float(PE.write_j[p, old + 1, new + 1])
    return out


def _fit(n, batch, *, accumulate=1, limit=None, val=None, val_every=None):
    pl.seed_everything(0, verbose=False)
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.rand(n, 1, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g))
    net = SpikingVGG([4, "P", 8, "P"], [16], in_channels=1, image_size=8, num_classes=10)
    energy, meter, recorder = DeviceEnergyCallback("skmtj7", states=STATES, stages="all"), AORMeter(), CodeSnapshots()
    trainer = pl.Trainer(
        max_epochs=1,
        callbacks=[energy, meter, recorder],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        accumulate_grad_batches=accumulate,
        limit_train_batches=limit,
        val_check_interval=val_every,
    )
    val_loader = None if val is None else DataLoader(TensorDataset(data.tensors[0][:val], data.tensors[1][:val]), 4)
    trainer.fit(QuestModule(net, timesteps=2, lr=0.05), DataLoader(data, batch_size=batch), val_loader)
    return energy, meter, recorder


# (samples, batch, accumulate, limit_train_batches) -> the optimizer steps as windows of 1-based batches, and the
# samples seen, added up from the batch sizes
CASES = {
    "partial_last_batch": ((30, 8, 1, None), [(1, 1), (2, 2), (3, 3), (4, 4)], 8 + 8 + 8 + 6),
    "accumulation_with_a_partial_window": ((30, 4, 3, None), [(1, 3), (4, 6), (7, 8)], 12 + 12 + (4 + 2)),
    "limit_train_batches": ((30, 8, 1, 3), [(1, 1), (2, 2), (3, 3)], 8 + 8 + 8),
}


@pytest.mark.parametrize("case", list(CASES))
def test_write_energy_per_sample_divides_by_the_samples_seen(case, one_thread):
    (n, batch, accumulate, limit), windows, seen = CASES[case]
    energy, meter, rec = _fit(n, batch, accumulate=accumulate, limit=limit)
    joules = [0.0] * len(PE.patterns)
    for first, last in windows:  # one transition per optimizer step: before its first batch -> after its last
        joules = [
            a + b for a, b in zip(joules, joules_of_writes(rec.before[(0, first)], rec.after[(0, last)]), strict=True)
        ]
    by_hand = [j / seen for j in joules]
    write = energy.summary.write["all@epoch0"]
    assert (write.steps, write.samples) == (len(windows), seen)
    assert max(by_hand) > 0
    assert write.report.total.per_pattern_j == pytest.approx(by_hand, rel=1e-12)
    assert write.report.normalisation == {"steps": len(windows), "samples": seen}
    # the read energy of the training epoch is divided by the samples of the counted batches, the same ones
    assert meter.latest("train").layers[0].samples == seen


def test_the_divisor_of_0_1_0_would_have_been_7_percent_off(one_thread):
    """The issue's case: 4 steps × the first batch (8) = 32, or steps × (30 // 4) = 28, are not the 30 samples."""
    energy, _, _ = _fit(30, 8)
    write = energy.summary.write["all@epoch0"]
    assert write.samples == 30 and write.to_dict()["batch_size"] == 7.5  # the mean batch, reported as such


def test_mid_epoch_validation_keeps_every_divisor_exact(one_thread):
    """Validation after batches 2 and 4: each val run of 10 samples (batches 4, 4, 2) has its own read energy over
    10 samples; the training epoch still counts its 30."""
    energy, meter, _ = _fit(30, 8, val=10, val_every=2)
    val = meter.history["val"]
    assert [r.layers[0].samples for r in val] == [10, 10]
    assert meter.latest("train").layers[0].samples == 30 and energy.summary.write["all@epoch0"].samples == 30
    for record, priced in zip(val, energy.summary.read["val"], strict=True):
        inner = record.inner_layers
        by_hand = [0.0] * len(PE.patterns)
        for layer in inner:
            for v, count in enumerate(layer.level_ops):
                if v != 1:  # the zero level is not read
                    for p in range(len(by_hand)):
                        by_hand[p] += count * float(PE.read_j[p, v])
        assert priced.samples == 10
        assert priced.report.total.per_pattern_j == pytest.approx([x / 10 for x in by_hand], rel=1e-12)
