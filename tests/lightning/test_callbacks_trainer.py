"""The three callbacks in real Trainer runs: logged keys, the JSON summary, the energy figures by hand, a user's own
LightningModule, callback order, mid-epoch validation and a callback reused across runs."""

import csv
import json
import math
import os

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import CSVLogger
from sklearn.datasets import load_digits
from spikingjelly.activation_based import functional as sj_functional
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from quest_lightning.devices import get_device, pattern_energies
from quest_lightning.energy import ann_energy, quest_energy
from quest_lightning.lightning.callbacks import SUMMARY_FILE, AORMeter, DeviceEnergyCallback, WeightTransitionMonitor
from quest_lightning.lightning.module import QuestModule
from quest_lightning.nn import QuantConv2d, QuantIFNode, QuantLinear, SpikingVGG
from quest_lightning.summary import SCHEMA, read_summary

STATES = (0, 3, 6)  # QUEST's six 2-bit patterns
STAGES = [("early", 1, 3), ("late", 5, 8)]
E_MAC, E_AC = 4.6e-12, 0.9e-12


def digits(train=512, val=200):
    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0  # 8x8 in [0, 1]
    y = torch.tensor(d.target)
    return TensorDataset(x[:train], y[:train]), TensorDataset(x[-val:], y[-val:])


def small_vgg():
    return SpikingVGG([8, "P", 16, "P"], [32], in_channels=1, image_size=8, num_classes=10)


def trainer_kwargs(**kw):
    base = dict(
        max_epochs=2,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
    )
    base.update(kw)
    return base


def read_csv(path):
    """``{key: [(step, value), ...]}`` for every non-empty cell of Lightning's metrics.csv."""
    out = {}
    with open(path) as f:
        for row in csv.DictReader(f):
            for key, value in row.items():
                if value not in ("", None) and key != "step":
                    out.setdefault(key, []).append((int(row["step"]), float(value)))
    return out


def values(logged, key):
    return [v for _, v in logged[key]]


def hand_write_energy(result, write_j, samples):
    """sum over layers of sum_{i != j} C[i, j] E_w^p[i, j] / samples, for every pattern p, in loops; ``samples`` is
    given by the caller, counted from the data layout."""
    out = []
    for p in range(write_j.shape[0]):
        total = 0.0
        for info in result.layers.values():
            for i, row in enumerate(info.counts):
                for j, c in enumerate(row):
                    if i != j:
                        total += c * float(write_j[p, i, j])
        out.append(total / samples)
    return out


def hand_read_energy(record, read_j, samples):
    """sum over inner quantized layers of sum_{v != 0} N(v) E_r^p[v] / samples, for every pattern p."""
    out = []
    for p in range(read_j.shape[0]):
        total = 0.0
        for layer in record.layers:
            if not layer.quantized or layer.input_layer:
                continue
            q = (len(layer.level_ops) - 1) // 2
            total += sum(n * float(read_j[p, v]) for v, n in enumerate(layer.level_ops) if v != q)
        out.append(total / samples)
    return out


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        pl.seed_everything(0, verbose=False)
        train, val = digits()
        module = QuestModule(small_vgg(), timesteps=3, lr=3e-3)
        monitor = WeightTransitionMonitor(stages=STAGES)
        meter = AORMeter()
        energy = DeviceEnergyCallback("skmtj7", states=STATES)
        logger = CSVLogger(str(tmp_path_factory.mktemp("digits")), name="run")
        trainer = pl.Trainer(**trainer_kwargs(callbacks=[monitor, meter, energy], logger=logger))
        trainer.fit(module, DataLoader(train, batch_size=64, shuffle=True), DataLoader(val, batch_size=100))
    finally:
        torch.set_num_threads(threads)
    return dict(trainer=trainer, module=module, monitor=monitor, meter=meter, energy=energy, logger=logger)


def test_digits_run_logs_every_key_and_a_consistent_summary(digits_run):
    trainer, meter, monitor, logger = (
        digits_run["trainer"],
        digits_run["meter"],
        digits_run["monitor"],
        digits_run["logger"],
    )
    logged = read_csv(os.path.join(logger.log_dir, "metrics.csv"))
    path = os.path.join(logger.log_dir, SUMMARY_FILE)
    assert digits_run["energy"].summary_path == path
    with open(path) as f:
        raw = json.load(f)
    summary = read_summary(path)
    device = summary.primary

    layers = ["model.features.0.layer", "model.features.1.layer", "model.classifier.0.layer", "model.readout"]
    quantized = ["model.features.1.layer", "model.classifier.0.layer"]
    neurons = ["model.features.0.neuron", "model.features.1.neuron", "model.classifier.0.neuron"]
    expected = {f"aor/{s}/{n}" for s in ("train", "val") for n in layers}
    expected |= {f"spike_rate/{s}/{n}" for s in ("train", "val") for n in neurons}
    expected |= {f"sparsity/{n}" for n in quantized} | {"aor/train/mean", "sparsity/mean", "spike_rate/val/mean"}
    expected |= {
        f"transitions/{s}/{n}/{k}"
        for s in ("early", "late")
        for n in quantized
        for k in ("frozen_fraction", "changed_fraction", "non_adjacent_fraction")
    }
    expected |= {f"energy/write/{s}/{k}" for s in ("early", "late") for k in ["total", "best_pattern", *quantized]}
    expected |= {f"energy/read/{s}/total" for s in ("train", "val")} | {f"energy/read/val/{n}" for n in quantized}
    expected |= {"energy/ann_over_quest", "energy/diet_over_quest", "energy/val/ann_over_quest"}
    assert expected <= set(logged), sorted(expected - set(logged))

    # --- the summary's layout (summary-v2 keeps the v1 keys of the first device at the top level)
    assert raw["format"] == SCHEMA == "quest-lightning/summary-v2"
    assert summary.bits == 2 and device.name == raw["device"]["name"] == "skmtj7" and len(device.patterns) == 6
    assert raw["conventions"]["first_layer"] == device.first_layer == "mac"
    assert set(raw["energy"]) == {"write", "read", "compute"}
    assert set(summary.transitions) == {"early", "late"} and set(device.write) == {"early", "late"}
    assert [len(summary.activity[s]) for s in ("train", "val")] == [2, 2]  # one record per epoch
    assert [c.epoch for c in summary.curves] == [0, 1] and not summary.flags

    # --- the same numbers in the CSV and in the JSON
    for stage in ("train", "val"):
        for name in layers:
            assert values(logged, f"aor/{stage}/{name}") == pytest.approx(
                [next(r.aor for r in rec.layers if r.layer == name) for rec in summary.activity[stage]]
            )
        for name in neurons:
            assert values(logged, f"spike_rate/{stage}/{name}") == pytest.approx(
                [next(r.rate for r in rec.neurons if r.neuron == name) for rec in summary.activity[stage]]
            )
    for stage in ("early", "late"):
        for name in quantized:
            key = f"transitions/{stage}/{name}/frozen_fraction"
            assert values(logged, key) == pytest.approx([summary.transitions[stage].layers[name].frozen_fraction])
        write = device.write[stage]
        assert values(logged, f"energy/write/{stage}/total") == pytest.approx(
            [write.report.total.per_pattern_j[write.pattern_index]]
        )
    reads = device.read["val"]
    assert values(logged, "energy/read/val/total") == pytest.approx([e.total_j for e in reads])
    # the headline ratio is the val figure, once per epoch (not the train one at the same step)
    assert values(logged, "energy/ann_over_quest") == pytest.approx([e.compute.ann_over_quest for e in reads])
    assert values(logged, "energy/train/ann_over_quest") == pytest.approx(
        [e.compute.ann_over_quest for e in device.read["train"]]
    )
    assert device.compute["val"].ann_over_quest == pytest.approx(reads[-1].compute.ann_over_quest)
    # the in-memory state agrees with the file
    assert meter.latest("val").layers[1].aor == pytest.approx(summary.activity["val"][-1].layers[1].aor)
    assert monitor.results["late"].samples == summary.transitions["late"].samples == 4 * 64
    assert trainer.global_step == 16


def test_digits_run_measures_sensible_quantities(digits_run):
    meter = digits_run["meter"]
    for stage in ("train", "val"):
        record = meter.latest(stage)
        assert record.timesteps == 3
        for layer in record.layers:
            assert 0 <= layer.aor <= layer.synaptic_rate <= 1 + 1e-12
            if layer.quantized:
                assert 0 < layer.sparsity < 1
        for neuron in record.neurons:
            assert 0 < neuron.rate <= 3 and neuron.rate_per_step == pytest.approx(neuron.rate / 3)
    train_samples = meter.latest("train").layers[0].samples
    assert train_samples == 512  # every training sample of the epoch was counted
    assert meter.latest("val").layers[0].samples == 200


def test_energy_totals_equal_a_hand_computation(digits_run):
    energy, monitor, meter, logger = (
        digits_run["energy"],
        digits_run["monitor"],
        digits_run["meter"],
        digits_run["logger"],
    )
    logged = read_csv(os.path.join(logger.log_dir, "metrics.csv"))
    pe = pattern_energies(get_device("skmtj7"), 2, STATES)

    for stage, batches in (("early", 3), ("late", 4)):  # batches 1-3 and 5-8 of 64 samples each
        result = monitor.results[stage]
        assert result.steps == batches
        by_hand = hand_write_energy(result, pe.write_j, samples=batches * 64)
        assert max(by_hand) > 0
        report = energy.summary.write[stage].report.total
        assert report.per_pattern_j == pytest.approx(by_hand, rel=1e-12)
        best = min(range(len(by_hand)), key=lambda p: (by_hand[p], p))
        assert values(logged, f"energy/write/{stage}/total") == pytest.approx([by_hand[best]], rel=1e-12)
        assert values(logged, f"energy/write/{stage}/best_pattern") == [best]

    record = meter.latest("val")
    by_hand = hand_read_energy(record, pe.read_j, samples=200)  # the 200 validation samples
    best = min(range(len(by_hand)), key=lambda p: (by_hand[p], p))
    assert values(logged, "energy/read/val/total")[-1] == pytest.approx(by_hand[best], rel=1e-12)
    assert energy.summary.read["val"][-1].report.total.per_pattern_j == pytest.approx(by_hand, rel=1e-12)

    # CMOS: the library's ANN/QUEST energies, and the same written out
    ops = [layer.ops for layer in record.layers]
    aor = [layer.aor for layer in record.layers]
    ratio = ann_energy(ops).total_j / quest_energy(ops, [None, *aor[1:]], timesteps=3).total_j
    ann = sum(o * E_MAC for o in ops)
    quest = ops[0] * E_MAC + sum(a * 3 * o * E_AC for a, o in zip(aor[1:], ops[1:], strict=True))
    assert ratio == pytest.approx(ann / quest, rel=1e-12)
    assert values(logged, "energy/ann_over_quest")[-1] == pytest.approx(ratio, rel=1e-12)
    rates = [layer.synaptic_rate * 3 for layer in record.layers[1:]]
    diet = ops[0] * E_MAC + sum(r * o * E_AC for r, o in zip(rates, ops[1:], strict=True))
    assert values(logged, "energy/diet_over_quest")[-1] == pytest.approx(diet / quest, rel=1e-12)


def _tiny_data(n=32):
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.rand(n, 1, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g))


@pytest.mark.parametrize("pattern", [4, (6, 0, 3)])
def test_an_explicit_pattern_selects_the_logged_figures(pattern, one_thread, tmp_path):
    pl.seed_everything(0, verbose=False)
    energy = DeviceEnergyCallback("skmtj7", pattern=pattern, states=STATES)
    monitor = WeightTransitionMonitor(stages=[("s", 1, 4)])
    logger = CSVLogger(str(tmp_path))
    trainer = pl.Trainer(**trainer_kwargs(max_epochs=1, callbacks=[energy, monitor], logger=logger))
    trainer.fit(QuestModule(small_vgg(), timesteps=2, lr=0.05), DataLoader(_tiny_data(), batch_size=8))
    pe = pattern_energies(get_device("skmtj7"), 2, STATES)
    index = pattern if isinstance(pattern, int) else pe.patterns.index_of(pattern)
    by_hand = hand_write_energy(monitor.results["s"], pe.write_j, samples=4 * 8)  # 4 full batches of 8
    assert len(set(by_hand)) > 1  # the choice matters
    logged = read_csv(os.path.join(logger.log_dir, "metrics.csv"))
    assert values(logged, "energy/write/s/total") == pytest.approx([by_hand[index]], rel=1e-12)
    assert energy.summary.write["s"].pattern == pe.patterns[index].label
    # no val epoch: the headline ratio comes from train
    assert values(logged, "energy/ann_over_quest") == pytest.approx(values(logged, "energy/train/ann_over_quest"))


# ---------------------------------------------------------------------------------------------------------------------
class UserNet(nn.Module):
    """A user's own spiking net: full-precision input conv, a quantized strided conv and a quantized readout."""

    def __init__(self):
        super().__init__()
        self.conv1 = QuantConv2d(1, 8, 3, padding=1, enabled=False)
        self.sn1 = QuantIFNode(0.5, 0.0, "triangle", step_mode="m")
        self.conv2 = QuantConv2d(8, 12, 3, stride=2, padding=1, bits=2)
        self.sn2 = QuantIFNode(0.5, 0.0, "triangle", step_mode="m").share_scale_with(self.conv2)
        self.fc = QuantLinear(12 * 4 * 4, 10, bits=2)

    def forward(self, x):  # [T, B, 1, 8, 8] -> [T, B, 10]
        sj_functional.reset_net(self)
        s1 = self.sn1(self.conv1(x))
        s2 = self.sn2(self.conv2(s1))
        return self.fc(s2.flatten(2))


class UserModule(pl.LightningModule):
    def __init__(self, timesteps=3):
        super().__init__()
        self.net = UserNet()
        self.timesteps = timesteps

    def forward(self, x):
        return self.net(x.unsqueeze(0).repeat(self.timesteps, 1, 1, 1, 1)).mean(0)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", F.cross_entropy(self(x), y))

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=0.02)


def test_a_plain_lightning_module_works_with_all_three_callbacks(one_thread, tmp_path):
    pl.seed_everything(0, verbose=False)
    train, val = digits(train=256, val=64)
    module = UserModule()
    monitor, meter, energy = WeightTransitionMonitor(stages="all"), AORMeter(), DeviceEnergyCallback("skmtj7")
    logger = CSVLogger(str(tmp_path))
    trainer = pl.Trainer(**trainer_kwargs(callbacks=[monitor, meter, energy], logger=logger))
    trainer.fit(module, DataLoader(train, batch_size=32), DataLoader(val, batch_size=32))

    assert monitor.layer_names == ["net.conv2", "net.fc"]
    assert set(monitor.results) == {"all@epoch0", "all@epoch1"}
    assert monitor.results["all@epoch1"].steps == 8
    record = meter.latest("val")
    assert [r.layer for r in record.layers] == ["net.conv1", "net.conv2", "net.fc"]
    assert [r.neuron for r in record.neurons] == ["net.sn1", "net.sn2"]
    assert set(energy.summary.write) == {"all@epoch0", "all@epoch1"} and energy.summary.read["val"]
    assert os.path.exists(os.path.join(logger.log_dir, SUMMARY_FILE))

    # the val figures again, counted another way: spikes from forward hooks, and N_eff as a convolution of the spike
    # input with the non-zero mask of the codes (every (spike, non-zero weight) pair of every output, summed)
    inputs, spikes = {}, {}
    hooks = [
        module.net.conv2.register_forward_hook(lambda m, a, out: inputs.setdefault("conv2", []).append(a[0])),
        module.net.fc.register_forward_hook(lambda m, a, out: inputs.setdefault("fc", []).append(a[0])),
        module.net.sn2.register_forward_hook(lambda m, a, out: spikes.setdefault("sn2", []).append(out)),
    ]
    module.eval()
    with torch.no_grad():
        for x, _ in DataLoader(val, batch_size=32):
            module(x)
    for h in hooks:
        h.remove()
    conv2, fc = module.net.conv2, module.net.fc
    conv_in = torch.cat(inputs["conv2"], 1).flatten(0, 1)  # [T*N, 8, 8, 8]
    mask = (conv2.current_codes() != 0).float()
    n_eff = F.conv2d(conv_in, mask, stride=2, padding=1).sum().item()
    conv_ops = 9 * 8 * 12 * 4 * 4
    fc_in = torch.cat(inputs["fc"], 1).flatten(0, 1)
    fc_eff = (fc_in @ (fc.current_codes() != 0).float().T).sum().item()
    by_name = {r.layer: r for r in record.layers}
    assert by_name["net.conv2"].ops == conv_ops
    assert by_name["net.conv2"].aor == pytest.approx(n_eff / (conv_ops * 3 * 64), rel=1e-12)
    assert by_name["net.fc"].aor == pytest.approx(fc_eff / (192 * 10 * 3 * 64), rel=1e-12)
    sn2 = torch.cat(spikes["sn2"], 1)  # [T, N, 12, 4, 4]
    rate = next(r.rate for r in record.neurons if r.neuron == "net.sn2")
    assert rate == pytest.approx(sn2.sum().item() / (12 * 4 * 4 * 64), rel=1e-12)


# ---------------------------------------------------------------------------------------------------------------------
def test_callback_order_does_not_matter(one_thread, tmp_path):
    """The energy callback listed first still prices what the monitor and the meter count (they drive the shared
    counts, it reads them), and the Trainer's callback list is left as the user gave it."""
    pl.seed_everything(0, verbose=False)
    energy, monitor, meter = DeviceEnergyCallback("skmtj7"), WeightTransitionMonitor(stages="all"), AORMeter(on="train")
    trainer = pl.Trainer(
        **trainer_kwargs(max_epochs=1, callbacks=[energy, monitor, meter], logger=False, default_root_dir=str(tmp_path))
    )
    trainer.fit(QuestModule(small_vgg(), timesteps=2, lr=0.05), DataLoader(_tiny_data(), batch_size=8))
    counts = energy.counts
    assert monitor.layer_names and counts is monitor.counts is meter.counts
    assert counts.transitions.driver is monitor and counts.activity.driver is meter and counts.pricers == [energy]
    assert monitor.results["all@epoch0"].steps == 4
    assert "all@epoch0" in energy.summary.write and energy.summary.read["train"]
    assert trainer.callbacks[:3] == [energy, monitor, meter]


def test_energy_callback_alone_runs_its_own_monitor_and_meter_once(one_thread, tmp_path):
    pl.seed_everything(0, verbose=False)
    energy = DeviceEnergyCallback()  # default device
    trainer = pl.Trainer(
        **trainer_kwargs(max_epochs=1, callbacks=[energy], logger=False, default_root_dir=str(tmp_path))
    )
    module = QuestModule(small_vgg(), timesteps=2, lr=0.05)
    data = DataLoader(_tiny_data(), batch_size=8)
    with pytest.warns(UserWarning, match=r"left out of stages='paper': stage 'batches_96-105' starts at batch 96"):
        trainer.fit(module, data, data)
    assert energy.device.name == "skmtj7"
    counts = energy.counts
    assert counts.transitions.driver is energy and counts.activity.driver is energy  # no hidden callbacks
    assert trainer.callbacks[0] is energy and not any(isinstance(c, (AORMeter, WeightTransitionMonitor))
                                                      for c in trainer.callbacks)  # fmt: skip
    assert "batches_1-10" in energy.summary.write  # the paper's first stage, cut short by the 4-batch epoch
    assert counts.transitions.results["batches_1-10"].steps == 4
    assert "cut short" in counts.transitions.results["batches_1-10"].note
    trainer.validate(module, data)  # a second setup reuses the same counts
    assert energy.counts is counts and counts.activity.driver is energy
    assert len(counts.activity.history["val"]) == 2 and len(energy.summary.read["val"]) == 2
    summary = read_summary(os.path.join(str(tmp_path), SUMMARY_FILE))  # the stand-alone validation updated the file
    assert len(summary.primary.read["val"]) == 2
    # the stages the 4-batch epoch cannot reach, and the neurons of this tiny network that never fired
    dead = [n.neuron for n in counts.activity.history["val"][-1].neurons if n.spikes == 0]
    assert dead and {f.code for f in summary.flags} == {"stage_left_out", "silent_neurons"}


def test_mid_epoch_validation_does_not_stop_the_training_count(one_thread, tmp_path):
    pl.seed_everything(0, verbose=False)
    meter = AORMeter()
    trainer = pl.Trainer(
        **trainer_kwargs(
            max_epochs=1, callbacks=[meter], logger=False, val_check_interval=0.5, default_root_dir=str(tmp_path)
        )
    )
    data = DataLoader(_tiny_data(32), batch_size=4)
    trainer.fit(QuestModule(small_vgg(), timesteps=2, lr=0.05), data, DataLoader(_tiny_data(8), batch_size=4))
    assert len(meter.history["val"]) == 2
    record = meter.latest("train")
    assert record.layers[0].samples == 32  # batches after the mid-epoch validation are counted too
    assert record.timesteps == 2
    assert all(not math.isnan(r.aor) for r in record.layers)
