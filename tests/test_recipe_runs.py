"""The recipe never loses or corrupts a run: its checkpoints load back (resume, validate, test, load_from_checkpoint),
a launcher's device count wins, no run overwrites another's files, and a crash is recorded as a failure."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml
from recipe_helpers import RECIPE, free_port, make_tiny_cifar, recipe_args, torch_threads, wandb_exit_codes

from quest_lightning.cli.recipe import QuestLightningCLI
from quest_lightning.cli.runs import FAILED_FILE, RunFolderInUseError
from quest_lightning.lightning.callbacks import AORMeter
from quest_lightning.lightning.vgg_module import QuestVGG, VGGConfig


@pytest.fixture(autouse=True)
def offline_and_one_thread(monkeypatch, one_thread):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_X_DISABLE_STATS", "true")
    for var in ("LT_DEVICES", "LT_ACCELERATOR", "LT_NUM_NODES", "LT_PRECISION", "LT_STRATEGY", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("QUEST_LAUNCHER_OPTIONS", raising=False)


def _run(args: list[str], where: Path) -> QuestLightningCLI:
    cwd = os.getcwd()
    os.chdir(where)
    try:
        return QuestLightningCLI(args=args)
    finally:
        os.chdir(cwd)


def _wandb_runs(folder: Path) -> list[Path]:
    return sorted((folder / "run" / "wandb").glob("offline-run-*"))


@dataclass
class Fitted:
    folder: Path
    data: Path
    ckpt: Path
    test_acc: float
    wandb_run: Path


@pytest.fixture(scope="module")
def fitted(tmp_path_factory) -> Fitted:
    """One epoch of the recipe (3 batches) on the tiny data, W&B offline, with Lightning's default checkpoint."""
    folder = tmp_path_factory.mktemp("fitted")
    data = make_tiny_cifar(folder / "cifar")
    with pytest.MonkeyPatch.context() as mp, torch_threads(1):
        mp.setenv("WANDB_MODE", "offline")
        mp.setenv("WANDB_X_DISABLE_STATS", "true")
        cli = _run(recipe_args("fit", folder, data), folder)
    (ckpt,) = (folder / "run").rglob("*.ckpt")
    (run,) = _wandb_runs(folder)
    return Fitted(folder, data, ckpt, float(cli.trainer.callback_metrics["test/acc"]), run)


def _assert_weights_are_the_checkpoint(module: torch.nn.Module, ckpt: Path) -> None:
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    current = module.state_dict()
    assert set(current) == set(saved)
    for name, value in current.items():
        torch.testing.assert_close(value.cpu(), saved[name], rtol=0, atol=0, msg=name)


def test_checkpoint_holds_the_constructor_arguments(fitted):
    hparams = torch.load(fitted.ckpt, map_location="cpu", weights_only=True)["hyper_parameters"]
    assert hparams["network"] == VGGConfig().to_dict()  # bits is 2, not the description [2]
    assert hparams["device"] == "skmtj7" and hparams["timesteps"] == 4
    assert "num_classes" not in hparams and "device_name" not in hparams  # not QuestVGG's arguments
    config = yaml.safe_load((fitted.wandb_run / "config.yaml").read_text())
    assert config["model"]["network"]["bits"] == 2
    assert wandb_exit_codes(fitted.wandb_run) == [0]  # a completed run is finished as one


@pytest.mark.parametrize(("subcommand", "metric"), [("validate", "val/acc"), ("test", "test/acc")])
def test_validate_and_test_with_the_checkpoint(fitted, subcommand, metric):
    cli = _run(recipe_args(subcommand, fitted.folder, fitted.data, "--ckpt_path", str(fitted.ckpt)), fitted.folder)
    _assert_weights_are_the_checkpoint(cli.model, fitted.ckpt)
    # validation uses the test split too: the checkpoint's weights give the fit's final test accuracy
    assert float(cli.trainer.callback_metrics[metric]) == pytest.approx(fitted.test_acc, abs=0)


def test_load_from_checkpoint_on_the_cpu(fitted):
    module = QuestVGG.load_from_checkpoint(fitted.ckpt, map_location="cpu")
    _assert_weights_are_the_checkpoint(module, fitted.ckpt)
    assert module.network == VGGConfig() and module.device_spec.name == "skmtj7"
    assert module.hparams.timesteps == 4 and module.device == torch.device("cpu")
    module.eval()
    with torch.no_grad():
        out = module(torch.rand(2, 3, 32, 32))
    assert out.shape == (4, 2, 10) and torch.isfinite(out).all()


def test_fit_resumes_from_its_checkpoint(fitted):
    cli = _run(
        recipe_args("fit", fitted.folder, fitted.data, "--ckpt_path", str(fitted.ckpt), "--trainer.max_epochs", "2"),
        fitted.folder,
    )
    assert cli.trainer.current_epoch == 2 and cli.trainer.global_step == 6  # 3 steps restored, 3 more
    meter = next(c for c in cli.trainer.callbacks if isinstance(c, AORMeter))
    assert [r["epoch"] for r in meter.history["val"]] == [0, 1]  # the callback's state came back from the checkpoint
    configs = [run / "config.yaml" for run in _wandb_runs(fitted.folder)]
    assert all(c.is_file() for c in configs) and len(configs) >= 2  # each run keeps its own config
    resumed = yaml.safe_load(configs[-1].read_text())
    assert resumed["ckpt_path"] == str(fitted.ckpt) and resumed["trainer"]["max_epochs"] == 2


def test_without_a_logger_each_run_gets_its_own_folder(tmp_path, tiny_cifar):
    for batches in ("1", "2"):
        _run(
            recipe_args("validate", tmp_path, tiny_cifar, "--trainer.limit_val_batches", batches, logger=False),
            tmp_path,
        )
    versions = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert versions == ["version_0", "version_1"]
    limits = [yaml.safe_load((tmp_path / "run" / v / "config.yaml").read_text())["trainer"] for v in versions]
    assert [t["limit_val_batches"] for t in limits] == [1, 2]
    assert limits[1]["default_root_dir"] == str(tmp_path / "run" / "version_1")
    again = ["validate", "--config", str(tmp_path / "run" / "version_1" / "config.yaml")]  # a run's own config
    _run(again, tmp_path)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["version_0", "version_1", "version_2"]


def test_a_logger_folder_in_use_is_refused_before_the_logger_starts(tmp_path, tiny_cifar):
    csv = ["--trainer.logger", "lightning.pytorch.loggers.CSVLogger", "--trainer.logger.init_args.save_dir"]
    csv += [str(tmp_path / "logs"), "--trainer.logger.init_args.version", "fixed", "--trainer.limit_val_batches", "1"]
    _run(recipe_args("validate", tmp_path, tiny_cifar, *csv, logger=False), tmp_path)
    folder = tmp_path / "logs" / "lightning_logs" / "fixed"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert {"metrics.csv", "config.yaml"} <= set(before)
    with pytest.raises(RunFolderInUseError, match="already holds a run"):
        _run(recipe_args("validate", tmp_path, tiny_cifar, *csv, logger=False), tmp_path)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert not (folder / FAILED_FILE).exists()


def test_a_crashed_run_is_marked_failed(tmp_path, tiny_cifar):
    crash = ["--trainer.callbacks+=recipe_helpers.CrashOnBatch", "--trainer.limit_val_batches", "2"]
    with pytest.raises(RuntimeError, match="crash for the test"):
        _run(recipe_args("validate", tmp_path, tiny_cifar, *crash), tmp_path)
    (run,) = _wandb_runs(tmp_path)
    record = json.loads((run / "files" / FAILED_FILE).read_text())
    assert record["status"] == "failed" and record["stage"] == "validate"
    assert record["error"] == "RuntimeError" and record["message"] == "crash for the test"
    assert "in on_validation_batch_end" in "".join(record["traceback"])
    codes = wandb_exit_codes(run)
    for _ in range(120):  # W&B's service process writes the exit record; on a loaded machine it can lag the return
        if codes:
            break
        time.sleep(0.5)
        codes = wandb_exit_codes(run)
    assert codes and all(code != 0 for code in codes)  # wandb sync will not show it as a finished run


def test_launcher_settings_given_on_its_command_line_win_over_the_config(tmp_path, tiny_cifar, monkeypatch, capsys):
    args = recipe_args("fit", tmp_path, tiny_cifar, logger=False)[1:]  # no subcommand: parse and build only
    monkeypatch.setenv("LT_ACCELERATOR", "cpu")
    monkeypatch.setenv("LT_DEVICES", "2")
    monkeypatch.setenv("LT_NUM_NODES", "1")
    cli = QuestLightningCLI(args=args, run=False)  # launcher defaults: the config's devices: 1 stays
    assert cli.trainer.num_devices == 1
    monkeypatch.setenv("QUEST_LAUNCHER_OPTIONS", "accelerator,devices")  # `quest-lightning run --devices 2 ...`
    cli = QuestLightningCLI(args=args, run=False)
    assert cli.trainer.num_devices == 2 and cli.config["trainer"]["devices"] == 2
    assert "the launcher's devices=2 replaces trainer.devices=1" in capsys.readouterr().err


def test_two_process_launch_is_one_ddp_run_with_one_summary(tmp_path, tiny_cifar):
    """`quest-lightning run --devices 2` with the shipped demo config (which says devices: 1; its transition stages
    fitted to the tiny data, since a stage that can never run is refused)."""
    cmd = [sys.executable, "-m", "quest_lightning.cli", "run", "--accelerator", "cpu", "--devices", "2"]
    cmd += ["--main-port", str(free_port()), str(RECIPE)]
    cmd += recipe_args("fit", tmp_path, tiny_cifar)
    cmd += [
        "--trainer.limit_val_batches",
        "1",
        "--trainer.limit_test_batches",
        "1",
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert "Starting with 2 processes" in output
    assert "the launcher's devices=2 replaces trainer.devices=1" in output
    assert output.count("quest-lightning run summary") == 1  # printed by rank zero only
    assert len(list((tmp_path / "run").rglob("quest_summary.json"))) == 1
    (run,) = _wandb_runs(tmp_path)
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["trainer"]["devices"] == 2 and config["trainer"]["accelerator"] == "cpu"
    assert wandb_exit_codes(run) == [0]
