"""``quest-lightning export``: from a Lightning checkpoint (or its run folder) to a bundle, and clear refusals."""

import json

import lightning.pytorch as pl
import pytest
import torch

from quest_lightning.deploy import IntegerRunner, load_bundle
from quest_lightning.deploy.command import export_command, find_checkpoint
from quest_lightning.lightning.vgg_module import QuestVGG, VGGConfig
from quest_lightning.nn.vgg import VGG_CONFIGS


@pytest.fixture
def tiny_arch(monkeypatch):
    """A small VGG so that checkpoints stay a few hundred kB."""
    monkeypatch.setitem(VGG_CONFIGS, "tiny", ([8, "P", 16, "P"], [32]))


def _save(tmp_path, name="run/checkpoints/last.ckpt", **kwargs) -> tuple[QuestVGG, str]:
    torch.manual_seed(0)
    module = QuestVGG(VGGConfig(arch="tiny", image_size=8, **kwargs), device="skmtj7", timesteps=3)
    trainer = pl.Trainer(max_epochs=0, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.strategy.connect(module)
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    trainer.save_checkpoint(path)
    return module, str(path)


def test_export_from_a_checkpoint_and_from_its_run_folder(tiny_arch, tmp_path, capsys):
    module, ckpt = _save(tmp_path)
    assert export_command([ckpt, "--out", str(tmp_path / "b1"), "--pattern", "6,3,0"]) == 0
    assert "pattern -1→R6, 0→R3, +1→R0 (--pattern)" in capsys.readouterr().out
    bundle = load_bundle(tmp_path / "b1")
    assert bundle.pattern_states == (6, 3, 0)
    x = torch.rand(5, 3, 8, 8)
    module.eval()
    with torch.no_grad():
        expected = module(x).mean(0).argmax(-1)
    assert torch.equal(IntegerRunner(bundle).predict(x), expected)

    assert export_command([str(tmp_path / "run"), "--out", str(tmp_path / "b2")]) == 0
    out = capsys.readouterr().out
    assert "pattern -1→R0, 0→R1, +1→R2 (default" in out  # no pattern given or recorded: pattern 0, said so
    run = json.loads((tmp_path / "b2" / "manifest.json").read_text())["run"]
    assert run["checkpoint"].endswith("last.ckpt") and len(run["checkpoint_sha256"]) == 64
    assert run["run_dir"].endswith("run") and run["hyperparameters"]["network"]["arch"] == "tiny"
    assert run["pattern_source"].startswith("default")


def test_export_refuses_bad_input(tiny_arch, tmp_path, capsys):
    _, ckpt = _save(tmp_path)
    assert export_command([str(tmp_path / "nope.ckpt"), "--out", str(tmp_path / "b")]) == 1
    assert "nope.ckpt does not exist" in capsys.readouterr().err
    (tmp_path / "empty_run").mkdir()
    assert export_command([str(tmp_path / "empty_run"), "--out", str(tmp_path / "b")]) == 1
    assert "no checkpoint (*.ckpt) under" in capsys.readouterr().err

    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert export_command([ckpt, "--out", str(out)]) == 1
    assert "is not empty" in capsys.readouterr().err and sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    assert export_command([ckpt, "--out", str(out), "--force"]) == 0
    assert (out / "keep.txt").read_text() == "mine" and (out / "manifest.json").exists()

    assert export_command([ckpt, "--out", str(tmp_path / "c"), "--pattern", "x"]) == 1
    assert "--pattern 'x' must be an index" in capsys.readouterr().err
    assert export_command([ckpt]) == 2  # --out is required
    capsys.readouterr()

    _, fp32 = _save(tmp_path, "fp32.ckpt", quantize=False)
    assert export_command([fp32, "--out", str(tmp_path / "d")]) == 1
    assert "needs a model with quantized layers" in capsys.readouterr().err
    _, bn = _save(tmp_path, "bn.ckpt", batch_norm=True)
    assert export_command([bn, "--out", str(tmp_path / "e")]) == 1
    assert "BatchNorm 'features.0.norm' is not folded" in capsys.readouterr().err
    assert not (tmp_path / "d").exists() and not (tmp_path / "e").exists()

    torch.save({"state_dict": {}, "hyper_parameters": {"lr": 1.0}}, tmp_path / "other.ckpt")
    assert export_command([str(tmp_path / "other.ckpt"), "--out", str(tmp_path / "f")]) == 1
    assert "is not a QuestVGG checkpoint" in capsys.readouterr().err


def test_find_checkpoint_prefers_last(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "epoch=0.ckpt").write_bytes(b"")
    (tmp_path / "a" / "last.ckpt").write_bytes(b"")
    assert find_checkpoint(tmp_path).name == "last.ckpt"


def test_the_quest_lightning_console_command_runs_export(tiny_arch, tmp_path, capsys):
    from quest_lightning.cli import main

    _, ckpt = _save(tmp_path)
    assert main(["export", ckpt, "--out", str(tmp_path / "bundle")]) == 0
    assert (tmp_path / "bundle" / "manifest.json").is_file()
    assert main(["export", ckpt, "--out", str(tmp_path / "bundle")]) == 1  # not empty: refused without --force
    assert "--force" in capsys.readouterr().err
    assert main(["--help"]) == 0
    assert "export" in capsys.readouterr().out
