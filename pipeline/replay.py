"""Replay: put failed invoices back on the road, from what Postgres holds.

Never a posted invoice (refused with a reason) and never one under review (a person decides);
rows left in `posting` or `outcome_unknown` keep that status so the poster asks X3 before
sending anything (and waits out the in-flight window). A replay starts the try count again.
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from datetime import date
from typing import Any

from pipeline import audit, db, ledger, states
from pipeline.audit import TaskContext
from pipeline.states import REPLAYABLE, InvoiceStatus


class ReplayRefused(Exception):
    """The chosen invoice must not be replayed; the message says why."""


@dataclass(frozen=True)
class Selection:
    invoice_id: int | None = None
    vendor_id: str | None = None
    invoice_number: str | None = None
    failed: bool = False
    since: date | None = None
    file: str | None = None

    def describe(self) -> str:
        if self.vendor_id:
            return f"invoice {self.invoice_number} of vendor {self.vendor_id}"
        if self.invoice_id is not None:
            return f"invoice id {self.invoice_id}"
        if self.file:
            return f"invoices of file {self.file}"
        return "failed invoices" + (f" since {self.since}" if self.since else "")


def _chosen(cur: Any, sel: Selection) -> list[dict[str, Any]]:
    if sel.vendor_id or sel.invoice_id is not None:
        if sel.vendor_id:
            row = ledger.find_invoice(cur, sel.vendor_id, sel.invoice_number or "")
        else:
            cur.execute("SELECT * FROM invoices WHERE id = %s", (sel.invoice_id,))
            row = cur.fetchone()
        if row is None:
            raise ReplayRefused(f"no {sel.describe()} in the ledger")
        if row["status"] == InvoiceStatus.POSTED:
            raise ReplayRefused(f"{sel.describe()} is already posted in X3 as "
                                f"{row['x3_document_number']}: it is never posted twice")
        if row["status"] == InvoiceStatus.NEEDS_REVIEW or row["review_reason"]:
            raise ReplayRefused(f"{sel.describe()} needs review ({row['review_reason']}): "
                                "a person must decide, replay will not post it")
        return [row]
    if sel.file:
        ids = [f["id"] for f in ledger.find_files(cur, sel.file)]
        if not ids:
            raise ReplayRefused(f"no file named {sel.file} in the ledger")
        cur.execute("SELECT * FROM invoices WHERE source_file_id = ANY(%s) AND status = ANY(%s)"
                    " AND review_reason IS NULL ORDER BY id", (ids, list(REPLAYABLE)))
        return list(cur.fetchall())
    if not sel.failed:
        raise ReplayRefused("say what to replay: --invoice VENDOR NUMBER, --failed or --file")
    cur.execute("SELECT * FROM invoices WHERE status = %s AND updated_at >= %s"
                " AND review_reason IS NULL ORDER BY id",
                (InvoiceStatus.FAILED, sel.since or date.min))
    return list(cur.fetchall())


def select_for_replay(ctx: TaskContext, sel: Selection, *, reason: str | None = None,
                      by: str | None = None, dry_run: bool = False) -> list[dict[str, Any]]:
    """Reset the chosen rows so resolve → post runs again; returns what was (or would be)
    replayed. Every replay is audited with who, when and why."""
    by = by or getpass.getuser()
    with db.transaction() as cur:
        rows = _chosen(cur, sel)
        chosen = [{"id": r["id"], "vendor_id": r["payload"]["vendor_id"],
                   "invoice_number": r["payload"]["invoice_number"], "status": r["status"],
                   "last_error": r["last_error"]} for r in rows]
        if dry_run:
            return chosen
        for row in rows:
            cur.execute("SELECT status FROM invoices WHERE id = %s FOR UPDATE", (row["id"],))
            # A failed invoice starts again from the step it had reached.
            cur.execute("UPDATE invoices SET status = CASE WHEN status = %(FAILED)s THEN"
                        " (CASE WHEN x3_supplier_code IS NULL THEN %(RECEIVED)s"
                        " ELSE %(VENDOR_RESOLVED)s END) ELSE status END, tries = 0,"
                        " updated_at = now()"
                        " WHERE id = %(id)s AND status <> %(POSTED)s",
                        states.params(id=row["id"]))
            audit.record(cur, "replay", "ok", ctx=ctx, invoice_id=row["id"], by=by,
                         reason=reason or "(none given)", previous_status=row["status"],
                         previous_error=row["last_error"], selection=sel.describe())
    return chosen
