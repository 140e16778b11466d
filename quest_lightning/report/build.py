"""The report builder: reads a run summary (typed, :func:`~quest_lightning.summary.read_summary`), draws its figures
section by section and writes the HTML page, with the run's flags in a box at the top."""

from __future__ import annotations

import datetime as _dt
import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from quest_lightning.report.headline import flag_text
from quest_lightning.report.html import Banner, Section, render_page
from quest_lightning.report.inputs import (
    FAILED_FILE,
    METRICS_FILE,
    SUMMARY_FILE,
    find_summary,
    read_failure,
    read_metrics_csv,
    read_sweep,
    sweep_path,
)
from quest_lightning.report.sections import (
    SECTION_TITLES,
    FigureWriter,
    activity_section,
    compute_energy_section,
    devices_section,
    endurance_section,
    key_numbers_section,
    neurobench_section,
    read_energy_section,
    run_section,
    sweep_section,
    training_cost_section,
    training_section,
    transitions_section,
    write_energy_section,
)
from quest_lightning.summary import RunSummary, read_summary

if TYPE_CHECKING:
    from quest_lightning.hardware import VariationSweep

__all__ = ["MANIFEST_FILE", "REPORT_FILE", "build_report", "build_sections", "flags_banner", "report_files"]

REPORT_FILE = "report.html"
"""The page's file name in the report folder."""
MANIFEST_FILE = "report_manifest.json"
"""The list of files a report wrote into its folder, so that the next report replaces exactly those."""

Metrics = list[dict[str, float | None]]


def _guarded(sid: str, make: Callable[[], Section]) -> Section:
    try:
        return make()
    except Exception as err:  # a part of the summary that cannot be drawn must not cost the rest of the report
        title = SECTION_TITLES[sid]
        warnings.warn(f"report section {title!r} failed: {type(err).__name__}: {err}", stacklevel=3)
        sec = Section(sid, title)
        sec.warnings.append(f"This section could not be built: {type(err).__name__}: {err}")
        return sec


def _sweep(summary_path: Path) -> tuple[VariationSweep | None, Path | None, str | None]:
    """The run's variation sweep, its path, and why it cannot be read (when it cannot)."""
    path = sweep_path(summary_path)
    try:
        return read_sweep(summary_path), (path if path.is_file() else None), None
    except (OSError, ValueError) as err:
        return None, path, str(err)


def _draw(
    b: FigureWriter, summary: RunSummary, metrics: Metrics | None, summary_path: Path, metrics_path: Path | None
) -> list[Section]:
    sweep, found, problem = _sweep(summary_path)
    makers: dict[str, Callable[[], Section]] = {
        "run": lambda: run_section(summary, summary_path, metrics_path, found),
        "key-numbers": lambda: key_numbers_section(summary, metrics),
        "training": lambda: training_section(b, summary, metrics, metrics_path),
        "training-cost": lambda: training_cost_section(b, summary),
        "activity": lambda: activity_section(b, summary),
        "transitions": lambda: transitions_section(b, summary),
        "write-energy": lambda: write_energy_section(b, summary),
        "endurance": lambda: endurance_section(b, summary),
        "read-energy": lambda: read_energy_section(b, summary),
        "compute-energy": lambda: compute_energy_section(b, summary),
        "neurobench": lambda: neurobench_section(summary),
        "devices": lambda: devices_section(b, summary),
        "sweep": lambda: sweep_section(b, summary, sweep, found),
    }
    sections = [_guarded(sid, make) for sid, make in makers.items()]
    if problem is not None:
        sections[-1].warnings.append(f"The variation sweep cannot be read: {problem}")
    return sections


def build_sections(
    summary: RunSummary,
    out_dir: str | Path,
    metrics: Metrics | None = None,
    summary_path: str | Path = SUMMARY_FILE,
    metrics_path: str | Path | None = None,
    dpi: int = 100,
) -> list[Section]:
    """Draw every figure of ``summary`` into ``out_dir`` (PNG) and return the page's sections.

    Sections whose data are missing are kept, with a note saying what was skipped and why. The variation sweep is
    read from beside ``summary_path`` when it is there. Unlike :func:`build_report`, this neither checks nor records
    what ``out_dir`` holds.

    Args:
        summary: The run record.
        out_dir: Where the PNGs go (created if missing).
        metrics: ``metrics.csv`` rows (:func:`~quest_lightning.report.inputs.read_metrics_csv`), the training curves
            of a summary that has none.
        summary_path: The summary's file (named in the page; the sweep is looked for next to it).
        metrics_path: The ``metrics.csv`` file (named in the page).
        dpi: The PNGs' resolution.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics_path = Path(metrics_path) if metrics_path is not None else None
    return _draw(FigureWriter(out, dpi), summary, metrics, Path(summary_path), metrics_path)


def flags_banner(summary: RunSummary) -> Banner:
    """The box at the top of the page: every flag of the run (code, where, message), or a quiet box saying there
    is none."""
    if not summary.flags:
        return Banner("No flags: nothing in this run's record needs a caveat.", alarm=False)
    n = len(summary.flags)
    title = f"{n} flag{'s' if n > 1 else ''}: read the figures below with these caveats."
    return Banner(title, [(f.code, flag_text(f)) for f in summary.flags])


def _listed(manifest: Path) -> list[str]:
    """The file names a manifest lists (plain names only: a manifest never reaches outside its folder)."""
    try:
        files = json.loads(manifest.read_text(encoding="utf-8")).get("files", [])
    except (OSError, ValueError, AttributeError):
        return []
    return [f for f in files if isinstance(f, str) and f not in ("", ".", "..") and Path(f).name == f]


def report_files(out_dir: str | Path) -> list[Path]:
    """The files the last report built in ``out_dir`` wrote (from its manifest) that are still there."""
    out = Path(out_dir)
    return [out / name for name in _listed(out / MANIFEST_FILE) if (out / name).is_file()]


def _claim(out: Path, force: bool) -> None:
    """Makes ``out`` ready for a new report: deletes the files of the report it holds (and only those), or refuses a
    non-empty folder that no report of ours wrote, unless ``force``."""
    manifest = out / MANIFEST_FILE
    if manifest.is_file():
        for path in report_files(out):
            path.unlink()
        manifest.unlink()
    elif out.is_dir() and any(out.iterdir()) and not force:
        held = sorted(p.name for p in out.iterdir())
        shown = ", ".join(held[:5]) + (", ..." if len(held) > 5 else "")
        raise FileExistsError(
            f"{out} is not empty ({shown}) and holds no report of ours ({MANIFEST_FILE}); the report would replace "
            "same-named files. Choose an empty or new folder, or pass force=True (--force) to write into it."
        )
    out.mkdir(parents=True, exist_ok=True)


def build_report(run_dir: str | Path, out_dir: str | Path | None = None, *, force: bool = False) -> Path:
    """Build the report of a finished run: PNG plots and one self-contained ``report.html``.

    The report folder keeps a manifest (``report_manifest.json``) of the files it wrote. Building again into it
    first deletes those files, so that no figure of an earlier report stays behind; other files are never touched.

    Args:
        run_dir: The run's folder (e.g. ``lightning_logs/version_0``), searched recursively for
            ``quest_summary.json`` (the newest wins), or the summary file itself. Next to the summary, a
            ``variation_sweep.json`` (``quest-lightning sweep``) adds the accuracy against device variation, and
            ``metrics.csv`` gives the training curves of an older summary that records none.
        out_dir: Where to write the PNGs and ``report.html``; default ``RUN_DIR/report``.
        force: write into a non-empty ``out_dir`` that holds no earlier report (same-named files are replaced).

    Returns:
        The path of ``report.html``.

    Raises:
        FileNotFoundError: If no summary is found.
        FileExistsError: If ``out_dir`` is not empty and holds no report of ours, and ``force`` is False.
        SummaryFormatError: If the summary is not one this version reads (a ``ValueError``; the message says how
            to regenerate it).
    """
    summary_path = find_summary(run_dir)
    summary = read_summary(summary_path)
    base = Path(run_dir) if Path(run_dir).is_dir() else summary_path.parent
    out = Path(out_dir) if out_dir is not None else base / "report"
    _claim(out, force)
    metrics_path = summary_path.with_name(METRICS_FILE)
    metrics = read_metrics_csv(metrics_path) if metrics_path.is_file() else None
    writer = FigureWriter(out, dpi=100)
    sections = _draw(writer, summary, metrics, summary_path, metrics_path if metrics is not None else None)
    failure = read_failure(summary_path)
    if failure is not None:
        sections[0].warnings.insert(
            0,
            f"This run did not finish: {failure.get('status', 'failed')} in {failure.get('stage', '?')} at epoch "
            f"{failure.get('epoch', '?')}, step {failure.get('global_step', '?')}, with {failure.get('error', '?')}: "
            f"{failure.get('message', '')} ({FAILED_FILE}). The figures show what was recorded until then.",
        )
    devices = ", ".join(dict.fromkeys(d.name for d in summary.devices))
    title = "QUEST run report" + (f": {devices}" if devices else "")
    bits = summary.bits
    stamp = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    subtitle = f"{summary_path}" + (f" · {bits}-bit weights" if bits else "") + f" · generated {stamp}"
    page = out / REPORT_FILE
    page.write_text(render_page(title, subtitle, sections, flags_banner(summary)), encoding="utf-8")
    files = [p.name for p in writer.written] + [REPORT_FILE]
    manifest = {"format": "quest-lightning/report-manifest-v1", "summary": str(summary_path), "files": files}
    (out / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return page
