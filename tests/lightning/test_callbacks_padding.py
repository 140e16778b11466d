"""Padded samples (DDP pads each rank's share to the same length by repeating samples) are left out of the counts when
the loader says how many it padded (``loader.padding``), and flagged when it cannot say."""

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, Subset, TensorDataset

from quest_lightning.lightning.callbacks import AORMeter, WeightTransitionMonitor
from quest_lightning.lightning.callbacks.counts import RunCounts
from quest_lightning.lightning.callbacks.samples import LayerTaps, padding_note
from quest_lightning.lightning.module import QuestModule
from quest_lightning.nn import QuantConv2d, QuantLinear, SpikingVGG

N, BATCH, PAD = 30, 8, 2  # batches of 8, 8, 8 and 6 real samples + 2 padded ones


class Padded:
    """A loader whose epoch ends with ``padding`` repeated samples appended to its last batch (what a
    ``DistributedSampler`` does to a rank's share), and says so, the contract the callbacks read."""

    def __init__(self, dataset, batch_size, padding):
        self.loader = DataLoader(Subset(dataset, list(range(len(dataset))) + list(range(padding))), batch_size)
        self.padding = padding

    def __iter__(self):
        return iter(self.loader)

    def __len__(self):
        return len(self.loader)


def _data():
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.rand(N, 1, 8, 8, generator=g), torch.randint(0, 10, (N,), generator=g))


class Recount(pl.Callback):
    """From forward hooks: the spikes conv2 met and the codes it ran with, per training batch, and every neuron's
    spikes, keeping only the real samples (the last batch's last ``PAD`` are padded)."""

    def setup(self, trainer, pl_module, stage):
        self.level_ops, self.spikes = torch.zeros(3, dtype=torch.float64), {}
        layer = pl_module.model.features[1].layer
        layer.register_forward_hook(lambda m, a, out: self._ops(trainer, m, a[0]))
        for name, m in pl_module.named_modules():
            if name.endswith("neuron"):  # the blocks call their (multi-step) neuron modules once on [T, B, ...]
                m.register_forward_hook(lambda mod, a, out, _name=name: self._spikes(trainer, _name, out))

    def _real(self, trainer, x):  # [T, B, ...]
        last = trainer.fit_loop.epoch_loop.batch_idx + 1 == trainer.num_training_batches
        return x[:, : x.shape[1] - PAD] if last else x

    def _ops(self, trainer, layer, x):
        if trainer.training:
            x = self._real(trainer, x.detach()).flatten(0, 1).double()
            for v in range(3):
                mask = (layer.codes == v - 1).double()
                self.level_ops[v] += F.conv2d(x, mask, padding=1).sum()

    def _spikes(self, trainer, name, out):
        if trainer.training:
            self.spikes[name] = self.spikes.get(name, 0) + int(self._real(trainer, out.detach()).sum())


def _fit(train, val=None, **meter):
    pl.seed_everything(0, verbose=False)
    net = SpikingVGG([4, "P", 8, "P"], [16], in_channels=1, image_size=8, num_classes=10)
    monitor, meter, recount = WeightTransitionMonitor(stages="all", trajectories=0), AORMeter(**meter), Recount()
    trainer = pl.Trainer(
        max_epochs=1,
        callbacks=[monitor, meter, recount],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(QuestModule(net, timesteps=2, lr=0.1), train, val)
    return monitor, meter, recount


def test_padded_training_samples_are_left_out_of_every_count(one_thread):
    monitor, meter, recount = _fit(Padded(_data(), BATCH, PAD))
    record = meter.latest("train")
    assert [r.samples for r in record.layers] == [N] * len(record.layers)  # not N + PAD
    assert [r.rows for r in record.layers] == [2 * N] * len(record.layers)
    assert monitor.results["all@epoch0"].samples == N and monitor.results["all@epoch0"].steps == 4
    conv2 = record.layers[1]
    assert conv2.layer == "model.features.1.layer"
    assert conv2.level_ops == tuple(recount.level_ops.tolist())  # the padded samples' operations are not in it
    assert {n.neuron: n.spikes for n in record.neurons} == {k: float(v) for k, v in recount.spikes.items()}
    assert not meter.counts.padding_notes


def test_padded_validation_samples_change_nothing(one_thread):
    """The same weights (the same training), validation on 30 samples with or without 2 padded ones."""
    data = _data()
    _, plain, _ = _fit(DataLoader(data, BATCH), DataLoader(data, BATCH), on="val")
    _, padded, _ = _fit(DataLoader(data, BATCH), Padded(data, BATCH, PAD), on="val")
    assert padded.latest("val") == plain.latest("val")
    assert padded.latest("val").layers[0].samples == N


@pytest.mark.parametrize("batch", [3, 4], ids=["last-batch-part-padded", "last-batch-all-padded"])
def test_a_device_batch_loader_says_which_samples_are_padded(batch, one_thread):
    """Rank 1 of 2 over 9 samples holds samples 1, 3, 5, 7 and a padded repeat of sample 0, at the end of its last
    batch (``DeviceBatchLoader.padded_in_batch``): its validation counts are those of the 4 real samples."""
    from quest_lightning.lightning.data.loader import DeviceBatchLoader

    data = TensorDataset(*(t[:9] for t in _data().tensors))
    device = DeviceBatchLoader(*data.tensors, batch_size=batch, rank=1, world_size=2)
    assert device.padded_in_batch(len(device) - 1) == 1 and device.num_padded == 1
    real = DataLoader(Subset(data, [1, 3, 5, 7]), batch)
    train = DataLoader(data, 4)
    _, plain, _ = _fit(train, real, on="val")
    _, padded, _ = _fit(train, device, on="val")
    assert padded.latest("val") == plain.latest("val") and padded.latest("val").layers[0].samples == 4
    assert not padded.counts.padding_notes


def test_a_padding_larger_than_the_batch_is_refused():
    layer = nn.Sequential(QuantLinear(3, 2, bits=2))
    taps = LayerTaps(layer)
    taps.exclude = 4
    with pytest.raises(ValueError, match=r"4 padded samples at the end of this batch, but layer '0' met a batch of 3"):
        layer(torch.ones(2, 3, 3))  # [T=2, B=3, F]


class _Trainer:
    """What the padding check reads from a Trainer."""

    def __init__(self, loader, world_size):
        self.train_dataloader, self.val_dataloaders, self.world_size = loader, [loader], world_size


@pytest.mark.parametrize(
    "n, world, sampler, padding, expected",
    [
        (9, 2, "distributed", None, r"DistributedSampler pads the 9 samples to 10 over 2 ranks by repeating 1"),
        (9, 3, "distributed", None, None),  # divides evenly
        (9, 2, "distributed-drop-last", None, None),
        (9, 2, "distributed", 1, None),  # the loader says what it padded: the counts leave it out
        (9, 1, None, None, None),  # one process
    ],
)
def test_padding_the_counts_cannot_leave_out_is_flagged(n, world, sampler, padding, expected):
    dataset = TensorDataset(torch.zeros(n, 1))
    kw = {}
    if sampler:
        kw["sampler"] = DistributedSampler(dataset, num_replicas=world, rank=0, drop_last=sampler.endswith("last"))
    loader = DataLoader(dataset, batch_size=2, **kw)
    if padding is not None:
        loader.padding = padding
    note = padding_note(loader, world, "train")
    assert (note is None) if expected is None else (expected in note and "`padding`" in note)
    trainer = _Trainer(loader, world)
    counts = RunCounts(trainer)
    counts.note_padding(trainer, "val")
    flags = [f for f in counts.flags() if f.code == "padded_samples"]
    assert [f.stage for f in flags] == ([] if expected is None else ["val"])


def test_the_taps_leave_a_deep_copy_of_the_model_alone():
    import copy

    model = nn.Sequential(QuantConv2d(1, 2, 3, bits=2))
    taps = LayerTaps(model)
    twin = copy.deepcopy(model)
    twin(torch.zeros(2, 1, 5, 5))
    assert taps.layers["0"].calls == 0
    model(torch.zeros(2, 1, 5, 5))
    assert (taps.layers["0"].calls, taps.layers["0"].rows) == (1, 2)
