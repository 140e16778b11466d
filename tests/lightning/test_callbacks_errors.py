"""Bad configurations fail early (at construction, or at ``setup`` before any batch) with a message that says what to
change."""

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from quest_lightning.devices import ideal_device
from quest_lightning.lightning.callbacks import AORMeter, DeviceEnergyCallback, Stage, WeightTransitionMonitor
from quest_lightning.lightning.module import QuestModule
from quest_lightning.nn import QuantConv2d, QuantLinear, SpikingVGG


class Batches(pl.Callback):
    def __init__(self):
        self.seen = 0

    def on_train_batch_start(self, *args):
        self.seen += 1


def _fit(module, *callbacks):
    counter = Batches()
    trainer = pl.Trainer(
        max_epochs=1,
        callbacks=[*callbacks, counter],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.rand(8, 1, 8, 8, generator=g), torch.randint(0, 10, (8,), generator=g))
    try:
        trainer.fit(module, DataLoader(data, batch_size=4))
    finally:
        assert counter.seen == 0, "the error must come before the first batch"


def _vgg_module(bits=2):
    net = SpikingVGG([4, "P", 8, "P"], [16], in_channels=1, image_size=8, num_classes=10, bits=bits)
    return QuestModule(net, timesteps=2)


# --- DeviceEnergyCallback ---------------------------------------------------------------------------------------------
def test_unknown_pattern_name():
    with pytest.raises(ValueError, match=r"pattern='worst' is unknown: use 'best', an index, or a mapping"):
        DeviceEnergyCallback("skmtj7", pattern="worst")


@pytest.mark.parametrize("index", [6, -1, 1000])
def test_pattern_index_out_of_range(index):
    energy = DeviceEnergyCallback("skmtj7", pattern=index, states=(0, 3, 6))
    with pytest.raises(
        ValueError, match=rf"pattern={index} is out of range: 'skmtj7' with bits=2 has 6 patterns \(0..5\)"
    ):
        _fit(_vgg_module(), energy)


@pytest.mark.parametrize(
    "mapping, message",
    [
        (
            (0, 1, 2),
            r"mapping=\(0, 1, 2\) is not a pattern of this set: it must use 3 distinct states from \(0, 3, 6\)",
        ),
        ((0, 0, 3), r"mapping=\(0, 0, 3\) is not a pattern of this set"),
        ((0, 3), r"mapping=\(0, 3\) has 2 states but a 2-bit grid has 3 levels"),
    ],
)
def test_pattern_mapping_not_in_the_set(mapping, message):
    energy = DeviceEnergyCallback("skmtj7", pattern=mapping, states=(0, 3, 6))
    with pytest.raises(ValueError, match=message):
        _fit(_vgg_module(), energy)


def test_device_with_too_few_states_for_the_bits():
    three_states = ideal_device(3, name="tri")
    with pytest.raises(
        ValueError, match=r"bits=3 needs 7 weight levels .* device 'tri' has only 3 states; use bits <= 2"
    ):
        _fit(_vgg_module(bits=3), DeviceEnergyCallback(three_states))


def test_too_few_allowed_states_for_the_bits():
    with pytest.raises(ValueError, match=r"bits=2 needs 3 weight levels but only 2 states are allowed"):
        _fit(_vgg_module(), DeviceEnergyCallback("skmtj7", states=(0, 6)))


def test_unknown_device_first_layer_and_cmos():
    with pytest.raises(
        ValueError, match=r"device='nope' is neither a registered device \(.*skmtj7.*\) nor a .yaml/.yml path"
    ):
        DeviceEnergyCallback("nope")
    with pytest.raises(ValueError, match=r"first_layer='analog' is unknown: use 'mac' or 'reads'"):
        DeviceEnergyCallback("skmtj7", first_layer="analog")
    with pytest.raises(ValueError, match="unknown CMOS preset '7nm'"):
        DeviceEnergyCallback("skmtj7", cmos="7nm")


def test_mixed_bit_widths_are_refused():
    module = _vgg_module()
    module.model.classifier[0].layer.bits = 3
    with pytest.raises(ValueError, match=r"one bit width per run, but the quantized layers use bits=\[2, 3\]"):
        _fit(module, DeviceEnergyCallback("skmtj7"))


# --- WeightTransitionMonitor ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "stages, message",
    [
        ([("late", 5, 8), ("early", 1, 3)], r"stages out of order or overlapping: 'late' \(batches 5..8"),
        ([("a", 1, 5), ("b", 3, 8)], r"stages out of order or overlapping: 'a' \(batches 1..5, epoch 0\) and 'b'"),
        ([("a", 1, 5, None), ("b", 3, 8, 2)], "stages out of order or overlapping"),
        ([("a", 1, 5, 2), ("b", 1, 5, 1)], "stages out of order or overlapping"),
        ([("a", 1, 3), ("a", 5, 8)], r"stage names must be unique, got \['a', 'a'\]"),
        ([], "stages is empty"),
        ("bogus", r"stages='bogus' is unknown: use 'paper', 'all'"),
        ([("a", 0, 3)], r"stage 'a': batches 0..3 must satisfy 1 <= first <= last"),
        ([("a", 5, 3)], r"stage 'a': batches 5..3 must satisfy 1 <= first <= last"),
        ([("", 1, 3)], "Stage.name must be a non-empty string"),
    ],
)
def test_bad_stages(stages, message):
    with pytest.raises(ValueError, match=message):
        WeightTransitionMonitor(stages=stages)


def test_disjoint_stages_in_different_epochs_are_fine():
    monitor = WeightTransitionMonitor(
        stages=[("a", 1, 5, 0), Stage("b", 1, 5, 1), {"name": "c", "first": 6, "last": 9, "epoch": 1}]
    )
    assert [s.name for s in monitor.stages] == ["a", "b", "c"]


@pytest.mark.parametrize("n", [0, -3])
def test_every_n_steps_below_one(n):
    with pytest.raises(ValueError, match=rf"every_n_steps={n} must be >= 1"):
        WeightTransitionMonitor(every_n_steps=n)


def test_negative_trajectories():
    with pytest.raises(ValueError, match=r"trajectories=-1 must be >= 0"):
        WeightTransitionMonitor(trajectories=-1)


def test_resuming_with_other_stages_is_refused():
    saved = WeightTransitionMonitor(stages=[("a", 1, 3)]).state_dict()
    with pytest.raises(ValueError, match=r"checkpoint was written with stages \['a'\] .* resume with the same stages"):
        WeightTransitionMonitor(stages="paper").load_state_dict(saved)


# --- AORMeter ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("on", [("bogus",), ("train", "test"), (), "bogus"])
def test_aor_meter_unknown_stage(on):
    with pytest.raises(ValueError, match=r"AORMeter\(on=.*\): stages must be a non-empty subset of \('train', 'val'\)"):
        AORMeter(on=on)


# --- a model without quantized layers ---------------------------------------------------------------------------------
class PlainModule(pl.LightningModule):
    def __init__(self, net=None):
        super().__init__()
        self.net = net or nn.Sequential(nn.Flatten(), nn.Linear(64, 10))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.parametrize("make", [WeightTransitionMonitor, AORMeter, DeviceEnergyCallback], ids=lambda c: c.__name__)
def test_callbacks_on_an_unquantized_model_say_what_to_change(make):
    with pytest.raises(ValueError) as err:
        _fit(PlainModule(), make())
    message = str(err.value)
    assert f"{make.__name__} needs a model with quantized layers, but PlainModule has none" in message
    assert "replace nn.Conv2d/nn.Linear with quest_lightning.nn.QuantConv2d/QuantLinear" in message


def test_callbacks_on_a_model_whose_quantization_is_disabled():
    net = nn.Sequential(QuantConv2d(1, 4, 3, enabled=False), nn.Flatten(), QuantLinear(144, 10, enabled=False))
    with pytest.raises(ValueError, match=r"2 QuantConv2d/QuantLinear layer\(s\) but all have enabled=False"):
        _fit(PlainModule(net), WeightTransitionMonitor())


def test_energy_callback_refuses_leaky_neurons_on_a_device_that_cannot_leak(tmp_path):
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images[:8], dtype=torch.float32).unsqueeze(1) / 16
    y = torch.tensor(d.target[:8])
    net = SpikingVGG([4, "P"], [8], in_channels=1, image_size=8, num_classes=10, neuron="lif")
    trainer = pl.Trainer(
        max_epochs=1,
        callbacks=[DeviceEnergyCallback("skmtj7")],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    with pytest.raises(ValueError, match="cannot leak"):
        trainer.fit(QuestModule(net, timesteps=2), DataLoader(TensorDataset(x, y), batch_size=8))
