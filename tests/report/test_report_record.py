"""The report reads the typed run record: every flag at the top, several devices side by side, a silent network's
ratios never shown as savings, per-epoch curves whatever the logger, input classification, skipped layers, writes per
cell and endurance, the variation sweep; an older summary-v1 file still gives a flagged report."""

from __future__ import annotations

import html
import re
import shutil
from pathlib import Path

import pytest
from report_helpers import FLAGS, SIX, check_page, full_summary, minimal_summary, write_run

from quest_lightning.cli import main as quest_lightning_main
from quest_lightning.devices.patterns import format_mapping
from quest_lightning.hardware import SWEEP_FILE, VariationSweep
from quest_lightning.report import build_report, device_headlines
from quest_lightning.report.plots import SILENT_NOTE

V1 = Path(__file__).parents[1] / "data" / "summary-v1.json"  # written by quest-lightning 0.1.0


def _text(page: Path) -> str:
    """The page's text as a reader sees it: tags dropped, entities decoded, spaces collapsed."""
    raw = page.read_text(encoding="utf-8")
    raw = re.sub(r"<style>.*?</style>", "", raw, flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", raw)))


def _sweep() -> VariationSweep:
    """Pattern 0 loses more accuracy at σ = 0.1 than pattern 2: the best pattern there is pattern 2."""
    accuracy = (((0.5, 0.5), (0.4, 0.3)), ((0.5, 0.5), (0.45, 0.45)))
    return VariationSweep("toy", "d2d_sigma", (0.0, 0.1), (SIX[0], SIX[2]), accuracy, 0.5, 2, 0, "nearest level")


@pytest.fixture(scope="module")
def full_page(tmp_path_factory) -> tuple[Path, str]:
    folder = tmp_path_factory.mktemp("full")
    write_run(folder, full_summary())
    _sweep().save(folder)
    page = build_report(folder)
    return page, page.read_text(encoding="utf-8")


def test_every_part_of_the_record_has_its_figure(full_page) -> None:
    page, _ = full_page
    check_page(
        page,
        {
            "training", "activity-spike_rate", "activity-sparsity", "activity-aor", "transitions-a", "trajectories-a",
            "write-energy-a", "write-energy-toy2-a", "writes-per-cell", "endurance", "read-energy-epochs",
            "read-energy-val", "read-energy-toy2-epochs", "read-energy-toy2-val", "compute-energy-val",
            "devices-energy", "variation-sweep",
        },
    )  # fmt: skip
    text = _text(page)
    assert "Skipped" not in text
    # toy2 has the same counts, CMOS and convention: its compute comparison is not drawn twice, and the page says so
    assert "toy2: the same comparison as toy" in text


def test_every_flag_is_in_a_box_at_the_top(full_page) -> None:
    _, raw = full_page
    box = raw[raw.index('<div class="flags" id="flags">') : raw.index("<nav>")]
    assert "2 flags" in box
    for flag in FLAGS:
        assert f"<code>{flag.code}</code>" in box
        assert html.escape(flag.message) in box
    assert "(stage val, epoch 1)" in box and "(stage train, epoch 0)" in box


def test_a_silent_network_ratio_is_never_shown_as_a_saving(full_page) -> None:
    page, _ = full_page
    text = _text(page)
    ratios = re.findall(r"\d(?:\.\d+)?×( \(silent network: not a saving\))?", text)
    # ANN / QUEST = 27.6/6 = 4.6 and DIET / QUEST = 12/6 = 2, per device, in the key numbers, the compute table and
    # the devices table: every one carries the flag
    assert len(ratios) >= 8 and all(ratios)
    assert "4.6× (silent network: not a saving)" in text and "2× (silent network: not a saving)" in text
    assert SILENT_NOTE in text


def test_devices_side_by_side(full_page) -> None:
    page, _ = full_page
    text = _text(page)
    table = text[text.index("Energy per sample by device") :]
    best = format_mapping(SIX[2])  # the cheapest pattern of the hand-made energies (factor 1.0)
    # toy: write 2 pJ, read 1 pJ per sample at the best pattern; toy2: three times that
    assert f"toy 6 a: {best} 2 pJ {best} 2 pJ val 1: {best} 1 pJ {best} 1 pJ" in table
    assert f"toy2 6 a: {best} 6 pJ {best} 6 pJ val 1: {best} 3 pJ {best} 3 pJ" in table
    heads = device_headlines(full_summary())
    assert [h.name for h in heads] == ["toy", "toy2"] and heads[1].write_best == (best, pytest.approx(6e-12))


def test_input_classification_skipped_layers_and_writes_per_cell(full_page) -> None:
    page, _ = full_page
    text = _text(page)
    assert "override (the layer's input_kind)" in text  # the silent val epoch's inner layer
    assert "features.0 QuantConv2d no analog recorded (what the layer saw)" in text
    assert "Synaptic layers left out of the counts" in text
    assert "train 0 head ConvTranspose2d transposed convolutions are not counted" in text
    assert "per sample seen" in text and "samples seen" in text
    # writes per cell: mean 1.5, the four percentiles and the max, over 8 steps = 2 epochs
    assert "features.1 100 150 1.5 1 3 6 7 7" in text and "p99.9" in text
    # endurance: 1e6 cycles, at most 7 writes in 2 epochs -> 3.5 per epoch -> 1e6 / 3.5 = 2.857e+05 epochs
    assert "features.1 7 3.5 2.857e+05 2.857e+05 0" in text
    assert "the first cell wears out after 2.857e+05 epochs, in features.1" in text


def test_curves_come_from_the_summary_and_the_sweep_is_drawn(full_page) -> None:
    page, _ = full_page
    text = _text(page)
    assert "last val/acc summary curves 0.35" in text and "last train/loss summary curves 1.5" in text
    assert "as the run summary recorded them (whatever the logger)" in text
    sweep = text[text.index("Test accuracy per R-S pattern") :]
    assert f"{format_mapping(SIX[0])} 50.00 % ± 0.00 35.00 % ± 7.07" in sweep  # std of (0.4, 0.3), ddof 1
    assert f"best pattern {format_mapping(SIX[0])} {format_mapping(SIX[2])}" in sweep  # a tie at 0 goes to the first
    assert SWEEP_FILE in text


def test_a_saved_sweep_loads_back_and_is_never_overwritten_by_mistake(tmp_path: Path) -> None:
    path = _sweep().save(tmp_path)
    assert path == tmp_path / SWEEP_FILE and VariationSweep.load(tmp_path) == VariationSweep.load(path) == _sweep()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        _sweep().save(tmp_path)
    other = VariationSweep("toy", "c2c_sigma", (0.2,), (SIX[1],), (((0.1,),),), 0.5, 1, 3, "nearest level")
    assert VariationSweep.load(other.save(tmp_path, overwrite=True)) == other
    (tmp_path / SWEEP_FILE).write_text('{"format": "something-else"}')
    with pytest.raises(ValueError, match="not a variation sweep of format"):
        VariationSweep.load(tmp_path)


def test_an_unreadable_sweep_is_said_not_fatal(tmp_path: Path) -> None:
    write_run(tmp_path, minimal_summary())
    (tmp_path / SWEEP_FILE).write_text('{"format": "quest-lightning/variation-sweep-v1", "device": "toy"}')
    text = _text(build_report(tmp_path))
    assert "The variation sweep cannot be read" in text and "missing key 'vary'" in text


def test_metrics_csv_gives_the_curves_of_a_summary_without_them(tmp_path: Path) -> None:
    write_run(tmp_path, minimal_summary())
    (tmp_path / "metrics.csv").write_text("epoch,step,train/loss,val/acc\n0,4,2.3,\n0,7,,0.25\n", encoding="utf-8")
    page = build_report(tmp_path)
    check_page(
        page,
        {"training", "activity-spike_rate", "activity-sparsity", "activity-aor", "write-energy-a",
         "compute-energy-train"},
    )  # fmt: skip
    text = _text(page)
    assert "last val/acc metrics.csv 0.25" in text and "Training metrics (metrics.csv)" not in text
    assert "the summary records no per-epoch curves" in text


def test_a_v1_summary_gives_a_flagged_report(tmp_path: Path, capsys) -> None:
    shutil.copy(V1, tmp_path / "quest_summary.json")
    assert quest_lightning_main(["report", str(tmp_path)]) == 0
    page = Path(capsys.readouterr().out.strip())
    check_page(
        page,
        {"activity-spike_rate", "activity-sparsity", "activity-aor", "transitions-all-epoch0",
         "trajectories-all-epoch0", "write-energy-all-epoch0", "read-energy-epochs", "read-energy-train",
         "read-energy-val", "compute-energy-train", "compute-energy-val"},
    )  # fmt: skip
    raw = page.read_text(encoding="utf-8")
    box = raw[raw.index('<div class="flags" id="flags">') : raw.index("<nav>")]
    assert "<code>summary_v1</code>" in box and "<code>v1_write_divisor</code>" in box
    # 0.1.0 divided by steps x batch = 28 but 30 samples were seen: 30 / 28 = 1.0714
    assert "so it is 1.0714x the exact figure" in box
