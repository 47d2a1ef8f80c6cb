"""Post one invoice into X3 exactly once. Postgres decides, X3 confirms.

1. A session advisory lock per invoice: one poster at a time; released if the worker dies.
2. The row is marked `posting` and committed before X3 is called.
3. Any earlier attempt that reached X3 (attempts > 0) makes us ask X3 first whether the
   invoice exists (supplier + supplier document number), and adopt it if so.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from pipeline import audit, db, mapping, validation
from pipeline.audit import TaskContext
from pipeline.config import settings
from pipeline.x3.client import NewInvoice, NewInvoiceLine, X3Client
from pipeline.x3.errors import X3Error, X3ValidationError

POST_LOCK_NS = 0x4D4C_0004
POSTABLE = ("vendor_resolved", "posting", "failed")


class NotReadyToPost(Exception):
    """The invoice has no X3 supplier yet."""


class InvoiceRejectedByValidation(Exception):
    """GL account or dimension unknown to X3, or X3 refused the invoice: a person must act."""


@dataclass(frozen=True)
class PostOutcome:
    invoice_id: int
    status: str  # posted, adopted, skipped
    document_number: str | None = None
    reason: str | None = None


def post(ctx: TaskContext, invoice_id: int, client: X3Client) -> PostOutcome:
    with db.connection() as lock_conn:
        lock_conn.autocommit = True
        with lock_conn.cursor() as lock:
            lock.execute("SELECT pg_try_advisory_lock(%s, %s) AS ok", (POST_LOCK_NS, invoice_id))
            if not lock.fetchone()["ok"]:
                _audit(ctx, invoice_id, "skipped", reason="another worker is posting it now")
                return PostOutcome(invoice_id, "skipped", reason="in flight elsewhere")
            try:
                return _post_locked(ctx, invoice_id, client)
            finally:
                lock.execute("SELECT pg_advisory_unlock(%s, %s)", (POST_LOCK_NS, invoice_id))
                lock_conn.autocommit = False


def _audit(ctx: TaskContext, invoice_id: int, outcome: str, stage: str = "invoice_post",
           **detail: Any) -> None:
    with db.transaction() as cur:
        audit.record(cur, stage, outcome, ctx=ctx, invoice_id=invoice_id, **detail)


def _post_locked(ctx: TaskContext, invoice_id: int, client: X3Client) -> PostOutcome:
    with db.transaction() as cur:
        cur.execute("SELECT * FROM invoices WHERE id = %s FOR UPDATE SKIP LOCKED", (invoice_id,))
        inv = cur.fetchone()
        if inv is None:
            return PostOutcome(invoice_id, "skipped", reason="row locked or missing")
        if inv["status"] not in POSTABLE:
            audit.record(cur, "invoice_post", "skipped", ctx=ctx, invoice_id=invoice_id,
                         reason=f"status is {inv['status']}",
                         document_number=inv["x3_document_number"])
            return PostOutcome(invoice_id, "skipped", inv["x3_document_number"],
                               reason=f"status is {inv['status']}")
        if not inv["x3_supplier_code"]:
            raise NotReadyToPost(f"invoice {invoice_id} has no X3 supplier yet")
        document = build_invoice(cur, inv)
    supplier, number = document.supplier_code, document.document_number

    if inv["attempts"] > 0:
        existing = client.find_invoice(supplier, number)
        if existing:
            _mark_posted(ctx, invoice_id, existing, adopted=True)
            return PostOutcome(invoice_id, "adopted", existing)

    checked = _validate(ctx, invoice_id, document, client)

    with db.transaction() as cur:
        # The validation's audit row rides in the transaction that marks the row `posting`.
        audit.record(cur, "gl_validate", "ok", ctx=ctx, invoice_id=invoice_id, **checked)
        cur.execute("UPDATE invoices SET status = 'posting', attempts = attempts + 1,"
                    " updated_at = now() WHERE id = %s", (invoice_id,))
    try:
        doc_number = client.create_invoice(document)
    except X3ValidationError as exc:
        validation.forget()  # X3 refused something we thought it knew: ask afresh next time
        fail(ctx, invoice_id, str(exc), messages=exc.messages)
        raise InvoiceRejectedByValidation(str(exc)) from None
    except X3Error as exc:
        # Outcome may be unknown: the row stays `posting`, the next attempt asks X3 first.
        with db.transaction() as cur:
            cur.execute("UPDATE invoices SET last_error = %s, updated_at = now() WHERE id = %s",
                        (str(exc), invoice_id))
            audit.record(cur, "invoice_post", "error", ctx=ctx, invoice_id=invoice_id,
                         error=str(exc), error_type=type(exc).__name__, transient=exc.transient)
        raise
    _mark_posted(ctx, invoice_id, doc_number, adopted=False, document=document)
    return PostOutcome(invoice_id, "posted", doc_number)


def build_invoice(cur: Any, inv: dict[str, Any]) -> NewInvoice:
    s = settings()
    p = inv["payload"]
    # Two queries per invoice, not two per line.
    accounts = mapping.gl_accounts(cur, {ln["gl_account"] for ln in p["lines"]})
    centers = mapping.cost_centers(cur, {ln["cost_center"] for ln in p["lines"]
                                         if ln.get("cost_center")})
    lines = []
    for line in p["lines"]:
        dims = ()
        if line.get("cost_center"):
            dims = (centers[line["cost_center"]],)
        lines.append(NewInvoiceLine(
            line_number=int(line["line_number"]),
            account=accounts[line["gl_account"]],
            amount=Decimal(line["amount"]), quantity=Decimal(line["quantity"]),
            description=(line.get("description") or "")[:30], dimensions=dims,
        ))
    total = Decimal(p["invoice_total"])
    credit = p.get("document_type") == "credit_note"
    return NewInvoice(
        supplier_code=inv["x3_supplier_code"], document_number=p["invoice_number"],
        document_date=date.fromisoformat(p["invoice_date"]),
        accounting_date=date.fromisoformat(p["posting_date"] or p["invoice_date"]),
        due_date=date.fromisoformat(p["due_date"]) if p.get("due_date") else None,
        invoice_type=s.x3_credit_note_type if credit else s.x3_invoice_type,
        is_credit_note=credit, currency=p["currency"], company=s.x3_company, site=s.x3_site,
        total_including_tax=total,
        total_excluding_tax=sum((ln.amount for ln in lines), Decimal("0")),
        description=f"Stampli {p.get('stampli_invoice_id') or p['invoice_number']}"[:30],
        lines=tuple(lines),
    )


def _validate(ctx: TaskContext, invoice_id: int, document: NewInvoice, client: X3Client
              ) -> dict[str, Any]:
    """Fail the invoice if X3 lacks an account or dimension; else the audit detail to record."""
    problems = validation.problems(document, client, settings().x3_coa)
    if problems:
        _audit(ctx, invoice_id, "error", stage="gl_validate", problems=problems)
        fail(ctx, invoice_id, "; ".join(problems))
        raise InvoiceRejectedByValidation("; ".join(problems))
    return {"accounts": sorted({ln.account for ln in document.lines}),
            "dimensions": sorted(f"{t}={v}" for ln in document.lines for t, v in ln.dimensions)}


def _mark_posted(ctx: TaskContext, invoice_id: int, doc_number: str, *, adopted: bool,
                 document: NewInvoice | None = None) -> None:
    with db.transaction() as cur:
        cur.execute("UPDATE invoices SET status = 'posted', x3_document_number = %s,"
                    " last_error = NULL, posted_at = now(), updated_at = now() WHERE id = %s",
                    (doc_number, invoice_id))
        detail: dict[str, Any] = {"document_number": doc_number, "adopted": adopted}
        if document is not None:
            detail.update(supplier=document.supplier_code,
                          supplier_document=document.document_number,
                          total=str(document.total_including_tax), lines=len(document.lines))
        audit.record(cur, "invoice_post", "ok", ctx=ctx, invoice_id=invoice_id, **detail)


def fail(ctx: TaskContext, invoice_id: int, reason: str, **detail: Any) -> None:
    """Terminal failure: the row says why, a replay can pick it up."""
    with db.transaction() as cur:
        cur.execute("UPDATE invoices SET status = 'failed', last_error = %s, updated_at = now()"
                    " WHERE id = %s AND status <> 'posted'", (reason, invoice_id))
        audit.record(cur, "invoice_post", "error", ctx=ctx, invoice_id=invoice_id,
                     reason=reason, terminal=True, **detail)
