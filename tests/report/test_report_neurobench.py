"""The NeuroBench section of the report: one table in NeuroBench's vocabulary from the run record, each figure the
counts could not give shown as not computed with its reason; a record without NeuroBench metrics says how to get
them."""

from __future__ import annotations

import dataclasses
import html
import re

from report_helpers import minimal_summary, write_run

from quest_lightning.report import build_report
from quest_lightning.report.sections.neurobench import NO_RECORD, NOT_COMPUTED
from quest_lightning.summary import NeuroBenchRecord

WHY = "Effective_MACs: layer 'model.features.0.layer' saw analog input"


def _section(page) -> tuple[str, str]:
    """The section's HTML, and its text with every tag replaced by a cell separator."""
    raw = page.read_text(encoding="utf-8")
    start = raw.index('<section id="sec-neurobench">')
    body = raw[start : raw.index("</section>", start)]
    return body, re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " | ", body)))


def test_the_section_shows_one_table_in_neurobench_vocabulary(tmp_path):
    record = NeuroBenchRecord(
        stage="val", epoch=1, samples=50, effective_acs=2711.76, effective_macs=None, dense=35712.0,
        activation_sparsity=0.9233928571428571, connection_sparsity=0.5, footprint_bytes=9648, deployed_bytes=1480,
        notes=(WHY,),
    )  # fmt: skip
    write_run(tmp_path, dataclasses.replace(minimal_summary(), neurobench=record))
    body, text = _section(build_report(tmp_path))
    assert body.count("<table") == 1
    cells = [c.strip() for c in text.split("|") if c.strip()]
    row = cells.index("Effective_ACs")
    assert cells[row - 1 : row + 3] == ["SynapticOperations", "Effective_ACs", "2,711.76", "per sample"]
    row = cells.index("Effective_MACs")
    assert cells[row + 1] == NOT_COMPUTED
    assert cells[cells.index("Dense") + 1] == "35,712.00"
    assert cells[cells.index("ActivationSparsity") + 1] == "0.923393"
    assert cells[cells.index("ConnectionSparsity") + 1] == "0.500000"
    assert "9,648" in cells and "1,480" in cells and "deployed" in cells
    assert "val epoch 1, 50 samples" in text and WHY in text and "Nature Communications" in text


def test_a_record_without_neurobench_metrics_says_how_to_get_them(tmp_path):
    write_run(tmp_path, minimal_summary())
    body, text = _section(build_report(tmp_path))
    assert NO_RECORD in text and "<table" not in body
