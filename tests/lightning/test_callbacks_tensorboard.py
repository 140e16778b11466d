"""The callbacks log through a TensorBoard logger like any other Lightning logger."""

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from sklearn.datasets import load_digits
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.data import DataLoader, TensorDataset

from quest_lightning.lightning.callbacks import SUMMARY_FILE, AORMeter, DeviceEnergyCallback, WeightTransitionMonitor
from quest_lightning.lightning.module import QuestModule
from quest_lightning.nn import SpikingVGG


def test_tensorboard_receives_the_callback_scalars(tmp_path):
    torch.manual_seed(0)
    d = load_digits()
    x = torch.tensor(d.images[:64], dtype=torch.float32).unsqueeze(1) / 16
    y = torch.tensor(d.target[:64])
    net = SpikingVGG([4, "P"], [8], in_channels=1, image_size=8, num_classes=10)
    logger = TensorBoardLogger(tmp_path)
    trainer = pl.Trainer(
        max_epochs=1,
        logger=logger,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[WeightTransitionMonitor(stages=[("s", 1, 3)]), AORMeter(), DeviceEnergyCallback("skmtj7")],
    )
    loader = DataLoader(TensorDataset(x, y), batch_size=16)
    trainer.fit(QuestModule(net, timesteps=2), loader, loader)
    events = EventAccumulator(logger.log_dir)
    events.Reload()
    tags = set(events.Tags()["scalars"])
    for key in (
        "aor/train/model.features.0.layer",
        "spike_rate/val/mean",
        "transitions/s/model.classifier.0.layer/frozen_fraction",
        "energy/write/s/total",
        "energy/read/val/total",
        "energy/ann_over_quest",
    ):
        assert key in tags, key
    assert (tmp_path / "lightning_logs" / "version_0" / SUMMARY_FILE).is_file()
