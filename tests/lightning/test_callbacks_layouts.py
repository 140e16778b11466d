"""Users' own networks: samples and time steps in every batch layout, the analog layer found by what it sees, and
layers that are not quest-lightning's counted or listed, never dropped.

Every expected figure comes from the data layout (samples, time steps) or from forward hooks that record what each
layer and neuron really received, recounted here with plain convolutions.
"""

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from spikingjelly.activation_based import functional as sj_functional
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from quest_lightning.lightning.callbacks import AORMeter, DeviceEnergyCallback, WeightTransitionMonitor
from quest_lightning.nn import DirectEncoder, QuantConv2d, QuantIFNode, QuantLeaky, QuantLinear

T, N, BATCH, N_VAL = 6, 64, 16, 24


def _images(n, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g)


def _rate_coded(x, seed):
    """Time-major spikes [T, B, 1, 8, 8] of one batch of images (the layout tonic produces)."""
    return (torch.rand(T, *x.shape, generator=torch.Generator().manual_seed(seed)) < x).float()


class TimeMajor(torch.utils.data.Dataset):
    """Yields pre-coded spike trains; the collate stacks them time-major, [T, B, ...]."""

    def __init__(self, n, seed):
        x, self.y = _images(n, seed)
        self.x = _rate_coded(x, seed).transpose(0, 1)  # [n, T, ...]: one train per sample

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


def time_major(items):
    return torch.stack([x for x, _ in items], 1), torch.stack([y for _, y in items])  # [T, B, ...], [B]


def batch_major(items):
    return torch.stack([x for x, _ in items], 0), torch.stack([y for _, y in items])  # [B, T, ...], [B]


class SpikingNet(nn.Module):
    """Multi-step layers on time-major spikes."""

    def __init__(self):
        super().__init__()
        self.conv1 = QuantConv2d(1, 4, 3, padding=1, bits=2)
        self.sn1 = QuantIFNode(0.5, 0.0, "triangle", step_mode="m").share_scale_with(self.conv1)
        self.fc = QuantLinear(4 * 8 * 8, 10, bits=2)

    def forward(self, x):  # [T, B, 1, 8, 8] -> [T, B, 10]
        sj_functional.reset_net(self)
        return self.fc(self.sn1(self.conv1(x)).flatten(2))


class LoopNet(nn.Module):
    """The snnTorch idiom: a loop over T, each layer and neuron called on [B, ...] at every step."""

    def __init__(self):
        super().__init__()
        self.conv1 = QuantConv2d(1, 4, 3, padding=1, bits=2)
        self.lif1 = QuantLeaky(beta=1.0, threshold=0.5).share_scale_with(self.conv1)
        self.fc = QuantLinear(4 * 8 * 8, 10, bits=2)

    def forward(self, x):  # [B, 1, 8, 8] images, rate-coded step by step
        self.lif1.reset_mem()
        mem, out = None, []
        for t in range(T):
            spikes = (torch.rand(x.shape, generator=torch.Generator().manual_seed(t)) < x).float()
            spk, mem = self.lif1(self.conv1(spikes), mem)
            out.append(self.fc(spk.flatten(1)))
        return torch.stack(out)


class User(pl.LightningModule):
    def __init__(self, net, layout):
        super().__init__()
        self.net, self.layout = net, layout

    def forward(self, x):
        if self.layout == "batch-major":
            x = x.transpose(0, 1)  # [B, T, ...] -> the time-major view the layers take
        elif self.layout == "direct":
            x = DirectEncoder(T)(x)  # [B, ...] -> [T, B, ...], a stride-0 view
        return self.net(x).mean(0)

    def training_step(self, batch, batch_idx):
        return F.cross_entropy(self(batch[0]), batch[1])

    def validation_step(self, batch, batch_idx):
        self(batch[0])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _loaders(layout):
    if layout in ("time-major", "batch-major"):
        collate = time_major if layout == "time-major" else batch_major
        train, val = TimeMajor(N, 0), TimeMajor(N_VAL, 1)
        return DataLoader(train, BATCH, collate_fn=collate), DataLoader(val, BATCH, collate_fn=collate)
    return DataLoader(TensorDataset(*_images(N, 0)), BATCH), DataLoader(TensorDataset(*_images(N_VAL, 1)), BATCH)


class SpikeCount(pl.Callback):
    """Spikes of every neuron in the last validation run, from forward hooks (independent of the recording)."""

    def setup(self, trainer, pl_module, stage):
        self.spikes = {}
        for name, m in pl_module.named_modules():
            if isinstance(m, (QuantIFNode, QuantLeaky)):
                m.register_forward_hook(lambda m, a, out, name=name: self._add(trainer, name, out))

    def on_validation_epoch_start(self, trainer, pl_module):
        self.spikes = {}

    def _add(self, trainer, name, out):
        if trainer.validating:
            spikes = out[0] if isinstance(out, tuple) else out
            self.spikes[name] = self.spikes.get(name, 0) + int(spikes.detach().sum())


LAYOUTS = {"time-major": SpikingNet, "batch-major": SpikingNet, "single-step loop": LoopNet, "direct": SpikingNet}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_samples_and_time_steps_come_from_what_the_layers_met(layout, one_thread):
    pl.seed_everything(0, verbose=False)
    train, val = _loaders(layout)
    first = next(iter(train))[0]
    guess = first.shape[0]  # Lightning's guess: the first dimension of the batch's first tensor
    assert guess == {"time-major": T, "batch-major": BATCH, "single-step loop": BATCH, "direct": BATCH}[layout]
    module = User(LAYOUTS[layout](), "batch-major" if layout == "batch-major" else layout)
    monitor, meter = WeightTransitionMonitor(stages="all", trajectories=0), AORMeter()
    spikes = SpikeCount()
    trainer = pl.Trainer(
        max_epochs=1,
        callbacks=[monitor, meter, spikes],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(module, train, val)
    for stage, n in (("train", N), ("val", N_VAL)):
        record = meter.latest(stage)
        assert record.timesteps == T, stage
        assert [(r.layer, r.samples, r.rows) for r in record.layers] == [
            ("net.conv1", n, T * n),
            ("net.fc", n, T * n),
        ], stage
    assert monitor.results["all@epoch0"].samples == N and monitor.results["all@epoch0"].steps == N // BATCH
    # a neuron's rate is its spikes per neuron per sample, summed over T: the spikes recounted from hooks
    neuron = meter.latest("val").neurons[0]
    assert neuron.spikes == spikes.spikes[neuron.neuron] > 0
    assert neuron.rate == pytest.approx(neuron.spikes / (4 * 8 * 8 * N_VAL), rel=1e-12)
    # the first layer saw spikes (rate coded) or pixels (direct coding): counted as what it saw
    kind = "analog" if layout == "direct" else "spikes"
    assert [(r.input_kind, r.input_kind_source) for r in meter.latest("train").layers] == [
        (kind, "recorded"),
        ("spikes", "recorded"),
    ]


def test_a_time_major_module_reports_64_samples_and_6_time_steps(one_thread):
    """The issue's case, [T=6, B=16, ...] in 4 batches: 64 samples and 6 time steps, not 24 and 16."""
    pl.seed_everything(0, verbose=False)
    train, _ = _loaders("time-major")
    energy = DeviceEnergyCallback("skmtj7", states=(0, 3, 6), stages="all")
    trainer = pl.Trainer(
        max_epochs=1,
        callbacks=[energy],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(User(SpikingNet(), "time-major"), train)
    record = energy.counts.activity.history["train"][-1]
    assert (record.layers[0].samples, record.timesteps) == (64, 6)
    write, read = energy.summary.write["all@epoch0"], energy.summary.read["train"][-1]
    assert write.samples == read.samples == 64 and write.steps == 4


# ---------------------------------------------------------------------------------------------------------------------
class MixedNet(nn.Module):
    """A user's mix: a plain nn.Conv2d on the pixels (computed once, direct coding), a quantized conv on the spikes,
    a plain nn.Linear readout, a layer kind the count does not model and a layer that never runs."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1, bias=False)
        self.sn1 = QuantIFNode(0.5, 0.0, "triangle", step_mode="m")
        self.conv2 = QuantConv2d(4, 8, 3, stride=2, padding=1, bits=2)
        self.sn2 = QuantIFNode(0.5, 0.0, "triangle", step_mode="m").share_scale_with(self.conv2)
        self.fc = nn.Linear(8 * 4 * 4, 10)
        self.lift = nn.Conv3d(1, 1, 1)  # not modelled by the operation count
        self.spare = nn.Linear(3, 3)  # never called

    def forward(self, x):  # [B, 1, 8, 8]
        sj_functional.reset_net(self)
        h = self.conv1(x)  # once per sample
        s1 = self.sn1(h.unsqueeze(0).expand(T, *h.shape))
        return self.fc(self.sn2(self.conv2(s1)).flatten(2)).mean(0)


class MixedModule(User):
    def forward(self, x):
        return self.net(x)


class Inputs(pl.Callback):
    """What conv2 received in the last validation run (forward hook)."""

    def setup(self, trainer, pl_module, stage):
        self.seen = []
        pl_module.net.conv2.register_forward_hook(lambda m, a, out: self._keep(trainer, a[0]))

    def on_validation_epoch_start(self, trainer, pl_module):
        self.seen = []

    def _keep(self, trainer, x):
        if trainer.validating:
            self.seen.append(x.detach())


def _mixed_fit(meter, module):
    inputs = Inputs()
    trainer = pl.Trainer(
        max_epochs=1,
        callbacks=[WeightTransitionMonitor(stages="all", trajectories=0), meter, inputs],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    train, val = _loaders("direct")
    trainer.fit(module, train, val)
    return inputs


def test_a_plain_analog_first_layer_is_found_and_the_first_quantized_layer_counts_its_spikes(one_thread):
    pl.seed_everything(0, verbose=False)
    module, meter = MixedModule(MixedNet(), "direct"), AORMeter()
    inputs = _mixed_fit(meter, module)
    record = meter.latest("val")
    by_name = {r.layer: r for r in record.layers}
    assert list(by_name) == ["net.conv1", "net.conv2", "net.fc"]  # the order the network calls them
    conv1, conv2, fc = by_name.values()
    assert (conv1.module, conv1.quantized, conv1.input_kind, conv1.input_layer) == ("Conv2d", False, "analog", True)
    assert (conv1.samples, conv1.timesteps) == (N_VAL, 1)  # called once per sample
    assert (conv2.module, conv2.quantized, conv2.input_kind) == ("QuantConv2d", True, "spikes")
    assert not conv2.input_layer
    assert (fc.module, fc.quantized, fc.input_kind) == ("Linear", False, "spikes")
    assert record.inner_layers == (conv2,) and record.aor_mean == conv2.aor and record.timesteps == T
    # conv2's AOR from its real spikes: every (input spike, non-zero weight) pair, by a plain convolution
    x = torch.cat(inputs.seen, 1).flatten(0, 1)  # [T * N_VAL, 4, 8, 8] of 0/1
    assert bool(((x == 0) | (x == 1)).all())
    mask = (module.net.conv2.current_codes() != 0).double()
    n_eff = F.conv2d(x.double(), mask, stride=2, padding=1).sum().item()
    assert conv2.ops == 9 * 4 * 8 * 4 * 4
    assert conv2.aor == pytest.approx(n_eff / (conv2.ops * T * N_VAL), rel=1e-12)
    # the analog layer: every MAC meeting a non-zero weight (all of them, for float weights) except on the padding
    assert 0.7 < conv1.aor <= 1
    # a layer kind the count does not model, and a layer that never ran, are listed, with a flag
    skipped = {s.layer: (s.module, s.reason) for s in record.skipped}
    assert skipped["net.lift"][0] == "Conv3d" and "not counted" in skipped["net.lift"][1]
    assert skipped["net.spare"] == ("Linear", "did not run in the counted batches")
    flags = meter.counts.flags()
    assert {f.code for f in flags} == {"layer_skipped"} and len(flags) == 2


@pytest.mark.parametrize(
    "override, first_layer_analog, expected",
    [
        ("analog", None, {"net.conv1": ("analog", "recorded"), "net.conv2": ("analog", "override")}),
        ("auto", False, {"net.conv1": ("spikes", "first_layer_analog"), "net.conv2": ("spikes", "recorded")}),
        ("auto", True, {"net.conv1": ("analog", "first_layer_analog"), "net.conv2": ("spikes", "recorded")}),
    ],
)
def test_a_layers_classification_can_be_overridden(override, first_layer_analog, expected, one_thread):
    pl.seed_everything(0, verbose=False)
    module = MixedModule(MixedNet(), "direct")
    module.net.conv2.input_kind = override
    meter = AORMeter(first_layer_analog=first_layer_analog)
    _mixed_fit(meter, module)
    layers = {r.layer: r for r in meter.latest("val").layers}
    assert {n: (layers[n].input_kind, layers[n].input_kind_source) for n in expected} == expected
    if override == "analog":  # every MAC meeting a non-zero weight is a read: a convolution of ones with the mask
        mask = (module.net.conv2.current_codes() != 0).double()
        reads = F.conv2d(torch.ones(1, 4, 8, 8, dtype=torch.float64), mask, stride=2, padding=1).sum().item()
        assert layers["net.conv2"].aor == pytest.approx(reads / layers["net.conv2"].ops, rel=1e-12)
        assert layers["net.conv2"] not in meter.latest("val").inner_layers


class Conv1dNet(nn.Module):
    """A 1-D network (audio-like [T, B, C, L] spike trains) with a QuantConv1d."""

    def __init__(self):
        super().__init__()
        from quest_lightning.nn import QuantConv1d

        self.conv = QuantConv1d(2, 4, 3, stride=2, padding=1, bits=2)
        self.sn = QuantIFNode(0.5, 0.0, "triangle", step_mode="m").share_scale_with(self.conv)
        self.fc = QuantLinear(4 * 8, 10, bits=2)

    def forward(self, x):  # [T, B, 2, 16]
        sj_functional.reset_net(self)
        return self.fc(self.sn(self.conv(x)).flatten(2)).mean(0)


def test_a_quantized_1d_convolution_is_counted_from_its_spikes(one_thread):
    pl.seed_everything(0, verbose=False)
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(N_VAL, T, 2, 16, generator=g) < 0.3).float()
    data = TensorDataset(x, torch.randint(0, 10, (N_VAL,), generator=g))
    module = MixedModule(Conv1dNet(), "time-major")
    module.forward = lambda x: module.net(x.transpose(0, 1))  # batch-major [B, T, ...] data
    meter = AORMeter(on="val")
    trainer = pl.Trainer(max_epochs=1, callbacks=[meter], logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)  # fmt: skip
    trainer.fit(module, DataLoader(data, BATCH), DataLoader(data, BATCH))
    conv = meter.latest("val").layers[0]
    assert (conv.layer, conv.samples, conv.timesteps, conv.input_kind) == ("net.conv", N_VAL, T, "spikes")
    mask = (module.net.conv.current_codes() != 0).double()
    n_eff = F.conv1d(x.flatten(0, 1).double(), mask, stride=2, padding=1).sum().item()
    assert conv.ops == 3 * 2 * 4 * 8
    assert conv.aor == pytest.approx(n_eff / (conv.ops * T * N_VAL), rel=1e-12)
