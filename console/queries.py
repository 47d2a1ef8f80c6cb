"""The console's own read queries (the one place for them): pages, filters and charts the
pipeline does not need. Lists are keyset-paginated on id, newest first, LIMIT size + 1 to know
whether an older page exists."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from psycopg2.extensions import cursor as Cursor

from pipeline.states import NEEDS_ATTENTION

# One label per kind of problem: "line 2: GL account 7777 ..." and "line 5: GL account 7777 ..."
# are one reason; a review's reason up to its list of changed fields.
REASON_GROUP = """CASE WHEN i.status = 'needs_review' OR i.review_reason IS NOT NULL
    THEN split_part(coalesce(i.review_reason, ''), ': ', 1)
    ELSE left(split_part(regexp_replace(coalesce(i.last_error, '(no reason recorded)'),
                                       '^line [0-9]+: ', ''), '; ', 1), 90) END"""


@dataclass(frozen=True)
class InvoiceFilter:
    status: str = ""
    vendor: str = ""
    file_id: int | None = None
    company: str = ""
    since: date | None = None
    until: date | None = None
    number: str = ""


def posted_per_day(cur: Cursor, days: int = 30, by: str = "currency",
                   default_company: str = "") -> list[dict[str, Any]]:
    """Invoices posted per day and currency (or company) over the last `days` days. An invoice's
    company is its lines' route (one per invoice: posting refuses several), else the default."""
    since = date.today() - timedelta(days=days - 1)
    if by == "currency":
        cur.execute("SELECT posted_at::date AS day, payload->>'currency' AS series,"
                    " count(*) AS n FROM invoices WHERE posted_at >= %s AND status = 'posted'"
                    " GROUP BY 1, 2 ORDER BY 1, 2", (since,))
        return list(cur.fetchall())
    cur.execute(
        "WITH posted AS (SELECT id, posted_at FROM invoices WHERE posted_at >= %s"
        " AND status = 'posted'),"
        " routed AS (SELECT DISTINCT ON (l.invoice_id) l.invoice_id, r.company"
        " FROM invoice_lines l JOIN posted p ON p.id = l.invoice_id"
        " JOIN entity_routes r ON r.location = lower(btrim(l.location))"
        " WHERE l.location IS NOT NULL ORDER BY l.invoice_id, l.line_number)"
        " SELECT p.posted_at::date AS day, coalesce(r.company, %s) AS series, count(*) AS n"
        " FROM posted p LEFT JOIN routed r ON r.invoice_id = p.id GROUP BY 1, 2 ORDER BY 1, 2",
        (since, default_company))
    return list(cur.fetchall())


def failures_by_reason(cur: Cursor, days: int = 30, limit: int = 8) -> list[dict[str, Any]]:
    since = date.today() - timedelta(days=days - 1)
    cur.execute(f"SELECT {REASON_GROUP} AS reason, count(*) AS n FROM invoices i"
                " WHERE i.status = 'failed' AND i.updated_at >= %s"
                " GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT %s", (since, limit))
    return list(cur.fetchall())


def _invoice_where(f: InvoiceFilter, default_company: str) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    args: list[Any] = []
    if f.status:
        where.append("i.status = %s")
        args.append(f.status)
    if f.vendor:
        from pipeline.stampli.parse import dedup_key

        where.append("i.stampli_vendor_id = %s")
        args.append(dedup_key(f.vendor, "x")[0])
    if f.file_id is not None:
        where.append("i.source_file_id = %s")
        args.append(f.file_id)
    if f.number:
        from pipeline.stampli.parse import dedup_key

        literal = dedup_key("x", f.number)[1]
        literal = literal.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        where.append("i.invoice_number LIKE %s ESCAPE '\\'")
        args.append(literal + "%")
    if f.since:
        where.append("i.created_at >= %s")
        args.append(f.since)
    if f.until:
        where.append("i.created_at < %s")
        args.append(f.until + timedelta(days=1))
    if f.company:
        routed = ("EXISTS (SELECT 1 FROM invoice_lines l JOIN entity_routes r"
                  " ON r.location = lower(btrim(l.location))"
                  " WHERE l.invoice_id = i.id AND r.company = %s)")
        args.append(f.company)
        if f.company == default_company:
            routed = (f"({routed} OR NOT EXISTS (SELECT 1 FROM invoice_lines l"
                      " WHERE l.invoice_id = i.id AND btrim(coalesce(l.location, '')) <> ''))")
        where.append(routed)
    return where, args


INVOICE_COLUMNS = ("i.id, i.payload->>'vendor_id' AS vendor_id,"
                   " i.payload->>'vendor_name' AS vendor_name,"
                   " i.payload->>'invoice_number' AS invoice_number, i.status,"
                   " i.payload->>'currency' AS currency,"
                   " i.payload->>'invoice_total' AS total, i.x3_document_number,"
                   " i.created_at, i.updated_at, i.source_file_id, f.path AS file,"
                   " coalesce(i.review_reason, i.last_error) AS reason")


def invoices_page(cur: Cursor, f: InvoiceFilter, *, before: int | None, size: int,
                  default_company: str) -> tuple[list[dict[str, Any]], int | None]:
    """One page of invoices, newest first; the id to pass as `before` for the next page."""
    where, args = _invoice_where(f, default_company)
    if before is not None:
        where.append("i.id < %s")
        args.append(before)
    sql = (f"SELECT {INVOICE_COLUMNS} FROM invoices i"
           " JOIN source_files f ON f.id = i.source_file_id"
           + (" WHERE " + " AND ".join(where) if where else "")
           + " ORDER BY i.id DESC LIMIT %s")
    cur.execute(sql, (*args, size + 1))
    rows = list(cur.fetchall())
    more = len(rows) > size
    rows = rows[:size]
    return rows, rows[-1]["id"] if more and rows else None


def invoice(cur: Cursor, invoice_id: int) -> dict[str, Any] | None:
    cur.execute("SELECT i.*, f.path AS file FROM invoices i"
                " JOIN source_files f ON f.id = i.source_file_id WHERE i.id = %s", (invoice_id,))
    return cur.fetchone()


def file_events(cur: Cursor, file_id: int, limit: int = 20) -> list[dict[str, Any]]:
    """The fetch and parse of an invoice's file (rows without an invoice id), for its timeline,
    summarised like the rows of `ops.reports.trail`."""
    cur.execute("SELECT * FROM audit_events WHERE source_file_id = %s AND invoice_id IS NULL"
                " AND stage IN ('file_fetch', 'file_parse') ORDER BY id LIMIT %s",
                (file_id, limit))
    keys = ("path", "accepted", "rejected", "reason", "error", "moved_to")
    return [dict(r, summary="; ".join(f"{k}={r['detail'][k]}" for k in keys
                                      if r["detail"].get(k) not in (None, "", [])))
            for r in cur.fetchall()]


def vendor_link(cur: Cursor, vendor_key: str) -> dict[str, Any] | None:
    cur.execute("SELECT x3_supplier_code, matched_by, created_at FROM vendor_links"
                " WHERE stampli_vendor_id = %s", (vendor_key,))
    return cur.fetchone()


def review_changes(cur: Cursor, invoice_id: int) -> list[dict[str, Any]]:
    """The field-by-field diff the parse recorded when the re-export put it under review."""
    cur.execute("SELECT detail FROM audit_events WHERE invoice_id = %s AND stage = 'file_parse'"
                " AND outcome = 'error' AND detail ? 'changes' ORDER BY id DESC LIMIT 1",
                (invoice_id,))
    row = cur.fetchone()
    return list((row["detail"] or {}).get("changes") or []) if row else []


def acknowledgements(cur: Cursor, invoice_id: int) -> list[dict[str, Any]]:
    cur.execute("SELECT review_reason, note, by_user, at FROM console_acknowledgements"
                " WHERE invoice_id = %s ORDER BY id", (invoice_id,))
    return list(cur.fetchall())


UNACKNOWLEDGED = ("i.status = ANY(%s) AND NOT EXISTS (SELECT 1 FROM console_acknowledgements a"
                  " WHERE a.invoice_id = i.id AND a.review_reason = i.review_reason)")


def review_groups(cur: Cursor) -> dict[tuple[str, str], int]:
    """How many invoices wait in each (status, reason group), all of them counted."""
    cur.execute(f"SELECT i.status, {REASON_GROUP} AS reason_group, count(*) AS n"
                f" FROM invoices i WHERE {UNACKNOWLEDGED} GROUP BY 1, 2",
                (list(NEEDS_ATTENTION),))
    return {(r["status"], r["reason_group"] or ""): r["n"] for r in cur.fetchall()}


def review_queue(cur: Cursor, limit: int = 200) -> list[dict[str, Any]]:
    """The oldest `limit` failed, under review (not yet acknowledged) and unknown-outcome
    invoices, with their reason group."""
    cur.execute(
        f"SELECT {INVOICE_COLUMNS}, {REASON_GROUP} AS reason_group FROM invoices i"
        " JOIN source_files f ON f.id = i.source_file_id"
        f" WHERE {UNACKNOWLEDGED} ORDER BY i.updated_at, i.id LIMIT %s",
        (list(NEEDS_ATTENTION), limit))
    return list(cur.fetchall())


def files_page(cur: Cursor, *, before: int | None, size: int
               ) -> tuple[list[dict[str, Any]], int | None]:
    cur.execute("SELECT id, path, kind, status, size, fetched_at, parsed_at, rows_total,"
                " rows_rejected, invoices_accepted, invoices_rejected, error FROM source_files"
                " WHERE %s IS NULL OR id < %s ORDER BY id DESC LIMIT %s",
                (before, before, size + 1))
    rows = list(cur.fetchall())
    more = len(rows) > size
    rows = rows[:size]
    return rows, rows[-1]["id"] if more and rows else None


def source_file(cur: Cursor, file_id: int) -> dict[str, Any] | None:
    cur.execute("SELECT id, path, remote_path, kind, status, size, sha256, fetched_at,"
                " parsed_at, rows_total, rows_rejected, invoices_accepted, invoices_rejected,"
                " error FROM source_files WHERE id = %s", (file_id,))
    return cur.fetchone()


def file_rejections(cur: Cursor, file_id: int, limit: int = 500) -> list[dict[str, Any]]:
    cur.execute("SELECT line_numbers, vendor_id, invoice_number, field, reason"
                " FROM parse_rejections WHERE source_file_id = %s ORDER BY id LIMIT %s",
                (file_id, limit))
    return list(cur.fetchall())


def file_totals(cur: Cursor, file_id: int) -> list[dict[str, Any]]:
    """The file's reconciliation per currency and state (what `mlc report` totals)."""
    cur.execute(
        "SELECT payload->>'currency' AS currency,"
        " CASE WHEN status IN ('posted', 'failed', 'needs_review') THEN status ELSE 'open' END"
        " AS state, count(*) AS n, sum((payload->>'invoice_total')::numeric) AS total"
        " FROM invoices WHERE source_file_id = %s GROUP BY 1, 2 ORDER BY 1, 2", (file_id,))
    return list(cur.fetchall())


def mappings(cur: Cursor) -> dict[str, list[dict[str, Any]]]:
    cur.execute("SELECT stampli_code, x3_account FROM gl_account_map ORDER BY 1")
    gl = list(cur.fetchall())
    cur.execute("SELECT stampli_code, dimension_type, dimension_value FROM cost_center_map"
                " ORDER BY 1")
    cc = list(cur.fetchall())
    cur.execute("SELECT dimension_type, stampli_code, dimension_value FROM dimension_map"
                " ORDER BY 1, 2")
    dims = list(cur.fetchall())
    cur.execute("SELECT location, company, site FROM entity_routes ORDER BY 1")
    return {"gl": gl, "cost_centers": cc, "dimensions": dims, "routes": list(cur.fetchall())}


def companies(cur: Cursor, default_company: str) -> list[str]:
    cur.execute("SELECT DISTINCT company FROM entity_routes ORDER BY 1")
    return sorted({default_company, *(r["company"] for r in cur.fetchall())})


def activity_page(cur: Cursor, *, before: int | None, size: int
                  ) -> tuple[list[dict[str, Any]], int | None]:
    """What people did: console actions and replays (from the console or the CLI)."""
    cur.execute("SELECT a.id, a.at, a.stage, a.outcome, a.invoice_id, a.task_id, a.detail,"
                " i.payload->>'invoice_number' AS invoice_number FROM audit_events a"
                " LEFT JOIN invoices i ON i.id = a.invoice_id"
                " WHERE a.stage IN ('console', 'replay') AND (%s IS NULL OR a.id < %s)"
                " ORDER BY a.id DESC LIMIT %s", (before, before, size + 1))
    rows = list(cur.fetchall())
    more = len(rows) > size
    rows = rows[:size]
    return rows, rows[-1]["id"] if more and rows else None
