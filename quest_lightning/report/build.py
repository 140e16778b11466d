"""The report builder: reads a run summary, draws its figures section by section and writes the HTML page."""

from __future__ import annotations

import datetime as _dt
import json
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from quest_lightning.report.html import Section, render_page
from quest_lightning.report.inputs import METRICS_FILE, SUMMARY_FILE, find_summary, read_metrics_csv
from quest_lightning.report.sections import (
    SECTION_TITLES,
    FigureWriter,
    activity_section,
    compute_energy_section,
    key_numbers_section,
    read_energy_section,
    run_section,
    training_section,
    transitions_section,
    write_energy_section,
)
from quest_lightning.report.sections.common import get_path

REPORT_FILE = "report.html"
"""The page's file name in the report folder."""


def _guarded(sid: str, make: Callable[[], Section]) -> Section:
    try:
        return make()
    except Exception as err:  # a malformed part of the summary must not cost the rest of the report
        title = SECTION_TITLES[sid]
        warnings.warn(f"report section {title!r} failed: {type(err).__name__}: {err}", stacklevel=3)
        sec = Section(sid, title)
        sec.warnings.append(f"This section could not be built: {type(err).__name__}: {err}")
        return sec


def build_sections(
    summary: Mapping[str, Any],
    out_dir: str | Path,
    metrics: list[dict[str, float | None]] | None = None,
    summary_path: str | Path = SUMMARY_FILE,
    metrics_path: str | Path | None = None,
    dpi: int = 100,
) -> list[Section]:
    """Draw every figure of ``summary`` into ``out_dir`` (PNG) and return the page's sections.

    Sections whose data are missing are kept, with a note saying what was skipped and why.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    b = FigureWriter(out, dpi)
    metrics_path = Path(metrics_path) if metrics_path is not None else None
    makers: dict[str, Callable[[], Section]] = {
        "run": lambda: run_section(summary, Path(summary_path), metrics_path),
        "key-numbers": lambda: key_numbers_section(summary, metrics),
        "training": lambda: training_section(b, metrics, metrics_path),
        "activity": lambda: activity_section(b, summary),
        "transitions": lambda: transitions_section(b, summary),
        "write-energy": lambda: write_energy_section(b, summary),
        "read-energy": lambda: read_energy_section(b, summary),
        "compute-energy": lambda: compute_energy_section(b, summary),
    }
    return [_guarded(sid, make) for sid, make in makers.items()]


def build_report(run_dir: str | Path, out_dir: str | Path | None = None) -> Path:
    """Build the report of a finished run: PNG plots and one self-contained ``report.html``.

    Args:
        run_dir: The run's folder (e.g. ``lightning_logs/version_0``), searched recursively for
            ``quest_summary.json`` (the newest wins), or the summary file itself. ``metrics.csv`` next to the
            summary, if any, adds the training curves.
        out_dir: Where to write the PNGs and ``report.html``; default ``RUN_DIR/report``.

    Returns:
        The path of ``report.html``.

    Raises:
        FileNotFoundError: If no summary is found.
        ValueError: If the summary is not a JSON object.
    """
    summary_path = find_summary(run_dir)
    with open(summary_path, encoding="utf-8") as f:
        summary = json.load(f)
    if not isinstance(summary, dict):
        raise ValueError(f"{summary_path} holds a JSON {type(summary).__name__}, not the object of a run summary")
    base = Path(run_dir) if Path(run_dir).is_dir() else summary_path.parent
    out = Path(out_dir) if out_dir is not None else base / "report"
    metrics_path = summary_path.with_name(METRICS_FILE)
    metrics = read_metrics_csv(metrics_path) if metrics_path.is_file() else None
    sections = build_sections(
        summary, out, metrics, summary_path=summary_path, metrics_path=metrics_path if metrics is not None else None
    )
    device = get_path(summary, "device", "name")
    title = "QUEST run report" + (f": {device}" if device else "")
    bits = summary.get("bits")
    stamp = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    subtitle = f"{summary_path}" + (f" · {bits}-bit weights" if bits else "") + f" · generated {stamp}"
    page = out / REPORT_FILE
    page.write_text(render_page(title, subtitle, sections), encoding="utf-8")
    return page
