"""The callbacks' W&B extras (tables, transition histograms, trajectories) in an offline run: nothing leaves the
machine, and the run directory holds what would be uploaded."""

import glob
import json
import os
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from quest_lightning.lightning.callbacks import SUMMARY_FILE, AORMeter, DeviceEnergyCallback, WeightTransitionMonitor
from quest_lightning.lightning.module import QuestModule
from quest_lightning.nn import SpikingVGG

wandb = pytest.importorskip("wandb")
from lightning.pytorch.loggers import WandbLogger  # noqa: E402


def _json(path):
    with open(path) as f:
        return json.load(f)


@pytest.fixture
def offline_wandb(tmp_path, monkeypatch):
    """Offline W&B with every directory it writes under ``tmp_path``, no stats probe and no network."""
    for var in ("WANDB_API_KEY", "WANDB_BASE_URL", "WANDB_ENTITY", "WANDB_RUN_ID", "WANDB_RESUME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_X_DISABLE_STATS", "true")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_CONSOLE", "off")
    for var in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb_home"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield tmp_path
    torch.set_num_threads(threads)
    if wandb.run is not None:
        wandb.finish()


def test_offline_run_receives_tables_and_charts(offline_wandb):
    tmp_path = offline_wandb
    pl.seed_everything(0, verbose=False)
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.rand(32, 1, 8, 8, generator=g), torch.randint(0, 10, (32,), generator=g))
    net = SpikingVGG([4, "P", 8, "P"], [16], in_channels=1, image_size=8, num_classes=10)
    monitor = WeightTransitionMonitor(stages=[("s", 1, 3)], trajectories=4)
    callbacks = [monitor, AORMeter(), DeviceEnergyCallback("skmtj7", states=(0, 3, 6))]
    logger = WandbLogger(offline=True, save_dir=str(tmp_path), project="quest-tests")
    trainer = pl.Trainer(
        max_epochs=1,
        callbacks=callbacks,
        logger=logger,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(QuestModule(net, timesteps=2, lr=0.05), DataLoader(data, batch_size=8), DataLoader(data, batch_size=16))
    assert logger.experiment.settings.mode in ("offline", "dryrun")
    run_dirs = glob.glob(str(tmp_path / "wandb" / "offline-run-*"))
    wandb.finish()
    assert len(run_dirs) == 1
    run_dir = run_dirs[0]

    # the tables land as JSON files under files/media/table/<key>...
    tables = {
        os.path.relpath(p, os.path.join(run_dir, "files", "media", "table")): p
        for p in glob.glob(os.path.join(run_dir, "files", "media", "table", "**", "*.table.json"), recursive=True)
    }
    keys = sorted(tables)
    assert any(k.startswith("aor_table/train") for k in keys), keys
    assert any(k.startswith("aor_table/val") for k in keys), keys
    layer = "model.features.1.layer"
    assert any(k.startswith(f"transitions/s/{layer}/histogram") for k in keys), keys
    assert any(k.startswith(f"transitions/s/{layer}/trajectories") for k in keys), keys
    assert any(k.startswith("energy/write/s/patterns") for k in keys), keys

    aor_table = _json(tables[next(k for k in keys if k.startswith("aor_table/val"))])
    assert aor_table["columns"] == ["layer", "aor", "synaptic_rate", "sparsity", "ops"]
    assert [row[0] for row in aor_table["data"]] == [r["layer"] for r in callbacks[1].latest("val")["layers"]]
    assert aor_table["data"][1][1] == pytest.approx(callbacks[1].latest("val")["layers"][1]["aor"])

    histogram = _json(tables[next(k for k in keys if k.startswith(f"transitions/s/{layer}/histogram"))])
    counts = monitor.results["s"]["layers"][layer]["counts"]
    off_diagonal = {f"{i - 1:+d}→{j - 1:+d}": counts[i][j] for i in range(3) for j in range(3) if i != j}
    assert dict(map(tuple, histogram["data"])) == off_diagonal

    patterns = _json(tables[next(k for k in keys if k.startswith("energy/write/s/patterns"))])
    assert len(patterns["data"]) == 6

    # the binary run log names every key; the history file is the one `wandb sync` uploads
    blob = b"".join(Path(p).read_bytes() for p in glob.glob(os.path.join(run_dir, "run-*.wandb")))
    for key in (
        b"aor_table/train",
        b"aor_table/val",
        f"transitions/s/{layer}/histogram".encode(),
        b"energy/ann_over_quest",
        b"energy/write/s/total",
        b"spike_rate/val/mean",
    ):
        assert key in blob, key

    # the JSON summary goes next to the W&B files (the run's save directory)
    assert os.path.exists(callbacks[2].summary_path) and callbacks[2].summary_path.endswith(SUMMARY_FILE)
