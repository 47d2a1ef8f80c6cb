"""The reconciliation report on a terminal: within 100 columns by default (file names shortened,
totals of what did not post left to --wide, CSV and JSON), everything with --wide."""

from __future__ import annotations

import posixpath
import textwrap
from collections.abc import Sequence
from typing import Any

from ops import tables
from ops.reports import OPEN, RECEIVED
from pipeline.states import InvoiceStatus as S

WIDTH = 100
# (heading, key): counts of every state, totals of what was received and what was posted
NARROW = (("CUR", "currency"), ("RECV", RECEIVED), ("RECV_TOTAL", f"{RECEIVED}_total"),
          ("POSTED", S.POSTED), ("POST_TOTAL", f"{S.POSTED}_total"), ("FAILED", S.FAILED),
          ("REVIEW", S.NEEDS_REVIEW), ("OPEN", OPEN), ("REJ", "rejected_at_parse"))
MIN_FILE = 16


def shorten(name: str, width: int) -> str:
    """The file name without its directory; a longer one keeps its start and its end (the
    timestamp and extension tell files apart)."""
    base = posixpath.basename(name) or name
    if len(base) <= width:
        return base
    head = (width - 1) // 2
    return base[:head] + "…" + base[len(base) - (width - 1 - head):]


def render(rows: Sequence[dict[str, Any]], columns: Sequence[str], *, wide: bool,
           since: object) -> str:
    if not rows:
        return f"no invoice files since {since}"
    if wide:
        text = tables.table(rows, [c for c in columns if c != "documents"], width=10_000)
        notes = [tables.safe(f"{r['file']}: {reason}") for r in rows for reason in r["reasons"]]
        return text + ("\n\nreasons:\n" + "\n".join(notes) if notes else "")
    cells = [[tables._text(r.get(key)) for _, key in NARROW] for r in rows]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, (h, _) in enumerate(NARROW)]
    file_width = max(MIN_FILE, WIDTH - sum(widths) - 2 * len(NARROW))
    names = [shorten(tables.safe(r["file"]), file_width) for r in rows]
    file_width = min(file_width, max(len("FILE"), *(len(n) for n in names)))
    out = ["  ".join(["FILE".ljust(file_width)] + [h.rjust(w) for (h, _), w in
                                                   zip(NARROW, widths, strict=True)]),
           "  ".join("-" * w for w in [file_width, *widths])]
    for name, row in zip(names, cells, strict=True):
        out.append("  ".join([name.ljust(file_width)] + [c.rjust(w) for c, w in
                                                         zip(row, widths, strict=True)]))
    notes = [(shorten(tables.safe(r["file"]), WIDTH // 2), tables.safe(reason))
             for r in rows for reason in r["reasons"]]
    if notes:
        out += ["", "reasons:"]
        for name, reason in notes:
            out += textwrap.wrap(f"{name}: {reason}", WIDTH, subsequent_indent="    ")
    out += ["", "REJ: rows rejected at parse (per file). Totals of failed, review and open: "
                "--wide"]
    return "\n".join(out)
