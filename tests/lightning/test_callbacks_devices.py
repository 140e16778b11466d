"""Several DeviceEnergyCallbacks in one Trainer: one counting pass per step, each device priced exactly as it would be
alone, logged under its own keys, and side by side in the run record."""

import csv
import os

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, TensorDataset

from quest_lightning.lightning.callbacks import SUMMARY_FILE, DeviceEnergyCallback
from quest_lightning.lightning.module import QuestModule
from quest_lightning.nn import QuantLayerMixin, SpikingVGG
from quest_lightning.summary import read_summary


class CodeCalls(pl.Callback):
    """Counts how often the codes of the quantized layers are computed from the weights (the counting work)."""

    def __init__(self):
        self.calls = 0

    def setup(self, trainer, pl_module, stage):
        for m in pl_module.modules():
            if isinstance(m, QuantLayerMixin) and m.enabled:
                original = m.current_codes

                def counted(original=original):
                    self.calls += 1
                    return original()

                m.current_codes = counted


def _fit(tmp_path, *energies):
    torch.set_num_threads(1)
    pl.seed_everything(0, verbose=False)
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.rand(30, 1, 8, 8, generator=g), torch.randint(0, 10, (30,), generator=g))
    net = SpikingVGG([4, "P", 8, "P"], [16], in_channels=1, image_size=8, num_classes=10)
    calls, logger = CodeCalls(), CSVLogger(str(tmp_path))
    trainer = pl.Trainer(
        max_epochs=2,
        callbacks=[*energies, calls],
        logger=logger,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
    )
    trainer.fit(QuestModule(net, timesteps=2, lr=0.05), DataLoader(data, batch_size=8), DataLoader(data, batch_size=16))
    with open(os.path.join(logger.log_dir, "metrics.csv")) as f:
        rows = list(csv.DictReader(f))
    logged = {k: [float(r[k]) for r in rows if r.get(k)] for k in rows[0]}
    return calls.calls, logged, logger.log_dir


def skmtj():
    return DeviceEnergyCallback("skmtj7", states=(0, 3, 6), stages="all")


def rram():
    return DeviceEnergyCallback("rram8", states=(0, 4, 7), stages="all", first_layer="reads")


def test_two_devices_are_priced_from_one_set_of_counts(tmp_path):
    a, b = skmtj(), rram()
    calls, logged, log_dir = _fit(tmp_path / "both", a, b)
    alone_a, alone_b = skmtj(), rram()
    calls_a, _, _ = _fit(tmp_path / "a", alone_a)
    _fit(tmp_path / "b", alone_b)

    # one counting pass: the counts are driven by the first callback only, and the codes computed as often as alone
    assert a.counts is b.counts and a.counts.transitions.driver is a and a.counts.activity.driver is a
    assert calls == calls_a
    assert [r.steps for r in a.counts.transitions.results.values()] == [4, 4]
    assert [rec.layers[0].samples for rec in a.counts.activity.history["train"]] == [30, 30]
    # each device is priced exactly as it is alone
    assert a.summary == alone_a.summary and b.summary == alone_b.summary
    assert a.summary.write["all@epoch0"].total_j != b.summary.write["all@epoch0"].total_j

    # the first keeps the plain keys; the second logs under its device
    assert logged["energy/write/all@epoch0/total"] == pytest.approx([a.summary.write["all@epoch0"].total_j])
    assert logged["energy@rram8/write/all@epoch0/total"] == pytest.approx([b.summary.write["all@epoch0"].total_j])
    ratios = [e.compute.ann_over_quest for e in b.summary.read["val"]]
    assert logged["energy@rram8/ann_over_quest"] == pytest.approx(ratios) and len(ratios) == 2

    # side by side in the record (the first device's summary-v1 keys stay at the top level)
    summary = read_summary(os.path.join(log_dir, SUMMARY_FILE))
    assert [d.name for d in summary.devices] == ["skmtj7", "rram8"]
    assert summary.device("rram8") == b.summary and summary.primary == a.summary
    assert [d.first_layer for d in summary.devices] == ["mac", "reads"]


def test_two_callbacks_with_the_same_settings_are_refused():
    with pytest.raises(RuntimeError, match="state_key` must be unique"):
        pl.Trainer(callbacks=[DeviceEnergyCallback("skmtj7"), DeviceEnergyCallback("skmtj7")], logger=False)
    keys = {DeviceEnergyCallback("skmtj7", pattern=p).state_key for p in ("best", 0, (0, 1, 2))}
    assert len(keys) == 3 and all("skmtj7" in k for k in keys)
