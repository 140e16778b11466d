"""Tests of the `lightning` / `quest-lightning` launchers and of SDK delegation."""

from __future__ import annotations

import importlib
import json
import os
import re
import socket
import subprocess
import sys
import textwrap
import types
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from quest_lightning import __version__
from quest_lightning.cli.launch import launcher_overrides, trainer_kwargs_from_launcher_env

cli = importlib.import_module("quest_lightning.cli.main")  # the module (the package's `main` is the function)

PROBE = """\
import json, os, sys
from quest_lightning.cli.launch import trainer_kwargs_from_launcher_env
record = {
    "argv": sys.argv,
    "name": __name__,
    "env": {k: v for k, v in os.environ.items() if k.startswith("LT_")},
    "trainer_kwargs": trainer_kwargs_from_launcher_env(),
    "rank": os.environ.get("RANK"),
    "world_size": os.environ.get("WORLD_SIZE"),
}
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), f"out-{os.environ.get('RANK', 'x')}.json")
with open(out, "w") as f:
    json.dump(record, f)
"""


@pytest.fixture(autouse=True)
def restore_environ():
    """The launcher writes LT_* into os.environ (as fabric run does); undo it after each test."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def probe(tmp_path) -> Path:
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    return script


def _record(probe: Path, rank: str = "x") -> dict:
    return json.loads((probe.parent / f"out-{rank}.json").read_text())


def test_lightning_run_single_process_sets_lt_env_and_passes_args(probe):
    argv_before = list(sys.argv)
    rc = cli.lightning_main(
        [
            "run",
            "--accelerator",
            "cpu",
            "--devices=1",
            "--num_nodes",
            "1",
            "--precision",
            "bf16-mixed",
            "--strategy",
            "ddp",
            str(probe),
            "--help",
            "--devices",
            "7",
            "pos",
        ]
    )
    assert rc == 0
    rec = _record(probe)
    assert rec["argv"] == [str(probe), "--help", "--devices", "7", "pos"]
    assert rec["name"] == "__main__"
    assert rec["env"] == {
        "LT_CLI_USED": "1",
        "LT_ACCELERATOR": "cpu",
        "LT_DEVICES": "1",
        "LT_NUM_NODES": "1",
        "LT_PRECISION": "bf16-mixed",
        "LT_STRATEGY": "ddp",
    }
    assert rec["trainer_kwargs"] == {
        "accelerator": "cpu",
        "devices": 1,
        "num_nodes": 1,
        "precision": "bf16-mixed",
        "strategy": "ddp",
    }
    assert rec["rank"] is None  # no torchrun for one process
    assert sys.argv == argv_before


def test_lightning_run_model_form_and_defaults(probe):
    assert cli.lightning_main(["run", "model", str(probe), "a", "b"]) == 0
    rec = _record(probe)
    assert rec["argv"] == [str(probe), "a", "b"]
    assert rec["env"] == {"LT_CLI_USED": "1", "LT_DEVICES": "1", "LT_NUM_NODES": "1"}
    assert rec["trainer_kwargs"] == {"devices": 1, "num_nodes": 1}


def test_quest_lightning_run(probe):
    assert cli.main(["run", "--accelerator=cpu", str(probe), "--version"]) == 0
    rec = _record(probe)
    assert rec["argv"] == [str(probe), "--version"]
    assert rec["env"]["LT_ACCELERATOR"] == "cpu"


def test_script_exit_status_propagates(tmp_path):
    script = tmp_path / "fail.py"
    script.write_text("import sys\nsys.exit(3)\n")
    with pytest.raises(SystemExit) as info:
        cli.lightning_main(["run", str(script)])
    assert info.value.code == 3


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "--accelerator", "quantum", "{script}"], "invalid choice"),
        (["run", "--precision", "7-bit", "{script}"], "invalid choice"),
        (["run", "--accelerator", "cpu", "--devices", "zero", "{script}"], "devices"),
        (["run", "{missing}"], "script not found"),
        (["run"], "required"),
        (["run", "model"], "required"),
    ],
)
def test_run_errors_exit_2(probe, capsys, argv, message):
    argv = [a.format(script=probe, missing=probe.parent / "missing.py") for a in argv]
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err
    assert not (probe.parent / "out-x.json").exists()


def test_run_help_is_ours_before_the_script(capsys):
    assert cli.main(["run", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--devices" in out and "--num-nodes" in out and "--main-port" in out


@pytest.fixture
def fake_sdk(tmp_path, monkeypatch):
    """Installs a stand-in `lightning-sdk` distribution (dist-info + console_scripts entry point) on sys.path."""
    site = tmp_path / "site"
    pkg = site / "lightning_sdk"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "cli.py").write_text(
        textwrap.dedent(
            """\
            import sys
            received = []

            def main_cli():
                received.append(list(sys.argv))
                return 5 if "--fail" in sys.argv else None
            """
        )
    )
    dist = site / "lightning_sdk-9.9.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: lightning-sdk\nVersion: 9.9\n")
    (dist / "entry_points.txt").write_text("[console_scripts]\nlightning = lightning_sdk.cli:main_cli\n")
    monkeypatch.syspath_prepend(str(site))
    yield
    for name in [m for m in sys.modules if m == "lightning_sdk" or m.startswith("lightning_sdk.")]:
        del sys.modules[name]


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--help"],
        ["login"],
        ["run", "job", "--name", "x", "--command", "python train.py"],
        ["run", "notes.txt"],
        ["run", "--unknown", "train.py"],
        ["run", "--help"],
    ],
)
def test_other_commands_go_unchanged_to_the_sdk(fake_sdk, monkeypatch, argv):
    monkeypatch.setattr(sys, "argv", ["/usr/bin/lightning", "ignored"])
    assert cli.lightning_main(argv) == 0
    import lightning_sdk.cli

    assert lightning_sdk.cli.received == [["/usr/bin/lightning", *argv]]
    assert sys.argv == ["/usr/bin/lightning", "ignored"]
    assert cli.lightning_main(["whoami", "--fail"]) == 5


def test_script_runs_are_not_delegated(fake_sdk, probe):
    assert cli.find_sdk_cli() is not None
    assert cli.lightning_main(["run", "--devices", "1", str(probe)]) == 0
    import lightning_sdk.cli

    assert lightning_sdk.cli.received == []
    assert _record(probe)["argv"] == [str(probe)]


def test_without_sdk_usage_and_exit_2(monkeypatch, capsys):
    monkeypatch.setattr(cli, "find_sdk_cli", lambda: None)
    assert cli.lightning_main(["login"]) == 2
    err = capsys.readouterr().err
    assert "lightning run [LAUNCHER OPTIONS] SCRIPT.py" in err and "lightning run model" in err
    assert "unsupported command: login" in err
    assert cli.lightning_main(["run", "job"]) == 2
    assert cli.lightning_main([]) == 2
    assert cli.lightning_main(["--help"]) == 0
    assert "quest-lightning run" in capsys.readouterr().out


def test_version_and_console_scripts(capsys):
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"quest-lightning {__version__}"
    scripts = {ep.name: ep for ep in entry_points(group="console_scripts") if ep.value.startswith("quest_lightning")}
    assert scripts["quest-lightning"].load() is cli.main
    assert scripts["lightning"].load() is cli.lightning_main
    exe = Path(sys.executable).parent / "quest-lightning"
    if exe.exists():
        done = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and done.stdout.strip() == f"quest-lightning {__version__}"


def test_report_calls_build_report(monkeypatch, capsys, tmp_path):
    calls = []
    fake = types.ModuleType("quest_lightning.report")

    def build_report(run_dir, out_dir=None):
        calls.append((run_dir, out_dir))
        return tmp_path / "report.html"

    fake.build_report = build_report
    monkeypatch.setitem(sys.modules, "quest_lightning.report", fake)
    assert cli.main(["report", "runs/abc"]) == 0
    assert cli.main(["report", "runs/abc", "--out-dir", "out"]) == 0
    assert calls == [("runs/abc", None), ("runs/abc", "out")]
    assert str(tmp_path / "report.html") in capsys.readouterr().out


def test_report_without_builder_says_so(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "quest_lightning.report", types.ModuleType("quest_lightning.report"))
    assert cli.main(["report", "runs/abc"]) == 1
    assert "build_report" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, {}),
        ({"LT_DEVICES": "auto", "LT_ACCELERATOR": "gpu"}, {"devices": "auto", "accelerator": "gpu"}),
        ({"LT_DEVICES": "0,1", "LT_NUM_NODES": "2"}, {"devices": "0,1", "num_nodes": 2}),
        ({"LT_DEVICES": "[0, 2]"}, {"devices": [0, 2]}),
        ({"LT_DEVICES": "-1", "LT_PRECISION": "32", "LT_STRATEGY": ""}, {"devices": -1, "precision": "32"}),
    ],
)
def test_trainer_kwargs_from_launcher_env(env, expected):
    assert trainer_kwargs_from_launcher_env(env) == expected


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_through_torchrun(probe):
    cmd = [sys.executable, "-m", "quest_lightning.cli", "run", "--accelerator", "cpu", "--devices", "2"]
    cmd += ["--main-port", str(_free_port()), str(probe), "tag"]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=30, cwd=probe.parent)
    except subprocess.TimeoutExpired:
        pytest.skip("starting two processes through torchrun took more than 30 s here")
    assert done.returncode == 0, done.stderr
    records = [_record(probe, str(rank)) for rank in (0, 1)]
    for rank, rec in enumerate(records):
        assert rec["rank"] == str(rank) and rec["world_size"] == "2"
        assert rec["argv"][1:] == ["tag"]
        assert rec["trainer_kwargs"] == {"accelerator": "cpu", "devices": 2, "num_nodes": 1}


SDK_SCRIPT = """\
#!{python}
# -*- coding: utf-8 -*-
import re
import sys
from lightning_sdk.cli.entrypoint import main_cli
if __name__ == "__main__":
    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])
    sys.exit(main_cli())
"""


def test_doctor_restores_the_lightning_command_replaced_by_the_sdk(tmp_path, probe, capsys):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "lightning"
    sdk_text = SDK_SCRIPT.format(python=sys.executable)  # what installing lightning-sdk leaves in bin/
    script.write_text(sdk_text)
    script.chmod(0o755)
    done = subprocess.run([str(script), "run", str(probe)], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and not (probe.parent / "out-x.json").exists()  # `lightning run` no longer ours

    assert cli.main(["doctor", "--bin-dir", str(bin_dir)]) == 1
    out = capsys.readouterr().out
    assert "lightning_sdk.cli.entrypoint:main_cli" in out and "quest-lightning doctor --fix" in out
    assert script.read_text() == sdk_text  # nothing changed without --fix

    assert cli.main(["doctor", "--fix", "--bin-dir", str(bin_dir)]) == 0
    assert "restored" in capsys.readouterr().out
    assert (bin_dir / "lightning.replaced").read_text() == sdk_text
    assert os.access(script, os.X_OK)
    done = subprocess.run([str(script), "run", str(probe), "tag"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert _record(probe)["argv"] == [str(probe), "tag"]
    assert cli.main(["doctor", "--bin-dir", str(bin_dir)]) == 0

    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli.main(["doctor", "--bin-dir", str(empty)]) == 1
    assert "there is no" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"LT_DEVICES": "2", "LT_NUM_NODES": "1"}, {}),  # defaults of a one-process launch: the config decides
        ({"LT_DEVICES": "2", "LT_ACCELERATOR": "cpu", "QUEST_LAUNCHER_OPTIONS": "devices"}, {"devices": 2}),
        ({"LT_DEVICES": "2", "LT_NUM_NODES": "1", "WORLD_SIZE": "2"}, {"devices": 2, "num_nodes": 1}),
        (
            {"LT_DEVICES": "1", "LT_PRECISION": "bf16-mixed", "QUEST_LAUNCHER_OPTIONS": "precision"},
            {"precision": "bf16-mixed"},
        ),
    ],
)
def test_launcher_overrides(env, expected):
    assert launcher_overrides(env) == expected


def test_launcher_tells_the_script_which_settings_it_was_given(probe):
    assert cli.main(["run", "--devices", "1", "--precision=32-true", str(probe)]) == 0
    assert os.environ["QUEST_LAUNCHER_OPTIONS"] == "devices,precision"
    assert cli.main(["run", str(probe)]) == 0
    assert os.environ["QUEST_LAUNCHER_OPTIONS"] == ""


def test_end_of_fit_summary_prints_every_device_and_flag(tmp_path, monkeypatch, capsys):
    from report_helpers import FLAGS, full_summary, write_run

    from quest_lightning.cli.run_summary import print_summary
    from quest_lightning.lightning.callbacks import DeviceEnergyCallback

    energy = DeviceEnergyCallback()
    energy.summary_path = str(write_run(tmp_path, full_summary()))  # what the run wrote: the report's numbers
    trainer = types.SimpleNamespace(callbacks=[energy], loggers=[])
    monkeypatch.setenv("COLUMNS", "200")  # rich wraps at the terminal's width
    shown = print_summary(trainer, {"test/acc": 0.5})
    out = capsys.readouterr().out
    assert shown.test_accuracy == 0.5 and [d.name for d in shown.devices] == ["toy", "toy2"]
    assert shown.flags == FLAGS and shown.activity.stage == "val"
    assert "test accuracy" in out and "50.00 %" in out
    assert "mean AOR (quantized layers; val)" in out and "0.0000" in out
    blocks = re.split(r"│ device\s+│", out)[1:]  # one block of rows per device, in the summary's order
    assert len(blocks) == 2
    for block, (device, write, read) in zip(blocks, (("toy ", "2 pJ", "1 pJ"), ("toy2", "6 pJ", "3 pJ")), strict=True):
        assert block.lstrip().startswith(device)
        assert re.search(rf"write energy per sample seen\s+│ {write}", block)
        assert re.search(rf"read energy per sample \(val, epoch 1\)\s+│ {read}", block)
    # the val epoch never fired: its ratios (27.6 / 6 = 4.6, 12 / 6 = 2) are never shown as savings
    assert out.count("4.60× (silent network: not a saving)") == 2 and out.count("2.00× (silent network") == 2
    assert "×" not in out.replace("× (silent network: not a saving)", "")
    for flag in FLAGS:
        assert f"flag {flag.code}: (stage {flag.stage}, epoch {flag.epoch}) {flag.message}" in out
    assert "epochs to the first worn-out cell" in out and "2.857e+05" in out
    assert f"summary JSON: {energy.summary_path}" in out and f"quest-lightning report {tmp_path}" in out
