"""The energy-aware callbacks in real Trainer runs: alone and beside the three QUEST callbacks, on QuestModule and on
a user's own LightningModule; the training-cost counts against the AOR meter's, the loss with the read penalty by
hand, unchanged training when only counting, and the errors."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from quest_lightning.energy.aware import EnergyAware, EnergyAwareKnobs
from quest_lightning.lightning.callbacks import AORMeter, DeviceEnergyCallback, WeightTransitionMonitor
from quest_lightning.lightning.callbacks.energy_aware import EnergyAwareTraining
from quest_lightning.lightning.callbacks.training_ops import TrainingCostMeter
from quest_lightning.lightning.module import QuestModule
from quest_lightning.metrics.functional import transition_counts
from quest_lightning.nn import QuantConv2d, QuantIFNode, QuantLinear, SpikingVGG, quantized_layers

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest's: tiny models run faster on one thread


def loaders(train=256, val=100, batch=32):
    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(d.target)
    train_set, val_set = TensorDataset(x[:train], y[:train]), TensorDataset(x[-val:], y[-val:])
    return DataLoader(train_set, batch_size=batch), DataLoader(val_set, batch_size=val)


def quest_module(seed=0, **kw):
    torch.manual_seed(seed)
    net = SpikingVGG([8, "P", 16, "P"], [32], in_channels=1, image_size=8, num_classes=10, **kw)
    return QuestModule(net, timesteps=3, lr=3e-3)


def trainer(callbacks, tmp_path, **kw):
    base = dict(
        max_epochs=1,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        logger=False,
        default_root_dir=tmp_path,
        callbacks=callbacks,
    )
    return pl.Trainer(**{**base, **kw})


class CodeLog(pl.Callback):
    """The codes each quantized layer's forward used, batch by batch (what the device would hold)."""

    def __init__(self):
        self.codes = []

    def _keep(self, pl_module):
        self.codes.append({n: layer.codes.clone() for n, layer in quantized_layers(pl_module)})

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._keep(pl_module)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self._keep(pl_module)  # the codes after the last optimizer step


def test_beside_the_three_callbacks_the_monitor_counts_the_codes_the_forward_used(tmp_path):
    """With hysteresis on, the writes the monitor counts are exactly the changes of the codes the forward passes
    used, step to step; the run writes its summary and the record says which knobs were on."""
    train, val = loaders()
    aware = EnergyAwareTraining(write_margin=0.3, read_weight=0.5, device="skmtj7")
    monitor, log, cost = WeightTransitionMonitor(stages="all"), CodeLog(), TrainingCostMeter()
    module = quest_module()
    trainer([monitor, AORMeter(), DeviceEnergyCallback(), aware, cost, log], tmp_path).fit(module, train, val)
    ((stage, counts),) = monitor.transition_counts().items()
    assert len(log.codes) == len(train) + 1
    for name, counted in counts.items():
        by_hand = sum(transition_counts(a[name], b[name], 1) for a, b in zip(log.codes, log.codes[1:], strict=False))
        assert torch.equal(counted, by_hand), name
        assert int(counted.sum() - counted.diagonal().sum()) > 0
    record = aware.record()
    assert record["energy_aware"] and record["write_margin"] == 0.3 and record["read_weight"] == 0.5
    assert record["device"] == "skmtj7" and record["pattern"] and len(record["write_margins"]) == 3
    assert cost.latest()["layers"] and cost.latest()["energy"]["total_j"] > 0
    assert any(p.name == "quest_summary.json" for p in tmp_path.rglob("*"))
    # after fit the model keeps the codes it was trained to hold, and the loss is the module's own again
    assert all(layer.hysteresis is not None for _, layer in quantized_layers(module))
    assert "training_step" not in module.__dict__


def test_training_costs_agree_with_the_aor_meter(tmp_path):
    """The forward counts of the training-step meter are the AOR meter's N(v) on the same training batches."""
    train, _ = loaders(train=128)
    meter, cost = AORMeter(on=("train",)), TrainingCostMeter()
    trainer([meter, cost], tmp_path).fit(quest_module(), train)
    activity = {r.layer: r for r in meter.latest("train").layers}
    record = cost.latest()
    assert record["delta_rule"] == "exact zeros of delta"
    for layer in record["layers"]:
        if layer["analog_input"]:
            continue  # the AOR meter charges every MAC of the analog-input layer; this meter its non-zero operands
        expected = list(activity[layer["layer"]].level_ops_per_sample)
        if layer["quantized"]:
            assert layer["forward_levels"] == pytest.approx(expected, rel=1e-12)
        else:  # the meter takes a full-precision layer's signs after the optimizer step; the non-zero total agrees
            assert sum(layer["forward_levels"]) - layer["forward_levels"][1] == pytest.approx(expected[0] + expected[2])
        assert layer["forward_total"] == pytest.approx(layer["forward_levels"][0] + layer["forward_levels"][2])
        assert layer["samples"] == 128
        assert 0 < sum(layer["delta_density"]) / len(layer["delta_density"]) <= 1
    first = record["layers"][0]
    assert first["analog_input"] and first["backward_total"] == 0  # autograd computes no gradient for the image
    assert first["delta_point"] == "layer output"


def test_counting_alone_changes_nothing(tmp_path):
    """The training-step meter and an energy-aware callback with its knobs off leave training bit-identical."""
    train, _ = loaders(train=96)
    plain = quest_module(seed=3, batch_norm=True)
    trainer([], tmp_path).fit(plain, train)
    counted = quest_module(seed=3, batch_norm=True)
    trainer([TrainingCostMeter(), EnergyAwareTraining()], tmp_path).fit(counted, train)
    for (name, a), (_, b) in zip(plain.state_dict().items(), counted.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


class UserNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = QuantConv2d(1, 8, 3, padding=1, enabled=False)
        self.sn1 = QuantIFNode(0.5, 0.0, "triangle", step_mode="m")
        self.qconv = QuantConv2d(8, 8, 3, stride=2, padding=1, bits=2)
        self.sn2 = QuantIFNode(0.5, 0.0, "triangle", step_mode="m").share_scale_with(self.qconv)
        self.fc = QuantLinear(8 * 4 * 4, 10, bits=2)

    def forward(self, x):
        from spikingjelly.activation_based import functional as sj_functional

        sj_functional.reset_net(self)
        return self.fc(self.sn2(self.qconv(self.sn1(self.conv(x)))).flatten(2))


class UserModule(pl.LightningModule):
    """A user's module that returns a dict and has no ``timesteps`` attribute."""

    def __init__(self):
        super().__init__()
        self.net = UserNet()
        self.ce = None

    def training_step(self, batch, batch_idx):
        x, y = batch
        self.ce = F.cross_entropy(self.net(x.unsqueeze(0).repeat(3, 1, 1, 1, 1)).mean(0), y)
        return {"loss": self.ce}

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=0.01)


class LossCheck(pl.Callback):
    def __init__(self, aware):
        self.aware, self.checked = aware, 0

    def on_before_backward(self, trainer, pl_module, loss):
        ratio = self.aware.aware.last_ratio
        assert ratio is not None and float(ratio) > 0
        expected = float(pl_module.ce.detach()) + 0.7 * float(ratio)
        assert float(loss.detach()) == pytest.approx(expected, rel=1e-6)
        self.checked += 1


def test_a_user_module_gets_the_penalty_added_to_its_loss(tmp_path):
    train, _ = loaders(train=64)
    module = UserModule()
    aware = EnergyAwareTraining(read_weight=0.7, read_weighted=False)
    check = LossCheck(aware)
    trainer([aware, check, TrainingCostMeter(timesteps=3)], tmp_path).fit(module, train)
    assert check.checked == 2
    assert "training_step" not in module.__dict__  # the wrapper is gone after fit
    with pytest.raises(ValueError, match="timesteps"):
        trainer([TrainingCostMeter()], tmp_path).fit(UserModule(), train)


class ManualModule(UserModule):
    def __init__(self):
        super().__init__()
        self.automatic_optimization = False


def test_errors(tmp_path):
    train, _ = loaders(train=32)
    with pytest.raises(ValueError, match="manually"):
        trainer([EnergyAwareTraining(read_weight=1.0)], tmp_path).fit(ManualModule(), train)
    module = quest_module()
    module.energy_aware = EnergyAware(module.model, EnergyAwareKnobs(write_margin=0.2, write_weighted=False))
    with pytest.raises(ValueError, match="not both"):
        trainer([EnergyAwareTraining(write_margin=0.2)], tmp_path).fit(module, train)
    with pytest.raises(ValueError, match="write_margin"):
        EnergyAwareTraining(write_margin=-0.5)
    with pytest.raises(ValueError, match="every_n_steps"):
        TrainingCostMeter(every_n_steps=0)
    cb = EnergyAwareTraining(write_margin=0.2)
    with pytest.raises(ValueError, match="same knobs"):
        cb.load_state_dict(EnergyAwareTraining(write_margin=0.3).state_dict())
    cb.load_state_dict(EnergyAwareTraining(write_margin=0.2).state_dict())


class RatioLog(pl.Callback):
    def __init__(self, aware):
        self.aware, self.ratios = aware, []

    def on_before_backward(self, trainer, pl_module, loss):
        self.ratios.append(self.aware.aware.last_ratio)


@pytest.mark.filterwarnings("ignore:.*does not have many workers")
def test_the_read_penalty_leaves_padded_samples_out(tmp_path):
    """Rank 1's shard of 9 samples over 2 ranks (positions 1, 3, 5, 7 and a repeat of sample 0), run in one
    process: the penalty's read ratio is that of the 4 real samples through the same network."""
    from quest_lightning.lightning.data import DeviceBatchLoader

    d = load_digits()
    images, labels = torch.tensor(d.images[:9], dtype=torch.float32).unsqueeze(1) / 16.0, torch.tensor(d.target[:9])
    shard = DeviceBatchLoader(images, labels, batch_size=5, rank=1, world_size=2)
    assert shard.padded_in_batch(0) == 1
    torch.manual_seed(0)
    module = UserModule()
    torch.manual_seed(0)
    net = UserNet()
    aware = EnergyAwareTraining(read_weight=0.7, read_weighted=False)
    log = RatioLog(aware)
    trainer([aware, log], tmp_path, max_steps=1).fit(module, shard)
    reference = EnergyAware(net, EnergyAwareKnobs(read_weight=0.7, read_weighted=False)).attach()
    net(images[[1, 3, 5, 7]].unsqueeze(0).repeat(3, 1, 1, 1, 1))
    reference.penalty()
    real = reference.last_ratio
    torch.testing.assert_close(log.ratios[0], real)
    net(images[[1, 3, 5, 7, 0]].unsqueeze(0).repeat(3, 1, 1, 1, 1))
    reference.penalty()
    assert not torch.allclose(reference.last_ratio, real)  # the repeat would have changed the ratio
