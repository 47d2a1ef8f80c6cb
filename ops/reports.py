"""Operator views: what failed and why, the story of one invoice or file, and the month-end
reconciliation a controller ties out against the Stampli files."""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from decimal import Decimal
from typing import Any

from psycopg2.extensions import cursor as Cursor

from pipeline.ledger import find_files, find_invoice  # noqa: F401 - the views look up here too
from pipeline.states import NEEDS_ATTENTION, SETTLED, InvoiceStatus

# Reconciliation buckets: every invoice counts as received, then in its end state or open.
RECEIVED, OPEN = "received", "open"
BUCKETS = (RECEIVED, *SETTLED, OPEN)


def failed(cur: Cursor) -> list[dict[str, Any]]:
    cur.execute(
        "SELECT i.id, i.payload->>'vendor_id' AS vendor_id,"
        " i.payload->>'invoice_number' AS invoice_number, i.status, i.attempts,"
        " i.updated_at AS last_try, coalesce(i.review_reason, i.last_error) AS reason,"
        " f.path AS file FROM invoices i JOIN source_files f ON f.id = i.source_file_id"
        " WHERE i.status = ANY(%s) ORDER BY i.updated_at, i.id", (list(NEEDS_ATTENTION),))
    return list(cur.fetchall())


def rejections(cur: Cursor, since: date | None = None) -> list[dict[str, Any]]:
    cur.execute(
        "SELECT f.path AS file, r.line_numbers AS lines, r.vendor_id, r.invoice_number,"
        " r.field, r.reason, r.created_at FROM parse_rejections r"
        " JOIN source_files f ON f.id = r.source_file_id"
        " WHERE r.created_at >= %s ORDER BY r.id", (since or date.min,))
    return list(cur.fetchall())


def trail(cur: Cursor, *, invoice_id: int | None = None,
          file_ids: list[int] | None = None) -> list[dict[str, Any]]:
    """The chronological audit trail of one invoice, or of files and their invoices."""
    if invoice_id is not None:
        cur.execute("SELECT * FROM audit_events WHERE invoice_id = %s ORDER BY at, id",
                    (invoice_id,))
    else:
        cur.execute(
            "SELECT * FROM audit_events WHERE source_file_id = ANY(%s) OR invoice_id IN"
            " (SELECT id FROM invoices WHERE source_file_id = ANY(%s)) ORDER BY at, id",
            (file_ids, file_ids))
    return [dict(r, summary=_summarise(r)) for r in cur.fetchall()]


def _summarise(event: dict[str, Any]) -> str:
    d = event["detail"] or {}
    keys = ("reason", "error", "retry_in_s", "next_attempt", "problems", "document_number",
            "adopted", "code", "matched_by", "path", "accepted", "rejected", "previous_status",
            "moved_to", "dry_run", "by")
    parts = [f"{k}={d[k]}" for k in keys if d.get(k) not in (None, "", [], False)]
    return "; ".join(parts)


def reconciliation(cur: Cursor, since: date) -> list[dict[str, Any]]:
    """Per file and currency: invoices and totals received, posted, failed, under review, open,
    and invoices rejected at parse. Totals are Decimal sums of the invoices' header totals."""
    cur.execute("SELECT id, path, status, fetched_at FROM source_files"
                " WHERE kind = 'invoices' AND fetched_at >= %s ORDER BY id", (since,))
    files = {r["id"]: r for r in cur.fetchall()}
    if not files:
        return []
    cur.execute("SELECT source_file_id, status, payload->>'currency' AS currency,"
                " payload->>'invoice_total' AS total, x3_document_number,"
                " coalesce(review_reason, last_error) AS reason"
                " FROM invoices WHERE source_file_id = ANY(%s) ORDER BY id", (list(files),))
    buckets: dict[tuple[int, str], dict[str, Any]] = {}
    for inv in cur.fetchall():
        key = (inv["source_file_id"], inv["currency"])
        b = buckets.setdefault(key, _bucket(files[key[0]]["path"], inv["currency"]))
        total = Decimal(inv["total"])
        state = inv["status"] if inv["status"] in SETTLED else OPEN
        b[RECEIVED] += 1
        b[f"{RECEIVED}_total"] += total
        b[state] += 1
        b[f"{state}_total"] += total
        if state == InvoiceStatus.POSTED:
            b["documents"].append(inv["x3_document_number"])
        elif state != OPEN:
            b["reasons"].append(inv["reason"])
    cur.execute("SELECT source_file_id, vendor_id, invoice_number, line_numbers, field, reason"
                " FROM parse_rejections WHERE source_file_id = ANY(%s) ORDER BY id",
                (list(files),))
    rejected: dict[int, list[str]] = defaultdict(list)
    for r in cur.fetchall():
        rejected[r["source_file_id"]].append(_rejection_reason(r))
    rows = []
    for file_id, f in files.items():
        mine = [b for (fid, _), b in sorted(buckets.items()) if fid == file_id]
        for i, b in enumerate(mine or [_bucket(f["path"], "")]):
            # A row rejected at parse has no trusted currency: the file's count (and the
            # reasons) go on its first row only, so the column sums to the file's rejections.
            b["rejected_at_parse"] = len(rejected[file_id]) if i == 0 else 0
            if i == 0:
                b["reasons"].extend(rejected[file_id])
            rows.append(b)
    return rows


def _rejection_reason(r: dict[str, Any]) -> str:
    lines = ", ".join(str(n) for n in r["line_numbers"] or [])
    what = " ".join(p for p in (f"invoice {r['invoice_number']}" if r["invoice_number"] else "",
                                f"of vendor {r['vendor_id']}" if r["vendor_id"] else "") if p)
    label = "lines" if len(r["line_numbers"] or []) > 1 else "line"
    where = "; ".join(p for p in (f"{label} {lines}" if lines else "", what) if p)
    field = f"{r['field']}: " if r["field"] else ""
    return f"rejected at parse ({where}): {field}{r['reason']}"


def _bucket(path: str, currency: str) -> dict[str, Any]:
    b: dict[str, Any] = defaultdict(int)
    b.update(file=path, currency=currency, documents=[], reasons=[])
    for state in BUCKETS:
        b[state] = 0
        b[f"{state}_total"] = Decimal("0.00")
    return b


REPORT_COLUMNS = ("file", "currency", *(c for b in BUCKETS for c in (b, f"{b}_total")),
                  "rejected_at_parse", "documents", "reasons")
