"""Readable tables for the terminal: wide cells wrap, long listings page; CSV and JSON for
scripts."""

from __future__ import annotations

import csv
import io
import json
import pydoc
import shutil
import sys
import textwrap
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, list | tuple):
        return ", ".join(_text(v) for v in value)
    return str(value)


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str], *,
          width: int | None = None) -> str:
    """Columns sized to their content; the widest columns wrap to fit the terminal."""
    width = width or shutil.get_terminal_size((120, 40)).columns
    cells = [[_text(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(line) for row in cells for line in row[i].splitlines() or [""]])
              for i, c in enumerate(columns)]
    budget = width - 2 * (len(columns) - 1)
    while sum(widths) > budget and max(widths) > 12:
        widest = widths.index(max(widths))
        widths[widest] = max(12, widths[widest] - (sum(widths) - budget))
    out = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip(),
           "  ".join("-" * w for w in widths)]
    for row in cells:
        wrapped = [textwrap.wrap(v, w) or [""] for v, w in zip(row, widths, strict=True)]
        for i in range(max(len(x) for x in wrapped)):
            out.append("  ".join((x[i] if i < len(x) else "").ljust(w)
                                 for x, w in zip(wrapped, widths, strict=True)).rstrip())
    return "\n".join(out)


def to_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow({c: _text(r.get(c)) for c in columns})
    return buf.getvalue()


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def to_json(data: Any) -> str:
    return json.dumps(data, indent=2, default=_default)


def emit(text: str) -> None:
    """Print, through a pager when a person reads a listing longer than the screen."""
    rows = shutil.get_terminal_size((120, 40)).lines
    if sys.stdout.isatty() and text.count("\n") > rows - 2:
        pydoc.pager(text)
    else:
        print(text)
