"""The ingest ledger: parse a fetched file into vendors and invoices, deduplicated.

Dedup key: (vendor id, invoice number), trimmed and case-folded. A re-export that is identical
does nothing; one that changed after posting is flagged for a person, never re-posted.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import psycopg2
from psycopg2.extensions import cursor as Cursor

from pipeline import audit, blobs, db
from pipeline.audit import TaskContext
from pipeline.config import settings
from pipeline.stampli import parse
from pipeline.stampli.limits import Limits
from pipeline.stampli.schema import Layout, LayoutError
from pipeline.states import IN_FLIGHT, NOT_SENT, TO_PROCESS, FileStatus, InvoiceStatus

log = logging.getLogger(__name__)


class NotReady(Exception):
    """An invoice file waits for the vendor files fetched before it to be parsed."""


@dataclass
class ParseOutcome:
    file_id: int
    status: str
    invoice_ids: list[int] = field(default_factory=list)  # to resolve and post
    accepted: int = 0
    rejected: int = 0
    already_parsed: bool = False


@lru_cache(maxsize=1)
def layout() -> Layout:
    path = settings().stampli_layout
    found = Layout.from_file(path) if path else Layout()
    # Bounds come from the environment, never from the customer's layout file.
    found = dataclasses.replace(found, limits=Limits.from_settings(settings()))
    types = dict(found.dimensions)
    cost_center_type = settings().x3_dimension_type
    if "cost_center" not in types and cost_center_type in types.values():
        # The cost center column feeds that type already: a line would carry it twice.
        column = next(n for n, t in found.dimensions if t == cost_center_type)
        raise LayoutError(f"layout file {path}: dimensions: column {column!r} feeds"
                          f" {cost_center_type}, which cost_center feeds"
                          " (MLC_X3_DIMENSION_TYPE); re-type cost_center or pick another type")
    return found


def parse_file(ctx: TaskContext, file_id: int) -> ParseOutcome:
    with db.transaction() as cur:
        cur.execute("SELECT id, path, kind, status, content, content_oid FROM source_files"
                    " WHERE id = %s FOR UPDATE", (file_id,))
        f = cur.fetchone()
        if f is None:
            raise LookupError(f"source file {file_id} does not exist")
        if f["status"] != FileStatus.FETCHED:
            # Redelivered after the parse committed: hand back what still needs processing.
            return ParseOutcome(file_id, f["status"], _open_invoices(cur, file_id),
                                already_parsed=True)
        if f["kind"] == "invoices":
            cur.execute("SELECT count(*) AS n FROM source_files WHERE kind = 'vendors'"
                        " AND status = %s AND id < %s", (FileStatus.FETCHED, file_id))
            if cur.fetchone()["n"]:
                raise NotReady(f"file {file_id} waits for earlier vendor files")
        # Large object: read in chunks, never whole (rows from before 0005 hold bytea).
        stream = (blobs.open_for_reading(cur, f["content_oid"]) if f["content_oid"]
                  else io.BytesIO(bytes(f["content"])))
        # Invoices are stored as the parser streams them; a whole-file problem found midway
        # (the parser reads every row once before yielding, so it is unlikely) undoes them.
        cur.execute("SAVEPOINT parse_file")
        try:
            rows = parse.read_rows(f["path"], stream, layout())
            if f["kind"] == "vendors":
                outcome = _store_vendors(cur, ctx, f, parse.parse_vendors(rows, layout()))
            else:
                outcome = _store_invoices(cur, ctx, f, parse.parse_invoices(rows, layout()))
        except psycopg2.Error:
            raise  # the database's trouble, not the file's: the task retries
        except Exception as exc:  # noqa: BLE001 - any parser failure rejects the file
            # A file the parser cannot get through (refused, or a bug it trips) is rejected
            # with its reason: left `fetched`, it would come back with every poll.
            if isinstance(exc, parse.FileUnreadable):
                reason = str(exc)
            else:
                log.exception("parsing file %s failed", file_id)
                reason = f"the parser failed: {type(exc).__name__}: {str(exc)[:200]}"
            cur.execute("ROLLBACK TO SAVEPOINT parse_file")
            cur.execute("UPDATE source_files SET status = %s, error = %s,"
                        " parsed_at = now() WHERE id = %s",
                        (FileStatus.REJECTED, reason, file_id))
            audit.record(cur, "file_parse", "error", ctx=ctx, source_file_id=file_id,
                         path=f["path"], reason=reason)
            return ParseOutcome(file_id, FileStatus.REJECTED)
    return outcome


def _open_invoices(cur: Cursor, file_id: int) -> list[int]:
    cur.execute("SELECT id FROM invoices WHERE source_file_id = %s AND status = ANY(%s)"
                " ORDER BY id", (file_id, list(TO_PROCESS)))
    return [r["id"] for r in cur.fetchall()]


@dataclass
class _Rejections:
    """Rejections are written as they stream in; only counts and the first few are kept."""

    cur: Cursor
    file_id: int
    count: int = 0
    rows: int = 0
    first: list[parse.Rejection] = field(default_factory=list)

    def add(self, r: parse.Rejection) -> None:
        self.cur.execute(
            "INSERT INTO parse_rejections (source_file_id, vendor_id, invoice_number,"
            " line_numbers, field, reason) VALUES (%s,%s,%s,%s,%s,%s)",
            (self.file_id, r.vendor_id, r.invoice_number, list(r.line_numbers), r.field,
             r.reason),
        )
        self.count += 1
        self.rows += len(r.line_numbers)
        if len(self.first) < 50:
            self.first.append(r)


def _finish(cur: Cursor, ctx: TaskContext, f: dict[str, Any], rows: int,
            rejections: _Rejections, accepted: int) -> str:
    status = FileStatus.PARTIALLY_PARSED if rejections.count else FileStatus.PARSED
    if rejections.count and not accepted:
        status = FileStatus.PARTIALLY_PARSED if rows else FileStatus.REJECTED
    cur.execute(
        "UPDATE source_files SET status = %s, rows_total = %s, rows_rejected = %s,"
        " invoices_accepted = %s, invoices_rejected = %s, parsed_at = now() WHERE id = %s",
        (status, rows, rejections.rows, accepted, rejections.count, f["id"]),
    )
    audit.record(cur, "file_parse", "error" if rejections.count else "ok", ctx=ctx,
                 source_file_id=f["id"], path=f["path"], kind=f["kind"], rows=rows,
                 accepted=accepted, rejected=rejections.count,
                 rejections=[{"lines": list(r.line_numbers), "field": r.field,
                              "reason": r.reason} for r in rejections.first])
    return status


def _store_vendors(cur: Cursor, ctx: TaskContext, f: dict[str, Any],
                   vendors: parse.VendorStream) -> ParseOutcome:
    rejections, accepted = _Rejections(cur, f["id"]), 0
    for v in vendors:
        if isinstance(v, parse.Rejection):
            rejections.add(v)
            continue
        cur.execute(
            "INSERT INTO stampli_vendors (vendor_id, name, tax_id, payload, source_file_id)"
            " VALUES (%s,%s,%s,%s,%s) ON CONFLICT (vendor_id) DO UPDATE SET name = EXCLUDED.name,"
            " tax_id = EXCLUDED.tax_id, payload = EXCLUDED.payload,"
            " source_file_id = EXCLUDED.source_file_id, updated_at = now()",
            (v["vendor_id"].strip().casefold(), v["vendor_name"], v.get("tax_id"),
             json.dumps(v, default=str), f["id"]),
        )
        accepted += 1
    status = _finish(cur, ctx, f, vendors.rows, rejections, accepted)
    return ParseOutcome(f["id"], status, accepted=accepted, rejected=rejections.count)


def _store_invoices(cur: Cursor, ctx: TaskContext, f: dict[str, Any],
                    invoices: parse.InvoiceStream) -> ParseOutcome:
    ids: list[int] = []
    rejections, accepted = _Rejections(cur, f["id"]), 0
    for inv in invoices:
        if isinstance(inv, parse.Rejection):
            rejections.add(inv)
            continue
        accepted += 1
        invoice_id = store_invoice(cur, ctx, f["id"], inv)
        if invoice_id is not None:
            ids.append(invoice_id)
    status = _finish(cur, ctx, f, invoices.rows, rejections, accepted)
    return ParseOutcome(f["id"], status, ids, accepted=accepted, rejected=rejections.count)


def payload_digest(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def store_invoice(cur: Cursor, ctx: TaskContext, file_id: int, inv: parse.ParsedInvoice
                  ) -> int | None:
    """Insert or reconcile one invoice; return its id when it should be resolved and posted."""
    vendor_key, number_key = inv.key
    payload = inv.payload()
    digest = payload_digest(payload)
    cur.execute("SELECT id, status, payload_sha256, attempts FROM invoices"
                " WHERE stampli_vendor_id = %s AND invoice_number = %s FOR UPDATE",
                (vendor_key, number_key))
    existing = cur.fetchone()
    if existing is None:
        if inv.cancelled:
            audit.record(cur, "file_parse", "skipped", ctx=ctx, source_file_id=file_id,
                         reason=f"invoice {inv.header['invoice_number']} of vendor "
                                f"{inv.header['vendor_id']} is cancelled and was never posted")
            return None
        cur.execute(
            "INSERT INTO invoices (stampli_vendor_id, invoice_number, source_file_id, payload,"
            " payload_sha256) VALUES (%s,%s,%s,%s,%s) RETURNING id",
            (vendor_key, number_key, file_id, json.dumps(payload), digest),
        )
        invoice_id = cur.fetchone()["id"]
        _write_lines(cur, invoice_id, inv)
        return invoice_id
    invoice_id, status = existing["id"], existing["status"]
    if existing["payload_sha256"] == digest and not inv.cancelled:
        audit.record(cur, "file_parse", "skipped", ctx=ctx, source_file_id=file_id,
                     invoice_id=invoice_id, reason="identical re-export of a known invoice")
        return None
    # Safe to replace only while no attempt ever reached X3: after one, the old version may be
    # there (answer lost, retries exhausted) and a person must compare.
    if status in NOT_SENT and not inv.cancelled and existing["attempts"] == 0:
        cur.execute("UPDATE invoices SET payload = %s, payload_sha256 = %s, source_file_id = %s,"
                    " status = %s, last_error = NULL, updated_at = now() WHERE id = %s",
                    (json.dumps(payload), digest, file_id, InvoiceStatus.RECEIVED, invoice_id))
        cur.execute("DELETE FROM invoice_lines WHERE invoice_id = %s", (invoice_id,))
        _write_lines(cur, invoice_id, inv)
        audit.record(cur, "file_parse", "ok", ctx=ctx, source_file_id=file_id,
                     invoice_id=invoice_id, reason="changed re-export before posting: updated")
        return invoice_id
    cur.execute("SELECT payload FROM invoices WHERE id = %s", (invoice_id,))
    changes = payload_diff(cur.fetchone()["payload"], payload)
    reason = ("cancelled in Stampli after export" if inv.cancelled
              else f"changed re-export of an invoice already {status}")
    if changes:
        reason += ": " + "; ".join(f"{c['field']} {c['was']!r} -> {c['now']!r}"
                                   for c in changes[:10])
    # Never re-posted, never deleted: a person decides. A row mid-post, or whose outcome is
    # unknown, keeps its status so the poster can settle it (adopt what X3 holds); the reason is
    # kept for review all the same, and the row goes to review once settled.
    cur.execute("UPDATE invoices SET status = CASE WHEN status = ANY(%s) THEN status"
                " ELSE %s END, review_reason = %s, updated_at = now() WHERE id = %s",
                (list(IN_FLIGHT), InvoiceStatus.NEEDS_REVIEW, reason, invoice_id))
    audit.record(cur, "file_parse", "error", ctx=ctx, source_file_id=file_id,
                 invoice_id=invoice_id, reason=reason, previous_status=status, changes=changes)
    return None


def find_invoice(cur: Cursor, vendor_id: str, invoice_number: str) -> dict[str, Any] | None:
    vendor, number = parse.dedup_key(vendor_id, invoice_number)
    cur.execute("SELECT * FROM invoices WHERE stampli_vendor_id = %s AND invoice_number = %s",
                (vendor, number))
    return cur.fetchone()


def find_files(cur: Cursor, name: str) -> list[dict[str, Any]]:
    """Files whose path is `name` or ends with `/name`: the name is taken literally (`%` and
    `_` are LIKE wildcards: escaped, or `--file %` would select every file)."""
    literal = name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    cur.execute("SELECT id, path, status FROM source_files WHERE path = %s"
                " OR path LIKE %s ESCAPE '\\' ORDER BY id", (name, f"%/{literal}"))
    return list(cur.fetchall())


def payload_diff(old: dict[str, Any], new: dict[str, Any]) -> list[dict[str, Any]]:
    """Field-by-field differences between two normalised invoices (lines by line number)."""
    changes = [{"field": k, "was": old.get(k), "now": new.get(k)}
               for k in sorted(set(old) | set(new)) if k != "lines" and old.get(k) != new.get(k)]
    old_lines = {ln["line_number"]: ln for ln in old.get("lines", [])}
    new_lines = {ln["line_number"]: ln for ln in new.get("lines", [])}
    for n in sorted(set(old_lines) | set(new_lines)):
        a, b = old_lines.get(n, {}), new_lines.get(n, {})
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                changes.append({"field": f"line {n} {k}", "was": a.get(k), "now": b.get(k)})
    return changes


def _write_lines(cur: Cursor, invoice_id: int, inv: parse.ParsedInvoice) -> None:
    for line in inv.lines:
        cur.execute(
            "INSERT INTO invoice_lines (invoice_id, line_number, description, quantity, amount,"
            " gl_account, cost_center, location) VALUES (%s,%s,%s,%s,%s,%s,%s,%s)",
            (invoice_id, line["line_number"], line["description"], line["quantity"],
             line["amount"], line["gl_account"], line["cost_center"], line["location"]),
        )
