"""Counts are exact whatever the precision: a Trainer at 32-true, bf16-mixed and 16-mixed (on the CPU Lightning runs
16-mixed as bf16) against an exact int64 recount from forward hooks and an independent code capture.

The network fires densely (threshold 0.05) at B = 128, T = 4, so that input positions of the inner layers see more
than 256 spikes per batch: the range where a bf16 sum is no longer exact (its spacing is 2 above 256).
"""

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from spikingjelly.activation_based import functional as sj_functional
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from quest_lightning.lightning.callbacks import AORMeter, DeviceEnergyCallback
from quest_lightning.nn import QuantConv2d, QuantIFNode, QuantLinear

T, B, BATCHES = 4, 128, 2
MIXED = ("bf16-mixed", "16-mixed")


class DenseNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = QuantConv2d(1, 8, 3, padding=1, enabled=False)
        self.sn1 = QuantIFNode(0.05, 0.0, "triangle", step_mode="m")
        self.conv2 = QuantConv2d(8, 8, 3, padding=1, bits=2)
        self.sn2 = QuantIFNode(0.05, 0.0, "triangle", step_mode="m").share_scale_with(self.conv2)
        self.fc = QuantLinear(8 * 8 * 8, 10, bits=2)

    def forward(self, x):
        sj_functional.reset_net(self)
        return self.fc(self.sn2(self.conv2(self.sn1(self.conv1(x)))).flatten(2))


class Module(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = DenseNet()

    def training_step(self, batch, batch_idx):
        x, y = batch
        out = self.net(x.unsqueeze(0).repeat(T, 1, 1, 1, 1)).mean(0)
        return F.cross_entropy(out.float(), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.5)


class Recount(pl.Callback):
    """Exact per-level operations N(v) of conv2 and fc (int64 inputs, a float64 convolution of each level's mask),
    spikes of every neuron (int64) and the codes before and after each step, all from hooks."""

    def __init__(self):
        self.level_ops = {"net.conv2": torch.zeros(3, dtype=torch.int64), "net.fc": torch.zeros(3, dtype=torch.int64)}
        self.spikes = {"net.sn1": 0, "net.sn2": 0}
        self.dtypes = set()

    def setup(self, trainer, pl_module, stage):
        net = pl_module.net
        net.conv2.register_forward_hook(lambda m, a, out: self._ops("net.conv2", m, a[0]))
        net.fc.register_forward_hook(lambda m, a, out: self._ops("net.fc", m, a[0]))
        net.sn1.register_forward_hook(lambda m, a, out: self._spikes("net.sn1", out))
        net.sn2.register_forward_hook(lambda m, a, out: self._spikes("net.sn2", out))

    def _spikes(self, name, out):
        self.dtypes.add(out.dtype)
        self.spikes[name] += int(out.detach().to(torch.int64).sum())

    def _ops(self, name, layer, x):
        spikes = x.detach().to(torch.int64).flatten(0, 1).double()  # [T*B, ...] of 0/1
        for v in range(3):
            mask = (layer.codes == v - 1).double()
            if name == "net.conv2":
                n = F.conv2d(spikes, mask, padding=1).sum()
            else:
                n = (spikes @ mask.T).sum()
            self.level_ops[name][v] += int(n)


def _fit(precision):
    pl.seed_everything(0, verbose=False)
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.rand(B * BATCHES, 1, 8, 8, generator=g), torch.randint(0, 10, (B * BATCHES,)))
    recount, meter = Recount(), AORMeter(on=("train",))
    energy = DeviceEnergyCallback("skmtj7", states=(0, 3, 6), stages="all")
    trainer = pl.Trainer(
        max_epochs=1,
        precision=precision,
        callbacks=[recount, meter, energy],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(Module(), DataLoader(data, batch_size=B))
    return recount, meter, energy


@pytest.fixture(scope="module")
def runs():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return {p: _fit(p) for p in ("32-true", *MIXED)}
    finally:
        torch.set_num_threads(threads)


@pytest.mark.filterwarnings("ignore:You passed `Trainer\\(accelerator='cpu', precision='16-mixed'\\)`")
@pytest.mark.parametrize("precision", ["32-true", *MIXED])
def test_spikes_samples_and_transitions_are_exact(runs, precision):
    recount, meter, energy = runs[precision]
    if precision != "32-true":
        assert torch.bfloat16 in recount.dtypes  # the spikes really were bf16
    record = meter.latest("train")
    spikes = {n.neuron: n.spikes for n in record.neurons}
    assert spikes == {k: float(v) for k, v in recount.spikes.items()}
    assert max(recount.spikes.values()) > 0
    assert {r.layer: (r.samples, r.rows) for r in record.layers} == {
        n: (B * BATCHES, T * B * BATCHES) for n in ("net.conv1", "net.conv2", "net.fc")
    }
    write = energy.summary.write["all@epoch0"]
    assert (write.steps, write.samples) == (BATCHES, B * BATCHES)
    assert all(t.steps == BATCHES for t in energy.counts.transitions.results["all@epoch0"].layers.values())


@pytest.mark.filterwarnings("ignore:You passed `Trainer\\(accelerator='cpu', precision='16-mixed'\\)`")
@pytest.mark.parametrize("precision", ["32-true", *MIXED])
def test_per_level_operation_counts_are_exact(runs, precision):
    recount, meter, _ = runs[precision]
    by_name = {r.layer: r for r in meter.latest("train").layers}
    for name, exact in recount.level_ops.items():
        assert exact.max() > 256 * 8  # dense enough for bf16 to round
        assert by_name[name].level_ops == tuple(float(v) for v in exact.tolist()), name
