"""The finiteness guard keeps its promise (a NaN loss or non-finite weights stop the analysis, naming the step and the
layer, before any figure is logged or written) without reading anything on the host inside a counted step: the
fault is recorded on the device and raised at the next point where the run synchronises anyway."""

import contextlib
import math

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from host_reads import no_host_reads
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from quest_lightning.lightning.callbacks import (
    SUMMARY_FILE,
    AORMeter,
    DegenerateRunError,
    DeviceEnergyCallback,
    WeightTransitionMonitor,
)
from quest_lightning.lightning.callbacks.activity_counts import ActivityCounts
from quest_lightning.lightning.callbacks.transition_counts import TransitionCounts
from quest_lightning.nn import QuantConv2d, QuantIFNode, QuantLinear

BATCH = 4


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = QuantConv2d(1, 4, 3, padding=1, enabled=False)
        self.sn1 = QuantIFNode(0.5, 0.0, "triangle", step_mode="m")
        self.conv2 = QuantConv2d(4, 4, 3, stride=2, padding=1, bits=2)
        self.sn2 = QuantIFNode(0.5, 0.0, "triangle", step_mode="m").share_scale_with(self.conv2)
        self.fc = QuantLinear(4 * 4 * 4, 10, bits=2)

    def forward(self, x):
        from spikingjelly.activation_based import functional

        functional.reset_net(self)
        return self.fc(self.sn2(self.conv2(self.sn1(self.conv1(x)))).flatten(2))


class Module(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = Net()

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self.net(x.unsqueeze(0).repeat(2, 1, 1, 1, 1)).mean(0), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)


class NaNWeightBeforeStep(pl.Callback):
    def __init__(self, step):
        self.step, self.batches = step, 0

    def on_train_batch_start(self, *args):
        self.batches += 1

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        if trainer.global_step + 1 == self.step:
            with torch.no_grad():
                pl_module.net.conv2.weight[0, 0, 0, 0] = math.nan


def _fit(tmp_path, batches, log_every, *callbacks):
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.rand(batches * BATCH, 1, 8, 8, generator=g), torch.randint(0, 10, (batches * BATCH,)))
    trainer = pl.Trainer(
        max_epochs=1,
        callbacks=list(callbacks),
        logger=False,
        default_root_dir=str(tmp_path),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=log_every,
    )
    trainer.fit(Module(), DataLoader(data, batch_size=BATCH))


@pytest.mark.parametrize(
    "batches, log_every, raised_after, seen",
    [
        (8, 3, 3, " (seen at step 3)"),  # the next logging step: step 3
        (8, 2, 2, ""),  # a logging step itself
        (3, 50, 3, " (seen at step 3)"),  # no logging step before the end of the epoch: raised there
    ],
)
def test_a_fault_is_raised_at_the_next_synchronisation_naming_its_step(tmp_path, batches, log_every, raised_after,
                                                                        seen):  # fmt: skip
    torch.manual_seed(0)
    nan = NaNWeightBeforeStep(2)
    with pytest.raises(DegenerateRunError) as err:
        _fit(tmp_path, batches, log_every, DeviceEnergyCallback("skmtj7", stages="all"), nan)
    message = str(err.value)
    assert message.startswith("step 2 (epoch 0, batch 2): layer 'net.conv2' has ")
    assert f"infinite weights{seen}. The analysis stops here" in message
    assert nan.batches == raised_after
    assert not list(tmp_path.rglob(SUMMARY_FILE))  # nothing of the degenerate run was written


def _guarded(method, stage_end):
    def run(self, trainer, *args, **kwargs):
        batch_idx = trainer.fit_loop.epoch_loop.batch_idx
        quiet = batch_idx + 1 < trainer.num_training_batches and not stage_end(trainer)
        with no_host_reads() if quiet else contextlib.nullcontext():
            return method(self, trainer, *args, **kwargs)

    return run


@pytest.mark.parametrize("track_writes", [False, True])
def test_a_counted_step_reads_nothing_on_the_host(tmp_path, monkeypatch, track_writes):
    """Every step is counted (transitions, writes per cell, activity); none but the epoch's last reads a tensor."""
    never = lambda trainer: False  # noqa: E731
    for cls, name in ((TransitionCounts, "batch_start"), (TransitionCounts, "before_optimizer_step")):
        monkeypatch.setattr(cls, name, _guarded(getattr(cls, name), never))
    for cls, name in ((TransitionCounts, "batch_end"), (ActivityCounts, "train_batch_start")):
        monkeypatch.setattr(cls, name, _guarded(getattr(cls, name), never))
    monkeypatch.setattr(ActivityCounts, "train_batch_end", _guarded(ActivityCounts.train_batch_end, never))
    torch.manual_seed(0)
    monitor = WeightTransitionMonitor(stages="all", track_writes_per_cell=track_writes)
    meter = AORMeter(on="train")
    _fit(tmp_path, 6, 50, monitor, meter)
    assert monitor.results["all@epoch0"].steps == 6 and meter.latest("train").layers[0].samples == 6 * BATCH
