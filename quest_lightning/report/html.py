"""The report page: one self-contained HTML file (inline CSS, PNG figures embedded as base64 data URIs)."""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Banner", "Plot", "Section", "Table", "data_uri", "render_page"]


@dataclass
class Plot:
    """A figure of the report: its PNG file, shown as ``<figure id="fig-{id}">``.

    Attributes:
        id: Identifier, unique in the page (also the PNG file's stem).
        title: Short title (the image's alt text).
        caption: What the figure shows and how it was computed.
        path: The PNG file.
    """

    id: str
    title: str
    caption: str
    path: Path


@dataclass
class Table:
    """A small table; cells are text or numbers (floats are shown with 4 significant digits)."""

    columns: list[str]
    rows: list[list[Any]]
    title: str = ""


@dataclass
class Section:
    """A part of the page, ``<section id="sec-{id}">``: an introduction, notes, tables and figures.

    ``notes`` are shown as boxes (e.g. why a figure was skipped); ``warnings`` as highlighted boxes.
    """

    id: str
    title: str
    intro: str = ""
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    plots: list[Plot] = field(default_factory=list)


@dataclass
class Banner:
    """The box at the top of the page, above the table of contents (``<div id="flags">``): what the reader must see
    before any figure.

    Attributes:
        title: The box's heading.
        items: ``(label, text)`` lines; the label is shown as code (e.g. a flag's code).
        alarm: A highlighted (red) box; otherwise a quiet one (e.g. "no flags").
    """

    title: str
    items: list[tuple[str, str]] = field(default_factory=list)
    alarm: bool = True


_CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; margin: 0 auto; max-width: 1200px;
       padding: 1em 2em 3em; color: #222; line-height: 1.45; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 2px solid #ddd; padding-bottom: 0.2em; margin-top: 2em; }
h3 { margin-bottom: 0.3em; }
.sub { color: #666; margin-top: 0; }
nav ol { columns: 2; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f4f4f4; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
figure { margin: 1em 0 2em; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #444; font-size: 0.9em; max-width: 1000px; }
.note { background: #f3f6fa; border-left: 4px solid #7a9cc6; padding: 0.4em 0.8em; margin: 0.5em 0; }
.warn { background: #fff6e0; border-left: 4px solid #e0a800; padding: 0.4em 0.8em; margin: 0.5em 0; }
code { background: #f4f4f4; padding: 0 0.2em; }
.flags { background: #fdecea; border: 2px solid #d93025; border-radius: 4px; padding: 0.5em 1em; margin: 1em 0; }
.flags.quiet { background: #eef7ee; border-color: #5a9e5a; }
.flags ul { margin: 0.3em 0 0; padding-left: 1.2em; } .flags li { margin: 0.2em 0; }
"""


def data_uri(path: str | Path) -> str:
    """``data:image/png;base64,...`` of a PNG file."""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def _cell(value: Any) -> tuple[str, bool]:
    if value is None:
        return "–", False
    if isinstance(value, bool):
        return ("yes" if value else "no"), False
    if isinstance(value, int):
        return f"{value:,}", True
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value), True
        return f"{value:.4g}", True
    return str(value), False


def _table(table: Table) -> str:
    out = []
    if table.title:
        out.append(f"<h3>{html.escape(table.title)}</h3>")
    out.append("<table><thead><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in table.columns) + "</tr></thead>")
    out.append("<tbody>")
    for row in table.rows:
        cells = []
        for value in row:
            text, numeric = _cell(value)
            cls = ' class="num"' if numeric else ""
            cells.append(f"<td{cls}>{html.escape(text)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def _figure(plot: Plot) -> str:
    return (
        f'<figure id="fig-{html.escape(plot.id)}">'
        f'<img src="{data_uri(plot.path)}" alt="{html.escape(plot.title)}">'
        f"<figcaption><b>{html.escape(plot.title)}.</b> {html.escape(plot.caption)}</figcaption></figure>"
    )


def _section(section: Section) -> str:
    out = [f'<section id="sec-{html.escape(section.id)}">', f"<h2>{html.escape(section.title)}</h2>"]
    if section.intro:
        out.append(f"<p>{html.escape(section.intro)}</p>")
    out += [f'<div class="warn">{html.escape(w)}</div>' for w in section.warnings]
    out += [f'<div class="note">{html.escape(n)}</div>' for n in section.notes]
    out += [_figure(p) for p in section.plots]
    out += [_table(t) for t in section.tables]
    out.append("</section>")
    return "\n".join(out)


def _banner(banner: Banner | None) -> str:
    if banner is None:
        return ""
    items = "".join(f"<li><code>{html.escape(label)}</code> {html.escape(text)}</li>" for label, text in banner.items)
    cls = "flags" if banner.alarm else "flags quiet"
    head = f'<div class="{cls}" id="flags"><b>{html.escape(banner.title)}</b>'
    return head + (f"<ul>{items}</ul>" if items else "") + "</div>\n"


def render_page(title: str, subtitle: str, sections: Sequence[Section], banner: Banner | None = None) -> str:
    """The whole page as one HTML string (UTF-8): the title, the ``banner`` box if any, a table of contents linking
    to every section, and the sections."""
    toc = "".join(f'<li><a href="#sec-{html.escape(s.id)}">{html.escape(s.title)}</a></li>' for s in sections)
    body = "\n".join(_section(s) for s in sections)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>\n"
        f'<body><h1>{html.escape(title)}</h1><p class="sub">{html.escape(subtitle)}</p>\n'
        f"{_banner(banner)}<nav><ol>{toc}</ol></nav>\n{body}\n</body></html>\n"
    )
