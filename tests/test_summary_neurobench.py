"""The NeuroBench record of the run summary: a JSON round trip, older summary-v2 files without it, and what it
refuses (a figure missing without a reason, a sparsity that is no fraction)."""

import json

import pytest

from quest_lightning.summary import SUMMARY_FILE, NeuroBenchRecord, RunSummary, SummaryFormatError, read_summary
from quest_lightning.summary import write_summary as write


def _record(**changes):
    values = dict(
        stage="val",
        epoch=3,
        samples=50,
        effective_acs=2711.76,
        effective_macs=None,
        dense=35712.0,
        activation_sparsity=0.92,
        connection_sparsity=0.5,
        footprint_bytes=9648,
        deployed_bytes=1480,
        notes=("Effective_MACs: layer 'conv1' saw analog input",),
    )
    return NeuroBenchRecord(**{**values, **changes})


def test_the_record_round_trips_under_neurobench_names(tmp_path):
    summary = RunSummary(bits=2, neurobench=_record())
    path = tmp_path / SUMMARY_FILE
    write(path, summary)
    assert read_summary(path) == summary
    raw = json.loads(path.read_text())["neurobench"]
    assert raw["metrics"]["SynapticOperations"] == {"Effective_ACs": 2711.76, "Effective_MACs": None, "Dense": 35712.0}
    assert raw["metrics"]["Footprint"] == 9648 and raw["metrics"]["ConnectionSparsity"] == 0.5
    assert "NeuroBench" in raw["definition"]


def test_a_summary_v2_file_without_the_record_loads():
    raw = RunSummary(bits=2, neurobench=_record()).to_dict()
    raw.pop("neurobench")
    assert RunSummary.from_dict(raw).neurobench is None
    assert RunSummary.from_dict(RunSummary(bits=2).to_dict()).neurobench is None


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"notes": ()}, "None without a note"),
        ({"activation_sparsity": 1.5}, r"activation_sparsity=1.5 is not a fraction"),
        ({"dense": -1.0}, r"dense=-1.0 is negative"),
        ({"stage": "test"}, r"stage must be one of \('train', 'val'\)"),
        ({"samples": 0}, "samples=0"),
        ({"effective_acs": float("nan")}, "not a finite number"),
    ],
)
def test_a_bad_record_is_refused(changes, match):
    with pytest.raises(ValueError, match=match):
        _record(**changes)
    raw = RunSummary(bits=2, neurobench=_record()).to_dict()
    raw["neurobench"].update(changes)
    with pytest.raises(SummaryFormatError, match=match):
        RunSummary.from_dict(raw)
