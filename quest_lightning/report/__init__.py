"""``quest-lightning report``: turn a finished run's ``quest_summary.json`` into PNG plots and one HTML page.

The report reads only files: the run record written by
:class:`~quest_lightning.lightning.callbacks.DeviceEnergyCallback`, through the typed
:func:`~quest_lightning.summary.read_summary` (``summary-v2``, or a ``summary-v1`` file of 0.1.0, flagged), and,
when they lie next to it, a variation sweep (``variation_sweep.json``, ``quest-lightning sweep``) and, for older
summaries without per-epoch curves, Lightning's ``metrics.csv``. It needs neither the model nor W&B nor the network.
Example::

    from quest_lightning.report import build_report

    page = build_report("lightning_logs/version_0")  # -> lightning_logs/version_0/report/report.html

or ``quest-lightning report lightning_logs/version_0 [--out-dir DIR]``.

* :mod:`~quest_lightning.report.build`: :func:`build_report` and :func:`build_sections`;
* :mod:`~quest_lightning.report.inputs`: finding the summary; reading the sweep, ``metrics.csv`` and the failure;
* :mod:`~quest_lightning.report.headline`: each device's headline figures (also printed at the end of a recipe fit);
* :mod:`~quest_lightning.report.sections`: the page's sections; :mod:`~quest_lightning.report.plots`: the figures;
* :mod:`~quest_lightning.report.html`: the self-contained HTML page.
"""

from quest_lightning.report.build import (
    MANIFEST_FILE,
    REPORT_FILE,
    build_report,
    build_sections,
    flags_banner,
    report_files,
)
from quest_lightning.report.headline import DeviceHeadline, device_headline, device_headlines, last_activity
from quest_lightning.report.html import Banner, Plot, Section, Table
from quest_lightning.report.inputs import (
    FAILED_FILE,
    METRICS_FILE,
    SUMMARY_FILE,
    find_summary,
    read_metrics_csv,
    read_sweep,
)
from quest_lightning.report.sections import SECTION_TITLES

__all__ = [
    "FAILED_FILE",
    "MANIFEST_FILE",
    "METRICS_FILE",
    "REPORT_FILE",
    "SECTION_TITLES",
    "SUMMARY_FILE",
    "Banner",
    "DeviceHeadline",
    "Plot",
    "Section",
    "Table",
    "build_report",
    "build_sections",
    "device_headline",
    "device_headlines",
    "find_summary",
    "flags_banner",
    "last_activity",
    "read_metrics_csv",
    "read_sweep",
    "report_files",
]
