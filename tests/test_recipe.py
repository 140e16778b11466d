"""The recipe through LightningCLI: a tiny real fit (with test, summary and report), help, and config errors."""

import sys

import pytest
import yaml
from recipe_helpers import DEMO_CONFIG, RECIPE, recipe_args

from quest_lightning.cli import lightning_main
from quest_lightning.cli.recipe import QuestLightningCLI, translate_flat_network_keys
from quest_lightning.lightning.vgg_module import VGGConfig
from quest_lightning.summary import read_summary


def _args(tmp_path, data, *extra):
    return recipe_args("fit", tmp_path, data, *extra)


def test_recipe_fit_tests_and_reports(tmp_path, tiny_cifar, one_thread, monkeypatch, capsys):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_X_DISABLE_STATS", "true")
    monkeypatch.chdir(tmp_path)
    cli = QuestLightningCLI(args=_args(tmp_path, tiny_cifar))
    assert cli.trainer.global_step == 3
    out = capsys.readouterr().out
    for line in ("test accuracy", "mean AOR", "best R-S pattern", "ANN / QUEST", "wandb sync"):
        assert line in out
    summaries = list((tmp_path / "run").rglob("quest_summary.json"))
    assert len(summaries) == 1
    summary = read_summary(summaries[0])
    assert set(summary.transitions) == {"a", "b"}
    assert summary.primary.name == "skmtj7" and summary.bits == 2
    assert (summaries[0].parent / "report" / "report.html").is_file()
    runs = list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    logged = {p.name.split("_")[0] for p in (runs[0] / "files" / "media" / "images" / "report").glob("*.png")}
    assert {"activity-aor", "compute-energy-val"} <= logged  # the report's charts reach W&B too


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (["--model.neuron", "lif"], "cannot leak"),
        (["--model.bits", "4"], "15 weight levels"),
        (["--model.device", "no_such_device"], "model.device='no_such_device'"),
    ],
)
def test_bad_config_fails_before_training(tmp_path, tiny_cifar, override, message, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.chdir(tmp_path)
    with pytest.raises((ValueError, SystemExit)) as err:
        QuestLightningCLI(args=_args(tmp_path, tiny_cifar, *override))
    text = str(err.value) if err.type is ValueError else str(err.value.__context__)
    assert message in text
    assert "model" in text
    assert not (tmp_path / "run" / "wandb").exists()  # nothing started


def test_lightning_run_help(capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["lightning"])
    with pytest.raises(SystemExit) as exit_info:
        lightning_main(["run", str(RECIPE), "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "fit" in out and "validate" in out and "test" in out


def test_flat_network_keys_of_older_configs_still_work(tmp_path, tiny_cifar, capsys):
    config = yaml.safe_load(DEMO_CONFIG.read_text())
    config["trainer"]["logger"] = False
    config["model"] = {"arch": "vgg6", "bits": 3, "neuron": "if", "device": "skmtj7", "timesteps": 2}  # old shape
    path = tmp_path / "flat.yaml"
    path.write_text(yaml.safe_dump(config))
    args = ["--config", str(path), "--model.reset=soft", "--model.dropout", "0.25", "--data.data_dir", str(tiny_cifar)]
    cli = QuestLightningCLI(args=args, run=False)
    assert cli.model.network == VGGConfig(bits=3, reset="soft", dropout=0.25)
    assert cli.model.device_spec.name == "skmtj7" and cli.model.timesteps == 2
    err = capsys.readouterr().err
    assert "model.bits" in err and "model.network.bits" in err and "model.network.reset" in err

    assert translate_flat_network_keys(["fit", "--model.bits", "3", "--model.lr=0.1", "--model.device", "x"]) == [
        "fit",
        "--model.network.bits",
        "3",
        "--model.lr=0.1",
        "--model.device",
        "x",
    ]
    config["model"]["network"] = {"bits": 2}
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ValueError, match=r"model\.bits and model\.network\.bits are both given"):
        translate_flat_network_keys(["--config", str(path)])
