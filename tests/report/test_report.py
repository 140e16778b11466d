"""Tests of the run report: a tiny real run end to end, and hand-written summaries for the missing-section paths."""

from __future__ import annotations

import contextlib
import io
import json
import os
from dataclasses import replace
from pathlib import Path

import pytest
from report_helpers import check_page, minimal_summary, write_run

from quest_lightning.cli import main as quest_lightning_main
from quest_lightning.report import (
    FAILED_FILE,
    MANIFEST_FILE,
    REPORT_FILE,
    SUMMARY_FILE,
    build_report,
    find_summary,
    plots,
    read_metrics_csv,
    report_files,
)
from quest_lightning.report.plots import MANY_PATTERNS, format_joules
from quest_lightning.summary import RunSummary, SummaryFormatError, read_summary

FULL_RUN_FIGURES = {
    "training",
    "activity-spike_rate",
    "activity-sparsity",
    "activity-aor",
    "transitions-overview",
    "transitions-a",
    "transitions-b",
    "trajectories-a",
    "trajectories-b",
    "write-energy-overview",
    "write-energy-a",
    "write-energy-b",
    "read-energy-epochs",
    "read-energy-train",
    "read-energy-val",
    "compute-energy-train",
    "compute-energy-val",
}


# --------------------------------------------------------------------------------------------------------------------
# a real (tiny) run


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    pl = pytest.importorskip("lightning.pytorch")
    torch = pytest.importorskip("torch")
    datasets = pytest.importorskip("sklearn.datasets")
    from lightning.pytorch.loggers import CSVLogger
    from torch.utils.data import DataLoader, TensorDataset

    from quest_lightning.lightning.callbacks import AORMeter, DeviceEnergyCallback, WeightTransitionMonitor
    from quest_lightning.lightning.module import QuestModule
    from quest_lightning.nn import SpikingVGG

    root = tmp_path_factory.mktemp("run")
    pl.seed_everything(0, verbose=False)
    digits = datasets.load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16
    y = torch.tensor(digits.target)
    train = DataLoader(TensorDataset(x[:256], y[:256]), batch_size=32, shuffle=True)  # 8 batches per epoch
    val = DataLoader(TensorDataset(x[1400:1464], y[1400:1464]), batch_size=64)
    model = SpikingVGG([8, "P", 16, "P"], [32], in_channels=1, image_size=8, num_classes=10)
    module = QuestModule(model, timesteps=2)
    callbacks = [WeightTransitionMonitor(stages=[("a", 1, 3), ("b", 4, 6)]), AORMeter(), DeviceEnergyCallback()]
    trainer = pl.Trainer(
        max_epochs=2,
        logger=CSVLogger(root),
        callbacks=callbacks,
        accelerator="cpu",
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
        log_every_n_steps=2,
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: one thread is several times faster than contended ones
    try:
        trainer.fit(module, train, val)
    finally:
        torch.set_num_threads(threads)
    return root


def test_report_of_a_real_run(tiny_run: Path) -> None:
    summary_path = find_summary(tiny_run)  # below root/lightning_logs/version_0
    assert summary_path.name == SUMMARY_FILE and summary_path.parent != tiny_run
    assert (summary_path.parent / "metrics.csv").is_file()
    patterns = read_summary(summary_path).devices[0].patterns
    assert len(patterns) > MANY_PATTERNS  # skmtj7 at 2 bits, all states: the sorted-distribution path

    page = build_report(tiny_run)
    assert page == tiny_run / "report" / REPORT_FILE

    text = check_page(page, FULL_RUN_FIGURES)
    assert "Skipped" not in text  # every part of the summary was there
    for needle in ("skmtj7", "illustrative", "ANN / QUEST", "DIET-SNN / QUEST", "first-layer convention", "pJ"):
        assert needle in text
    assert "layer 1 charged as" in text  # the compute convention, in the caption and the table
    assert "last val/acc" in text  # key numbers from the summary's curves


# --------------------------------------------------------------------------------------------------------------------
# hand-written summaries


def test_missing_sections_are_skipped_and_said_so(tmp_path: Path) -> None:
    write_run(tmp_path / "run", minimal_summary())
    out = tmp_path / "out"
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):  # through the CLI, with --out-dir
        assert quest_lightning_main(["report", str(tmp_path / "run"), "--out-dir", str(out)]) == 0
    page = out / REPORT_FILE
    assert buffer.getvalue().strip() == str(page)
    assert not (tmp_path / "run" / "report").exists()

    text = check_page(
        page,
        {"activity-spike_rate", "activity-sparsity", "activity-aor", "write-energy-a", "compute-energy-train"},
    )
    assert "No val records" in text
    assert "Skipped: no metrics.csv" in text
    assert "Skipped: the summary has no transition counts" in text
    assert "Skipped: the summary has no read energy" in text
    assert "grouped bars" in text  # 6 patterns: the labelled bar chart
    assert "layer 1 charged as 1000 MACs" in text
    assert "4.6×" in text and "2×" in text


def test_empty_summary_gives_a_page_without_figures(tmp_path: Path) -> None:
    write_run(tmp_path, RunSummary(bits=None))
    text = check_page(build_report(tmp_path), set())
    assert text.count("Skipped") == 6  # training, activity, transitions, write, read, compute
    assert "holds no device description" in text


def test_malformed_section_is_reported_not_fatal(tmp_path: Path, monkeypatch) -> None:
    write_run(tmp_path, minimal_summary())

    def cannot_draw(*args, **kwargs):
        raise ValueError("not a record")

    monkeypatch.setattr(plots, "activity_figure", cannot_draw)  # a part that cannot be drawn
    with pytest.warns(UserWarning, match="Activity"):
        page = build_report(tmp_path)
    text = check_page(page, {"write-energy-a", "compute-energy-train"})
    assert "could not be built" in text


def test_malformed_summary_is_refused_with_a_clear_message(tmp_path: Path, capsys) -> None:
    data = minimal_summary().to_dict()
    data["activity"] = {"train": [{"epoch": 0, "layers": ["not a record"], "neurons": []}]}
    (tmp_path / SUMMARY_FILE).write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(SummaryFormatError, match="LayerActivity: expected a JSON object"):
        build_report(tmp_path)
    assert quest_lightning_main(["report", str(tmp_path)]) == 1
    assert "LayerActivity: expected a JSON object, got str" in capsys.readouterr().err
    assert not (tmp_path / "report").exists()  # refused before anything was written


def test_find_summary_takes_the_newest_and_explains_a_miss(tmp_path: Path) -> None:
    old = write_run(tmp_path / "lightning_logs" / "version_0", RunSummary(bits=None))
    new = write_run(tmp_path / "lightning_logs" / "version_1", RunSummary(bits=None))
    os.utime(old, (1_000_000, 1_000_000))
    os.utime(new, (2_000_000, 2_000_000))
    assert find_summary(tmp_path) == new
    assert find_summary(old) == old
    os.utime(old, (3_000_000, 3_000_000))
    assert find_summary(tmp_path) == old
    with pytest.raises(FileNotFoundError, match="does not exist"):
        find_summary(tmp_path / "empty")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="DeviceEnergyCallback"):
        find_summary(tmp_path / "empty")


def test_metrics_csv_and_joule_formatting(tmp_path: Path) -> None:
    path = tmp_path / "metrics.csv"
    path.write_text("epoch,step,train/loss,val/acc\n0,4,2.3,\n0,7,,0.25\n", encoding="utf-8")
    assert read_metrics_csv(path) == [
        {"epoch": 0.0, "step": 4.0, "train/loss": 2.3, "val/acc": None},
        {"epoch": 0.0, "step": 7.0, "train/loss": None, "val/acc": 0.25},
    ]
    assert format_joules(4.718e-12) == "4.72 pJ"
    assert format_joules(3.2e-8) == "32 nJ"
    assert format_joules(1.5e-6) == "1.5 µJ"
    assert format_joules(9e-13) == "900 fJ"
    assert format_joules(None) == "–"


# --------------------------------------------------------------------------------------------------------------------
# the report folder: our own files only


def test_a_new_report_replaces_its_own_figures_and_nothing_else(tmp_path: Path) -> None:
    summary = minimal_summary()
    write_run(tmp_path / "run", summary)
    page = build_report(tmp_path / "run")
    first = {p.name for p in report_files(page.parent)}
    assert {"report.html", "write-energy-a.png", "activity-aor.png"} <= first
    (page.parent / "notes.txt").write_text("mine")  # a file of the user's, next to the report
    summary = replace(summary, activity={})  # the next run has no activity records: its figures must not stay behind
    write_run(tmp_path / "run", summary)
    page = build_report(tmp_path / "run")
    check_page(page, {"write-energy-a", "compute-energy-train"})  # exactly these PNGs in the folder
    assert (page.parent / "notes.txt").read_text() == "mine"
    manifest = json.loads((page.parent / MANIFEST_FILE).read_text())
    assert sorted(manifest["files"]) == ["compute-energy-train.png", "report.html", "write-energy-a.png"]


def test_out_dir_that_is_not_ours_is_refused_unless_forced(tmp_path: Path, capsys) -> None:
    write_run(tmp_path / "run", minimal_summary())
    out = tmp_path / "mine"
    out.mkdir()
    (out / "report.html").write_text("my own page")
    assert quest_lightning_main(["report", str(tmp_path / "run"), "--out-dir", str(out)]) == 1
    err = capsys.readouterr().err
    assert "is not empty" in err and "--force" in err
    assert (out / "report.html").read_text() == "my own page" and sorted(p.name for p in out.iterdir()) == [
        "report.html"
    ]
    with pytest.raises(FileExistsError, match="holds no report of ours"):
        build_report(tmp_path / "run", out_dir=out)
    assert quest_lightning_main(["report", str(tmp_path / "run"), "--out-dir", str(out), "--force"]) == 0
    assert (out / "report.html").read_text().startswith("<!DOCTYPE html>")
    assert quest_lightning_main(["report", str(tmp_path / "run"), "--out-dir", str(out)]) == 0  # ours now


def test_a_failed_run_says_so_in_its_report(tmp_path: Path) -> None:
    write_run(tmp_path, minimal_summary())
    failure = {"status": "failed", "stage": "fit", "epoch": 3, "global_step": 120, "error": "RuntimeError"}
    (tmp_path / FAILED_FILE).write_text(json.dumps({**failure, "message": "out of memory"}))
    text = build_report(tmp_path).read_text(encoding="utf-8")
    assert "This run did not finish: failed in fit at epoch 3, step 120, with RuntimeError: out of memory" in text
