"""AORMeter's first-layer convention: analog input (every MAC with a non-zero weight) or spike-coded input."""

import lightning.pytorch as pl
import pytest
import torch
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader, TensorDataset

from quest_lightning.lightning.callbacks import AORMeter
from quest_lightning.lightning.module import QuestModule
from quest_lightning.nn import SpikingVGG


@pytest.mark.parametrize("analog", [True, False])
def test_first_layer_convention(analog, tmp_path):
    torch.manual_seed(0)
    d = load_digits()
    x = torch.tensor(d.images[:64], dtype=torch.float32).unsqueeze(1) / 16
    y = torch.tensor(d.target[:64])
    net = SpikingVGG([4, "P"], [8], in_channels=1, image_size=8, num_classes=10)
    module = QuestModule(net, timesteps=4, encoder="rate")
    meter = AORMeter(on=("val",), first_layer_analog=analog)
    trainer = pl.Trainer(
        max_epochs=1,
        limit_train_batches=1,
        callbacks=[meter],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(module, DataLoader(TensorDataset(x, y), batch_size=32), DataLoader(TensorDataset(x, y), batch_size=64))
    first = meter.latest("val")["layers"][0]
    assert first["input_layer"] is analog
    if analog:  # every MAC meets a non-zero full-precision weight, except those on the zero padding
        assert first["aor"] > 0.7
    else:  # rate-coded digits: the spike density of the input (mean intensity about 0.3)
        density = float(x.mean())
        assert abs(first["aor"] - density) < 0.1


def test_train_sampling_counts_only_the_sampled_batches(tmp_path):
    """train_every_n_batches=2 counts batches 0, 2, 4: the samples seen by the meter say so."""
    d = load_digits()
    x = torch.tensor(d.images[:96], dtype=torch.float32).unsqueeze(1) / 16
    y = torch.tensor(d.target[:96])
    layers = {}
    for n in (1, 2):
        torch.manual_seed(0)
        net = SpikingVGG([4, "P"], [8], in_channels=1, image_size=8, num_classes=10)
        meter = AORMeter(on=("train",), train_every_n_batches=n)
        trainer = pl.Trainer(
            max_epochs=1,
            callbacks=[meter],
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            default_root_dir=tmp_path,
        )
        trainer.fit(QuestModule(net, timesteps=2), DataLoader(TensorDataset(x, y), batch_size=16))  # 6 batches
        layers[n] = meter.latest("train")["layers"]
    assert layers[1][1]["samples"] == 96 and layers[2][1]["samples"] == 48
    assert layers[2][1]["ops"] == layers[1][1]["ops"]
    with pytest.raises(ValueError, match="train_every_n_batches"):
        AORMeter(train_every_n_batches=0)
