"""Shared by the recipe tests: a tiny CIFAR-10-shaped ImageFolder, the recipe's command line and configs on it, a W&B
offline run's exit code, a callback that makes a run crash and one that kills it, and the recipe run as a subprocess."""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
import yaml
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "vgg6_cifar10.py"
DEMO_CONFIG = ROOT / "recipes" / "configs" / "demo.yaml"
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def make_tiny_cifar(root: Path, train_per_class: int = 2, test_per_class: int = 1) -> Path:
    """An ImageFolder ``root/{train,test}/<class>/*.jpg`` of random 32×32 RGB images, ten CIFAR-10 classes."""
    g = torch.Generator().manual_seed(0)
    for split, n in (("train", train_per_class), ("test", test_per_class)):
        for c in CLASSES:
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                pixels = torch.randint(0, 256, (32, 32, 3), generator=g, dtype=torch.uint8).numpy()
                Image.fromarray(pixels).save(root / split / c / f"{i:04d}.jpg")
    return root


@pytest.fixture
def tiny_cifar(tmp_path: Path) -> Path:
    return make_tiny_cifar(tmp_path / "cifar")


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch threads (a tiny model runs faster on one thread than on contended ones)."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def one_thread():
    with torch_threads(1):
        yield


def tiny_config(folder: Path) -> Path:
    """The shipped demo config with transition stages that fit a 3-batch epoch, written into ``folder``."""
    config = yaml.safe_load(DEMO_CONFIG.read_text())
    monitor = next(c for c in config["trainer"]["callbacks"] if c["class_path"].endswith("WeightTransitionMonitor"))
    monitor["init_args"]["stages"] = [["a", 1, 2], ["b", 3, 3]]
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def recipe_args(
    subcommand: str, folder: Path, data: Path, *extra: str, logger: bool = True, config: Path | None = None
) -> list[str]:
    """The recipe's command line on the tiny data: all of it, batch 4, 3 training batches, files under ``folder``
    (``folder/run`` for the run, ``folder/cache`` for the decoded images); ``logger=False`` runs without a logger."""
    args = [
        subcommand,
        "--config",
        str(config or tiny_config(folder)),
        "--data.data_dir",
        str(data),
        "--data.cache_dir",
        str(folder / "cache"),
        "--data.batch_size",
        "4",
        "--data.train_subset",
        "null",
        "--data.test_subset",
        "null",
        "--trainer.limit_train_batches",
        "3",
        "--trainer.default_root_dir",
        str(folder / "run"),
    ]
    args += ["--trainer.logger.init_args.save_dir", str(folder / "run")] if logger else ["--trainer.logger", "false"]
    return [*args, *extra]


def wandb_exit_codes(run_dir: Path) -> list[int]:
    """The exit codes recorded in a W&B offline run's ``run-*.wandb`` file (a LevelDB-style log of protobuf
    ``Record`` messages: 7-byte file header, 32 KiB blocks, records framed by crc32, length and type)."""
    from wandb.proto import wandb_internal_pb2

    raw = next(run_dir.glob("run-*.wandb")).read_bytes()
    block, pos, pending, codes = 32768, 7, b"", []
    while pos + 7 <= len(raw):
        left = block - pos % block
        if left < 7:  # a block's tail too short for a record header is padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", raw[pos : pos + 7])
        pos += 7
        if kind == 0 and length == 0:
            pos += left - 7
            continue
        pending += raw[pos : pos + length]
        pos += length
        if kind in (1, 4):  # a full record, or the last fragment of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            if record.WhichOneof("record_type") == "exit":
                codes.append(record.exit.exit_code)
    return codes


class CrashOnBatch(Callback):
    """Raises ``RuntimeError("crash for the test")`` on validation batch ``batch`` (0-based) of the first loop."""

    def __init__(self, batch: int = 0) -> None:
        self.batch = batch

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if batch_idx == self.batch:
            raise RuntimeError("crash for the test")


class KillAfterCheckpoint(ModelCheckpoint):
    """A checkpoint after every training step (the step's file and ``last.ckpt``) that, with ``kill_at_step``, kills
    its own process with SIGKILL right after writing the checkpoint of that global step: no hook, no ``finally``, no
    file flushed after it, as when a job is preempted or runs out of memory."""

    def __init__(self, dirpath: str, kill_at_step: int | None = None) -> None:
        super().__init__(dirpath=dirpath, every_n_train_steps=1, save_last=True)
        self.kill_at_step = kill_at_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if trainer.global_step == self.kill_at_step:
            os.kill(os.getpid(), signal.SIGKILL)


def recipe_config(
    path: Path,
    data: Path,
    *,
    stages: list[list],
    epochs: int = 2,
    batch_size: int = 4,
    callbacks: list[dict] = (),
    trainer: dict | None = None,
    data_options: dict | None = None,
) -> Path:
    """A recipe config written to ``path``: the shipped demo's model, device and callbacks (transition ``stages``,
    AOR on train and val, the Sk-MTJ priced on states 0, 3, 6) with VGG6's hidden layer narrowed to 64 units, on the
    tiny data (all of it, ``batch_size``), for ``epochs`` epochs, no logger and no progress bar. ``callbacks`` are
    added after the demo's; ``trainer`` and ``data_options`` override those sections' keys."""
    config = yaml.safe_load(DEMO_CONFIG.read_text())
    demo_callbacks = [c for c in config["trainer"]["callbacks"] if not c["class_path"].endswith("ProgressBar")]
    monitor = next(c for c in demo_callbacks if c["class_path"].endswith("WeightTransitionMonitor"))
    monitor["init_args"]["stages"] = stages
    config["trainer"].update(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(path.parent / "run"),
        callbacks=[*demo_callbacks, *callbacks],
        **(trainer or {}),
    )
    config["model"]["network"]["fc"] = [64]
    config["data"] = {
        "data_dir": str(data),
        "cache_dir": str(path.parent / "cache"),
        "batch_size": batch_size,
        "train_subset": None,
        "test_subset": None,
        **(data_options or {}),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def free_port() -> int:
    """A TCP port free on this machine now, for a DDP run's main process."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_recipe(
    args: list[str], cwd: Path, launcher: Sequence[str] = (), timeout: float = 300
) -> subprocess.CompletedProcess:
    """``python recipes/vgg6_cifar10.py ARGS`` (or ``python -m quest_lightning.cli run LAUNCHER recipe ARGS``) in a
    fresh process with one thread per process, this checkout and ``tests/`` on the path, W&B offline."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", WANDB_MODE="offline")
    env["WANDB_X_DISABLE_STATS"] = "true"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "tests"), env.get("PYTHONPATH", "")])
    for var in ("LT_DEVICES", "LT_ACCELERATOR", "LT_NUM_NODES", "QUEST_LAUNCHER_OPTIONS", "QUEST_RUN_FOLDER"):
        env.pop(var, None)
    start = [sys.executable, "-m", "quest_lightning.cli", "run", *launcher] if launcher else [sys.executable]
    cmd = [*start, str(RECIPE), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env)
