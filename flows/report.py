"""The flows' one writer of results: tables (Markdown + CSV), JSON summaries and matplotlib figures.

A table is a list of row dicts and a list of ``Column``s; each column takes its value from the row
(a key or a function), names itself in the CSV header and, optionally, in the Markdown header with
its own formatting (the CSV keeps the raw value). A missing value (``None``) is an empty cell in
both. Every file is written atomically (``common.atomic``): an interrupted run never leaves half a
table, and a reader never sees one.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.atomic import atomic_write, atomic_write_text

__all__ = ["Column", "markdown_table", "csv_text", "write_table", "write_csv", "write_json", "pyplot", "save_figure"]


@dataclass(frozen=True)
class Column:
    """One column of a table.

    Args:
        value: the row's key, or a function row -> value.
        csv: the CSV header (None: the column is Markdown only).
        header: the Markdown header (None: the column is CSV only).
        fmt: Markdown text of a (not None) value; default ``str``.
    """

    value: str | Callable[[Mapping], Any]
    csv: str | None = None
    header: str | None = None
    fmt: Callable[[Any], str] = str

    def get(self, row: Mapping) -> Any:
        """The raw value of this column in ``row`` (None when a key is missing)."""
        return self.value(row) if callable(self.value) else row.get(self.value)


def markdown_table(rows: Iterable[Mapping], columns: Sequence[Column]) -> str:
    """``| h1 | h2 |`` / ``|---|---|`` / one line per row, over the columns with a ``header``; ends in a newline."""
    cols = [c for c in columns if c.header is not None]
    lines = ["| " + " | ".join(c.header for c in cols) + " |", "|" + "---|" * len(cols)]
    for row in rows:
        cells = [c.get(row) for c in cols]
        lines.append("| " + " | ".join("" if v is None else c.fmt(v) for c, v in zip(cols, cells)) + " |")
    return "\n".join(lines) + "\n"


def csv_text(rows: Iterable[Mapping], columns: Sequence[Column]) -> str:
    """CSV (``\\n`` line ends) over the columns with a ``csv`` header: the header line, then raw values."""
    cols = [c for c in columns if c.csv is not None]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([c.csv for c in cols])
    for row in rows:
        w.writerow(["" if v is None else v for v in (c.get(row) for c in cols)])
    return buf.getvalue()


def write_table(out: str | Path, rows: Sequence[Mapping], columns: Sequence[Column], *, name: str = "table",
                markdown: str | None = None) -> tuple[Path, Path]:
    """Write ``<out>/<name>.md`` and ``<out>/<name>.csv`` atomically; returns their paths.

    ``markdown`` replaces the Markdown text (e.g. this table followed by further sections).
    """
    out = Path(out)
    md_path, csv_path = out / f"{name}.md", out / f"{name}.csv"
    atomic_write_text(md_path, markdown_table(rows, columns) if markdown is None else markdown)
    atomic_write_text(csv_path, csv_text(rows, columns))
    return md_path, csv_path


def write_csv(path: str | Path, rows: Sequence[Mapping], columns: Sequence[Column]) -> None:
    """Write ``csv_text(rows, columns)`` to ``path`` atomically."""
    atomic_write_text(path, csv_text(rows, columns))


def write_json(path: str | Path, data: Any) -> None:
    """Write ``data`` as indented JSON (a trailing newline) to ``path`` atomically."""
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def pyplot():
    """``matplotlib.pyplot`` on the non-interactive Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path) -> None:
    """Save ``fig`` as PNG to ``path`` atomically, then close it (frees its memory)."""
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    finally:
        pyplot().close(fig)
