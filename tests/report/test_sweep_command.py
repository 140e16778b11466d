"""``quest-lightning sweep`` end to end: a tiny recipe run (a small VGG on a tiny ImageFolder), swept from its run
folder with the data options of its saved config, refused over an existing sweep unless forced, swept from a bare
checkpoint with ``--data.*`` options; and where the files of a W&B run are found."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from recipe_helpers import make_tiny_cifar, recipe_args, torch_threads
from report_helpers import TOY, minimal_summary, write_run

from quest_lightning.cli import main as quest_lightning_main
from quest_lightning.cli.recipe import QuestLightningCLI
from quest_lightning.cli.sweep import SweepError, locate_run, parse_data_options, priced_states
from quest_lightning.devices import get_device
from quest_lightning.devices.io import save_device_yaml
from quest_lightning.devices.patterns import enumerate_patterns, format_mapping
from quest_lightning.hardware import SWEEP_FILE, VariationSweep
from quest_lightning.lightning.data import CIFAR10DataModule
from quest_lightning.lightning.vgg_module import QuestVGG
from quest_lightning.nn.vgg import VGG_CONFIGS
from quest_lightning.summary import read_summary

TINY = "tiny-test"
TINY_VGG = ([8, "P"], [16])  # one convolution, one hidden layer: the recipe's model, small enough for a test


@pytest.fixture
def tiny_arch(monkeypatch):
    """The tiny VGG registered for the test (checkpoints of it load back while it is)."""
    monkeypatch.setitem(VGG_CONFIGS, TINY, TINY_VGG)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """The recipe's fit (3 batches of 4, no logger) of the tiny VGG: a run folder with its summary, config.yaml and
    checkpoint, the way the recipe leaves them."""
    folder = tmp_path_factory.mktemp("sweep")
    data = make_tiny_cifar(folder / "cifar")
    with pytest.MonkeyPatch.context() as mp, torch_threads(1):
        mp.setitem(VGG_CONFIGS, TINY, TINY_VGG)
        mp.setenv("WANDB_MODE", "offline")
        mp.chdir(folder)
        QuestLightningCLI(args=recipe_args("fit", folder, data, "--model.network.arch", TINY, logger=False))
    (run_dir,) = (folder / "run").glob("version_*")
    return run_dir


def _first_batch_accuracy(run_dir: Path) -> float:
    """The trained model's accuracy on the first test batch, computed here without the sweep."""
    (ckpt,) = run_dir.glob("checkpoints/*.ckpt")
    model = QuestVGG.load_from_checkpoint(ckpt, map_location="cpu").eval()
    cifar = run_dir.parents[1] / "cifar"
    dm = CIFAR10DataModule(str(cifar), cache_dir=str(run_dir.parents[1] / "cache"), batch_size=4)
    dm.setup("test")
    x, y = dm.on_after_batch_transfer(next(iter(dm.test_dataloader())), 0)
    with torch.no_grad():
        return float((model(x).mean(0).argmax(1) == y).float().mean())


def test_sweep_of_a_run_folder_uses_its_config_and_is_drawn(run, tiny_arch, one_thread, capsys) -> None:
    argv = ["sweep", str(run), "--sigma", "0", "0.5", "--draws", "2", "--limit-test", "1"]
    assert quest_lightning_main(argv) == 0
    out, err = capsys.readouterr()
    assert Path(out.strip()) == run / "report" / "report.html"
    assert "on 4 test images" in err  # one test batch of the config's batch size 4
    sweep = VariationSweep.load(run)
    # every pattern the run priced: 2 bits on the recipe's states (0, 3, 6), in the callback's order
    assert sweep.patterns == tuple(p.states for p in enumerate_patterns(get_device("skmtj7"), 2, (0, 3, 6)))
    assert sweep.device == "skmtj7" and sweep.vary == "d2d_sigma" and sweep.values == (0.0, 0.5)
    assert sweep.ideal_accuracy == _first_batch_accuracy(run)
    assert all(row[0] == (sweep.ideal_accuracy,) * 2 for row in sweep.accuracy)  # σ = 0: the ideal device, exactly
    page = (run / "report" / "report.html").read_text(encoding="utf-8")
    assert '<figure id="fig-variation-sweep">' in page and "Accuracy against d2d_sigma" in page


def test_an_existing_sweep_is_kept_unless_forced(run, tiny_arch, one_thread, capsys) -> None:
    if not (run / SWEEP_FILE).is_file():
        VariationSweep("skmtj7", "d2d_sigma", (0.0,), ((0, 3, 6),), (((0.5,),),), 0.5, 1, 0, "nearest").save(run)
    before = (run / SWEEP_FILE).read_bytes()
    assert quest_lightning_main(["sweep", str(run), "--sigma", "0.1"]) == 1
    err = capsys.readouterr().err
    assert "already holds a variation sweep" in err and "--force" in err
    assert (run / SWEEP_FILE).read_bytes() == before
    assert quest_lightning_main(["sweep", str(run), "--sigma", "-0.1", "--force"]) == 1  # refused before sweeping
    assert "d2d_sigma" in capsys.readouterr().err and (run / SWEEP_FILE).read_bytes() == before
    argv = ["sweep", str(run), "--sigma", "0.1", "--draws", "1", "--patterns", "best", "--limit-test", "1", "--force"]
    assert quest_lightning_main(argv) == 0
    sweep = VariationSweep.load(run / SWEEP_FILE)
    reported = list(read_summary(run / "quest_summary.json").devices[0].write.values())[-1].pattern
    assert sweep.labels == [reported] and sweep.values == (0.1,) and sweep.draws == 1


def test_sweep_of_a_bare_checkpoint_with_data_options(run, tiny_arch, one_thread, tmp_path, capsys) -> None:
    (ckpt,) = run.glob("checkpoints/*.ckpt")
    bare = tmp_path / "elsewhere" / "model.ckpt"
    bare.parent.mkdir()
    shutil.copy(ckpt, bare)
    data = ["--data.data_dir", str(run.parents[1] / "cifar"), f"--data.cache_dir={run.parents[1] / 'cache'}",
            "--data.batch_size", "5"]  # fmt: skip
    assert quest_lightning_main(["sweep", str(bare), "--sigma", "0", "--patterns", "best", *data]) == 1
    assert "needs the patterns the run priced" in capsys.readouterr().err  # no summary next to a bare checkpoint
    toy = save_device_yaml(TOY, tmp_path / "toy.yaml")  # 3 states: all 6 patterns of 2 bits
    argv = ["sweep", str(bare), "--sigma", "0", "--draws", "1", "--limit-test", "1", "--device", str(toy), *data]
    assert quest_lightning_main(argv) == 0
    out, err = capsys.readouterr()
    assert Path(out.strip()) == bare.parent / SWEEP_FILE  # no summary: nothing to report
    assert "on 5 test images" in err and "no report to rebuild" in err
    sweep = VariationSweep.load(bare.parent)
    assert sweep.device == "toy" and len(sweep.patterns) == 6


def test_files_of_a_wandb_run_are_found(tmp_path: Path) -> None:
    save_dir = tmp_path / "runs"
    wandb_run = save_dir / "wandb" / "offline-run-20260101_120000-abc123"
    summary = write_run(_mkdir(wandb_run / "files"), minimal_summary())
    (wandb_run / "config.yaml").write_text("data: {batch_size: 4}\n")
    checkpoints = _mkdir(save_dir / "quest-lightning" / "abc123" / "checkpoints")
    (checkpoints / "epoch=0-step=3.ckpt").write_bytes(b"")
    (checkpoints / "last.ckpt").write_bytes(b"")
    _mkdir(save_dir / "quest-lightning" / "other" / "checkpoints").joinpath("last.ckpt").write_bytes(b"")
    for target in (wandb_run, wandb_run / "files"):
        files = locate_run(target)
        assert files.checkpoint == checkpoints / "last.ckpt" and files.summary == summary
        assert files.folder == wandb_run / "files" and files.config == wandb_run / "config.yaml"
    from_ckpt = locate_run(checkpoints / "epoch=0-step=3.ckpt")
    assert from_ckpt.summary == summary and from_ckpt.folder == wandb_run / "files"
    with pytest.raises(SweepError, match="Pass the checkpoint's path"):
        locate_run(_mkdir(tmp_path / "empty"))
    with pytest.raises(SweepError, match="does not exist"):
        locate_run(tmp_path / "missing")


def test_data_options_and_pattern_labels() -> None:
    tokens = ["--data.batch_size", "8", "--data.test_subset=null", "--data.data_dir", "/data/cifar"]
    assert parse_data_options(tokens) == {"batch_size": 8, "test_subset": None, "data_dir": "/data/cifar"}
    with pytest.raises(SweepError, match="--data.KEY VALUE"):
        parse_data_options(["--model.bits", "3"])
    with pytest.raises(SweepError, match="needs a value"):
        parse_data_options(["--data.batch_size"])
    patterns = [(0, 3, 6), (6, 0, 3)]
    assert priced_states([format_mapping(p) for p in patterns]) == patterns
    with pytest.raises(SweepError, match="not an R-S pattern label"):
        priced_states(["-1→R0, +1→R3"])


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True)
    return path
