"""Readable tables for the terminal: wide cells wrap, long listings page; CSV and JSON for
scripts.

Cells hold what exports and X3 answers hold (file, vendor and invoice names, reasons): printed,
control and format characters are escaped (`\x1b`, `\n`, `\u202e`), so a name cannot move the
cursor, clear the screen or fake a row; written as CSV, a cell a spreadsheet would run as a
formula is prefixed with `'` (OWASP's CSV injection advice). Plain numbers are left alone:
`-25.00` is a credit note's total, not a formula, and must stay summable.
"""

from __future__ import annotations

import csv
import io
import json
import pydoc
import re
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


def safe(text: str) -> str:
    """`text` with every non-printable character (controls, ANSI escapes, line breaks, bidi
    and zero-width characters) written as a Python escape."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii")
                   for c in text)


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str], *,
          width: int | None = None) -> str:
    """Columns sized to their content; the widest columns wrap to fit the terminal."""
    width = width or shutil.get_terminal_size((120, 40)).columns
    cells = [[safe(_text(r.get(c))) for c in columns] for r in rows]
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


# A spreadsheet runs a cell starting (after spaces) with these; full-width forms too, as some
# locales read them alike.
_FORMULA_START = re.compile(r"[ ]*[=+\-@\t\r\n\uff1d\uff0b\uff0d\uff20]")
_PLAIN_NUMBER = re.compile(r"[+-]?[0-9]+(?:\.[0-9]+)?")


def csv_cell(text: str) -> str:
    """`text` as a spreadsheet must show it, never run it."""
    if _FORMULA_START.match(text) and not _PLAIN_NUMBER.fullmatch(text):
        return "'" + text
    return text


def to_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow({c: csv_cell(_text(r.get(c))) for c in columns})
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
