"""A self-contained HTML report: each figure inlined as a base64 PNG above the table of its numbers.

The page references nothing outside itself (no scripts, stylesheets, fonts or
image files), so it opens from disk in any browser without a server or network.
"""
import base64
import datetime
import html
import math
import numbers
from dataclasses import dataclass, field
from typing import List, Sequence

from lda_common.atomic_files import atomic_write_text


@dataclass
class Table:
    """The numbers behind one figure: a header and rows of plain values."""

    columns: List[str]
    rows: List[list] = field(default_factory=list)

    def __post_init__(self):
        for number, row in enumerate(self.rows):
            if len(row) != len(self.columns):
                raise ValueError(f"table row {number} has {len(row)} values for {len(self.columns)} columns")

    def as_dicts(self) -> List[dict]:
        return [dict(zip(self.columns, row)) for row in self.rows]


@dataclass
class Section:
    """One figure of the report: its title, PNG file, caption and numbers."""

    title: str
    image_path: str
    caption: str
    table: Table


def format_value(value, digits: int = 4) -> str:
    """Numbers with ``digits`` significant digits, NaN/None as an en dash, the rest as text."""
    if value is None:
        return "\u2013"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "\u2013"
        return f"{value:.{digits}g}"
    try:  # numpy scalars
        return format_value(value.item(), digits)
    except AttributeError:
        return str(value)


_STYLE = """
body { font-family: sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ccc; }
img { max-width: 100%; border: 1px solid #eee; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0 1em 0; }
th, td { border: 1px solid #ccc; padding: 2px 8px; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
details { margin-bottom: 1em; } .caption { color: #444; } .meta { color: #666; font-size: 0.9em; }
"""


def text_table(table: Table, digits: int = 4) -> str:
    """``table`` as aligned plain text for a terminal: numeric columns right-aligned, missing values "-"."""
    cells = [[format_value(value, digits).replace("\u2013", "-") for value in row] for row in table.rows]
    widths = [max(len(text) for text in column) for column in zip(table.columns, *cells)]
    numeric = [all(value is None or (isinstance(value, numbers.Number) and not isinstance(value, bool))
                   for value in column) and bool(table.rows)
               for column in zip(*table.rows)] if table.rows else [False] * len(table.columns)

    def line(texts):
        return "  ".join(text.rjust(width) if right else text.ljust(width)
                         for text, width, right in zip(texts, widths, numeric)).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(table.columns), rule] + [line(row) for row in cells])


def _table_html(table: Table) -> str:
    header = "".join(f"<th>{html.escape(str(name))}</th>" for name in table.columns)
    body = "\n".join("<tr>" + "".join(f"<td>{html.escape(format_value(value))}</td>" for value in row) + "</tr>"
                     for row in table.rows)
    return f"<table>\n<tr>{header}</tr>\n{body}\n</table>"


def _image_html(path: str, alt: str) -> str:
    with open(path, "rb") as handle:
        encoded = base64.b64encode(handle.read()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{encoded}">'


def render_html(title: str, sections: Sequence[Section], summary: Table, notes: Sequence[str] = ()) -> str:
    """The whole report as one HTML string."""
    generated = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="meta">Generated {generated} by <code>lda_analysis</code>.</p>',
        _table_html(summary),
    ]
    parts.extend(f"<p class=\"meta\">{html.escape(note)}</p>" for note in notes)
    for number, section in enumerate(sections, start=1):
        parts.append(f'<h2 id="figure-{number}">{number}. {html.escape(section.title)}</h2>')
        parts.append(_image_html(section.image_path, section.title))
        parts.append(f'<p class="caption">{html.escape(section.caption)}</p>')
        # Long per-class tables fold away; short ones stay open.
        opened = " open" if len(section.table.rows) <= 30 else ""
        parts.append(f"<details{opened}><summary>Numbers behind figure {number} "
                     f"({len(section.table.rows)} rows)</summary>")
        parts.append(_table_html(section.table))
        parts.append("</details>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(path: str, title: str, sections: Sequence[Section], summary: Table,
                 notes: Sequence[str] = ()) -> str:
    atomic_write_text(path, render_html(title, sections, summary, notes))
    return path
