"""Replay: put failed invoices (or one invoice, or a file's invoices) back on the road."""

from __future__ import annotations

from pipeline import audit, db
from pipeline.audit import TaskContext

REPLAYABLE = ("failed", "received", "vendor_resolved", "posting")


def select_for_replay(ctx: TaskContext, *, invoice_id: int | None = None,
                      file_id: int | None = None, status: str = "failed") -> list[int]:
    """Reset the chosen rows so resolve → post runs again; returns their ids.

    Posted invoices are never replayed; rows left in `posting` keep that status so the poster
    asks X3 before sending anything.
    """
    where, args = ["status = ANY(%s)"], [list(REPLAYABLE)]
    if invoice_id is not None:
        where.append("id = %s")
        args.append(invoice_id)
    elif file_id is not None:
        where.append("source_file_id = %s")
        args.append(file_id)
    else:
        where.append("status = %s")
        args.append(status)
    with db.transaction() as cur:
        cur.execute(f"SELECT id, status, last_error FROM invoices WHERE {' AND '.join(where)}"
                    " ORDER BY id FOR UPDATE", args)
        rows = cur.fetchall()
        for row in rows:
            cur.execute("UPDATE invoices SET status = CASE WHEN status = 'failed' THEN"
                        " (CASE WHEN x3_supplier_code IS NULL THEN 'received'"
                        " ELSE 'vendor_resolved' END) ELSE status END, updated_at = now()"
                        " WHERE id = %s", (row["id"],))
            audit.record(cur, "replay", "ok", ctx=ctx, invoice_id=row["id"],
                         previous_status=row["status"], previous_error=row["last_error"])
    return [r["id"] for r in rows]
