"""Tests of the run report: a tiny real run end to end, and hand-written summaries for the missing-section paths."""

from __future__ import annotations

import base64
import contextlib
import html
import io
import json
import os
import re
from pathlib import Path

import pytest

from quest_lightning.cli import main as quest_lightning_main
from quest_lightning.report import (
    FAILED_FILE,
    MANIFEST_FILE,
    REPORT_FILE,
    SECTION_TITLES,
    SUMMARY_FILE,
    build_report,
    find_summary,
    read_metrics_csv,
    report_files,
)
from quest_lightning.report.plots import MANY_PATTERNS, format_joules

IMG = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"')
FIGURE_ID = re.compile(r'<figure id="fig-([^"]+)">')
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
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


def _check_page(page: Path, expected_ids: set[str]) -> str:
    """The page embeds exactly the expected figures, each equal to its non-trivial PNG file next to it."""
    text = page.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    assert "<script" not in text and 'src="http' not in text and "<link" not in text  # self-contained
    ids = FIGURE_ID.findall(text)
    images = IMG.findall(text)
    assert set(ids) == expected_ids and len(ids) == len(expected_ids)
    assert len(images) == len(expected_ids)
    pngs = {p.stem: p for p in page.parent.glob("*.png")}
    assert set(pngs) == expected_ids
    for plot_id, data in zip(ids, images, strict=True):
        raw = base64.b64decode(data)
        assert raw.startswith(PNG_MAGIC)
        assert raw == pngs[plot_id].read_bytes()
        assert len(raw) > 10_000, f"{plot_id}.png is suspiciously small ({len(raw)} bytes)"
    for sid, title in SECTION_TITLES.items():
        assert f'<section id="sec-{sid}">\n<h2>{html.escape(title)}</h2>' in text
    return text


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
    patterns = json.loads(summary_path.read_text())["patterns"]
    assert len(patterns) > MANY_PATTERNS  # skmtj7 at 2 bits, all states: the sorted-distribution path

    page = build_report(tiny_run)
    assert page == tiny_run / "report" / REPORT_FILE

    text = _check_page(page, FULL_RUN_FIGURES)
    assert "Skipped" not in text  # every part of the summary was there
    for needle in ("skmtj7", "illustrative", "ANN / QUEST", "DIET-SNN / QUEST", "first-layer convention", "pJ"):
        assert needle in text
    assert "layer 1 charged as" in text  # the compute convention, in the caption and the table
    assert "last val/acc" in text  # key numbers from metrics.csv


# --------------------------------------------------------------------------------------------------------------------
# hand-written summaries


def _activity_record(epoch: int) -> dict:
    layers = [
        {"layer": "model.features.0.layer", "quantized": False, "input_layer": True, "aor": 0.8,
         "synaptic_rate": 0.8, "sparsity": None, "ops": 1000.0, "level_ops_per_sample": [0, 0, 0],
         "samples": 10.0, "timesteps": 2.0},
        {"layer": "model.features.1.layer", "quantized": True, "input_layer": False, "aor": 0.1 + 0.01 * epoch,
         "synaptic_rate": 0.2, "sparsity": 0.6, "ops": 5000.0, "level_ops_per_sample": [10.0, 30.0, 12.0],
         "samples": 10.0, "timesteps": 2.0},
    ]  # fmt: skip
    neurons = [{"neuron": "model.features.0.neuron", "rate": 0.5 - 0.05 * epoch, "rate_per_step": 0.25}]
    return {"epoch": epoch, "step": 5 * (epoch + 1), "layers": layers, "neurons": neurons, "timesteps": 2,
            "aor_mean": 0.1 + 0.01 * epoch, "sparsity_mean": 0.6, "spike_rate_mean": 0.5 - 0.05 * epoch}  # fmt: skip


def _pattern_report(kind: str, scale: float) -> dict:
    def one(scope: str, factor: float) -> dict:
        values = [factor * scale * (1 + 0.1 * i) for i in (3, 1, 0, 4, 2, 5)]
        best = min(range(6), key=values.__getitem__)
        return {"kind": kind, "scope": scope, "unit": "J/sample", "best_index": best, "best_mapping": [0, 3, 6],
                "best_label": "p", "best_j": values[best], "worst_j": max(values), "per_pattern_j": values}  # fmt: skip

    return {"kind": kind, "unit": "J/sample", "normalisation": {"steps": 3, "batch_size": 8}, "device": "skmtj7",
            "bits": 2, "per_layer": {"model.features.1.layer": one("model.features.1.layer", 1.0)},
            "total": one("total", 1.0)}  # fmt: skip


def _minimal_summary() -> dict:
    """Activity of train only (no val), write energy of one stage (6 patterns), compute of train; nothing else."""
    compute = {
        "unit": "J/sample", "timesteps": 2, "first_layer": "mac",
        "convention": "layer 1 charged as 1000 MACs at E_MAC (first_layer='mac')",
        "layers": ["model.features.0.layer", "model.features.1.layer"],
        "ann": {"total_j": 2.76e-8, "per_layer_j": [4.6e-9, 2.3e-8]},
        "diet_snn": {"total_j": 1.2e-8, "per_layer_j": [4.6e-9, 7.4e-9]},
        "quest": {"total_j": 6.0e-9, "per_layer_j": [4.6e-9, 1.4e-9]},
        "ann_over_quest": 4.6, "diet_over_quest": 2.0,
    }  # fmt: skip
    return {
        "format": "quest-lightning/summary-v1",
        "device": {"name": "toy", "resistances_ohm": [1e3, 2e3, 3e3], "illustrative": True, "source": "test"},
        "bits": 2,
        "patterns": [
            f"-1→R{a}, 0→R{b}, +1→R{c}"
            for a, b, c in [(0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)]
        ],  # fmt: skip
        "cmos": {"name": "45nm_fp32", "e_mac_j": 4.6e-12, "e_ac_j": 9e-13},
        "activity": {"train": [_activity_record(0), _activity_record(1)]},
        "energy": {
            "write": {
                "a": {
                    "unit": "J/sample",
                    "steps": 3,
                    "batch_size": 8,
                    "pattern_index": 2,
                    "pattern": "-1→R1, 0→R0, +1→R2",
                    "report": _pattern_report("write", 2e-12),
                }
            },
            "compute": {"train": compute},
        },  # fmt: skip
    }


def _write_summary(folder: Path, summary: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / SUMMARY_FILE
    path.write_text(json.dumps(summary), encoding="utf-8")
    return path


def test_missing_sections_are_skipped_and_said_so(tmp_path: Path) -> None:
    _write_summary(tmp_path / "run", _minimal_summary())
    out = tmp_path / "out"
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):  # through the CLI, with --out-dir
        assert quest_lightning_main(["report", str(tmp_path / "run"), "--out-dir", str(out)]) == 0
    page = out / REPORT_FILE
    assert buffer.getvalue().strip() == str(page)
    assert not (tmp_path / "run" / "report").exists()

    text = _check_page(
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
    _write_summary(tmp_path, {})
    text = _check_page(build_report(tmp_path), set())
    assert text.count("Skipped") == 6  # training, activity, transitions, write, read, compute
    assert "holds no device description" in text


def test_malformed_section_is_reported_not_fatal(tmp_path: Path) -> None:
    summary = _minimal_summary()
    summary["activity"] = {"train": [{"epoch": 0, "layers": ["not a record"], "neurons": []}]}
    _write_summary(tmp_path, summary)
    with pytest.warns(UserWarning, match="Activity"):
        page = build_report(tmp_path)
    text = _check_page(page, {"write-energy-a", "compute-energy-train"})
    assert "could not be built" in text


def test_find_summary_takes_the_newest_and_explains_a_miss(tmp_path: Path) -> None:
    old = _write_summary(tmp_path / "lightning_logs" / "version_0", {})
    new = _write_summary(tmp_path / "lightning_logs" / "version_1", {})
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
    summary = _minimal_summary()
    _write_summary(tmp_path / "run", summary)
    page = build_report(tmp_path / "run")
    first = {p.name for p in report_files(page.parent)}
    assert {"report.html", "write-energy-a.png", "activity-aor.png"} <= first
    (page.parent / "notes.txt").write_text("mine")  # a file of the user's, next to the report
    del summary["activity"]  # the next run has no activity records: its figures must not stay behind
    _write_summary(tmp_path / "run", summary)
    page = build_report(tmp_path / "run")
    _check_page(page, {"write-energy-a", "compute-energy-train"})  # exactly these PNGs in the folder
    assert (page.parent / "notes.txt").read_text() == "mine"
    manifest = json.loads((page.parent / MANIFEST_FILE).read_text())
    assert sorted(manifest["files"]) == ["compute-energy-train.png", "report.html", "write-energy-a.png"]


def test_out_dir_that_is_not_ours_is_refused_unless_forced(tmp_path: Path, capsys) -> None:
    _write_summary(tmp_path / "run", _minimal_summary())
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
    _write_summary(tmp_path, _minimal_summary())
    failure = {"status": "failed", "stage": "fit", "epoch": 3, "global_step": 120, "error": "RuntimeError"}
    (tmp_path / FAILED_FILE).write_text(json.dumps({**failure, "message": "out of memory"}))
    text = build_report(tmp_path).read_text(encoding="utf-8")
    assert "This run did not finish: failed in fit at epoch 3, step 120, with RuntimeError: out of memory" in text
