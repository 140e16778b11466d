"""``quest-lightning report``: turn a finished run's ``quest_summary.json`` into PNG plots and one HTML page.

The report reads only files: the JSON summary written by
:class:`~quest_lightning.lightning.callbacks.DeviceEnergyCallback` and, when it lies next to it, Lightning's
``metrics.csv`` (``CSVLogger``). It needs neither the model nor W&B nor the network. Example::

    from quest_lightning.report import build_report

    page = build_report("lightning_logs/version_0")  # -> lightning_logs/version_0/report/report.html

or ``quest-lightning report lightning_logs/version_0 [--out-dir DIR]``.

* :mod:`~quest_lightning.report.build`: :func:`build_report` and :func:`build_sections`;
* :mod:`~quest_lightning.report.inputs`: finding and reading the summary and ``metrics.csv``;
* :mod:`~quest_lightning.report.sections`: the page's sections; :mod:`~quest_lightning.report.plots`: the figures;
* :mod:`~quest_lightning.report.html`: the self-contained HTML page.
"""

from quest_lightning.report.build import MANIFEST_FILE, REPORT_FILE, build_report, build_sections, report_files
from quest_lightning.report.html import Plot, Section, Table
from quest_lightning.report.inputs import FAILED_FILE, METRICS_FILE, SUMMARY_FILE, find_summary, read_metrics_csv
from quest_lightning.report.sections import SECTION_TITLES

__all__ = [
    "FAILED_FILE",
    "MANIFEST_FILE",
    "METRICS_FILE",
    "REPORT_FILE",
    "SECTION_TITLES",
    "SUMMARY_FILE",
    "Plot",
    "Section",
    "Table",
    "build_report",
    "build_sections",
    "find_summary",
    "read_metrics_csv",
    "report_files",
]
