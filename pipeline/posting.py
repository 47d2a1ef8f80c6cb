"""Post one invoice into X3 exactly once. Postgres decides, X3 confirms.

1. A session advisory lock per invoice: one poster at a time; released if the worker dies.
2. The row is marked `posting` and committed before X3 is called.
3. Any earlier attempt that reached X3 (attempts > 0) makes us ask X3 first whether the
   invoice exists (supplier + supplier document number), and adopt it if so.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from pipeline import audit, db, logs, mapping, validation
from pipeline.audit import TaskContext
from pipeline.config import settings
from pipeline.x3.client import NewInvoice, NewInvoiceLine, X3Client
from pipeline.x3.errors import X3Error, X3ValidationError

log = logging.getLogger(__name__)
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
        # Posters are already serialised by the advisory lock; the row lock only waits for a
        # parse that is rewriting this row (SKIP LOCKED would drop the post silently).
        cur.execute("SELECT * FROM invoices WHERE id = %s FOR UPDATE", (invoice_id,))
        inv = cur.fetchone()
        if inv is None:
            raise LookupError(f"invoice {invoice_id} does not exist")
        if inv["status"] not in POSTABLE:
            audit.record(cur, "invoice_post", "skipped", ctx=ctx, invoice_id=invoice_id,
                         reason=f"status is {inv['status']}",
                         document_number=inv["x3_document_number"])
            return PostOutcome(invoice_id, "skipped", inv["x3_document_number"],
                               reason=f"status is {inv['status']}")
        if not inv["x3_supplier_code"]:
            raise NotReadyToPost(f"invoice {invoice_id} has no X3 supplier yet")
        try:
            document = build_invoice(cur, inv)
        except mapping.UnknownRoute as exc:
            problem = str(exc)
        else:
            problem = None
    if problem:
        _audit(ctx, invoice_id, "error", stage="gl_validate", problems=[problem])
        fail(ctx, invoice_id, problem)
        raise InvoiceRejectedByValidation(problem)
    with logs.bind(vendor_id=inv["payload"]["vendor_id"],
                   invoice_number=document.document_number):
        return _post_document(ctx, invoice_id, inv, document, client)


def _post_document(ctx: TaskContext, invoice_id: int, inv: dict[str, Any],
                   document: NewInvoice, client: X3Client) -> PostOutcome:
    supplier, number = document.supplier_code, document.document_number

    if inv["attempts"] > 0:
        # Under the supplier of the earlier attempt too, should the vendor link have changed.
        tried = [s for s in (inv.get("posting_supplier_code"), supplier) if s]
        existing = next((found for s in dict.fromkeys(tried)
                         if (found := client.find_invoice(s, number))), None)
        if existing:
            log.info("invoice already in X3 as %s (an earlier answer was lost): adopted",
                     existing)
            _mark_posted(ctx, invoice_id, existing, adopted=True)
            return PostOutcome(invoice_id, "adopted", existing)

    checked = _validate(ctx, invoice_id, document, client)

    if settings().dry_run:
        _audit(ctx, invoice_id, "skipped", dry_run=True, reason="dry run: not posted",
               would_post=_summary(document))
        return PostOutcome(invoice_id, "dry_run", reason="MLC_DRY_RUN is set")

    with db.transaction() as cur:
        # Only if nothing changed since we read it: a re-export (new payload) or a
        # cancellation (needs_review) that arrived meanwhile must win over this post.
        # The validation's audit row rides in the transaction that marks the row `posting`.
        audit.record(cur, "gl_validate", "ok", ctx=ctx, invoice_id=invoice_id, **checked)
        cur.execute("UPDATE invoices SET status = 'posting', attempts = attempts + 1,"
                    " posting_supplier_code = %s, updated_at = now()"
                    " WHERE id = %s AND status = ANY(%s) AND payload_sha256 = %s"
                    " AND review_reason IS NULL",
                    (supplier, invoice_id, list(POSTABLE), inv["payload_sha256"]))
        if cur.rowcount == 0:
            audit.record(cur, "invoice_post", "skipped", ctx=ctx, invoice_id=invoice_id,
                         reason="the invoice changed while it was being validated")
            return PostOutcome(invoice_id, "skipped", reason="changed meanwhile")
    started = time.monotonic()
    try:
        doc_number = client.create_invoice(document)
    except X3ValidationError as exc:
        log.warning("X3 refused the invoice: %s", exc)
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
    _mark_posted(ctx, invoice_id, doc_number, adopted=False, document=document,
                 elapsed_ms=round((time.monotonic() - started) * 1000, 1))
    log.info("posted to X3 as %s (supplier %s, total %s %s)", doc_number, supplier,
             document.total_including_tax, document.currency)
    return PostOutcome(invoice_id, "posted", doc_number)


def _summary(document: NewInvoice) -> dict[str, Any]:
    return {
        "supplier": document.supplier_code, "supplier_document": document.document_number,
        "type": document.invoice_type, "currency": document.currency,
        "total": str(document.total_including_tax), "company": document.company,
        "site": document.site, "document_date": document.document_date.isoformat(),
        "lines": [{"line": ln.line_number, "account": ln.account, "amount": str(ln.amount),
                   "quantity": str(ln.quantity),
                   "dimensions": [f"{t}={v}" for t, v in ln.dimensions]}
                  for ln in document.lines],
    }


def build_invoice(cur: Any, inv: dict[str, Any]) -> NewInvoice:
    s = settings()
    p = inv["payload"]
    credit = p.get("document_type") == "credit_note"
    # X3 carries a credit note's sign in its type: amounts travel positive.
    sign = Decimal(-1) if credit else Decimal(1)
    # Two queries per invoice, not two per line.
    accounts = mapping.gl_accounts(cur, {ln["gl_account"] for ln in p["lines"]})
    centers = mapping.cost_centers(cur, {ln["cost_center"] for ln in p["lines"]
                                         if ln.get("cost_center")})
    lines = []
    for line in p["lines"]:
        dims = []
        if line.get("cost_center"):
            dims.append(centers[line["cost_center"]])
        # Further dimensions named by the layout: {"PRJ": "P-100", "DEP": "OPS"}.
        dims += [mapping.dimension(cur, dim_type, value)
                 for dim_type, value in sorted((line.get("dimensions") or {}).items()) if value]
        lines.append(NewInvoiceLine(
            line_number=int(line["line_number"]),
            account=accounts[line["gl_account"]],
            amount=sign * Decimal(line["amount"]), quantity=Decimal(line["quantity"]),
            description=(line.get("description") or "")[:30], dimensions=tuple(dims),
        ))
    company, site = _route(cur, p)
    total = sign * Decimal(p["invoice_total"])
    return NewInvoice(
        supplier_code=inv["x3_supplier_code"], document_number=p["invoice_number"],
        document_date=date.fromisoformat(p["invoice_date"]),
        accounting_date=date.fromisoformat(p["posting_date"] or p["invoice_date"]),
        due_date=date.fromisoformat(p["due_date"]) if p.get("due_date") else None,
        invoice_type=s.x3_credit_note_type if credit else s.x3_invoice_type,
        is_credit_note=credit, currency=p["currency"], company=company, site=site,
        total_including_tax=total,
        total_excluding_tax=sum((ln.amount for ln in lines), Decimal("0")),
        description=f"Stampli {p.get('stampli_invoice_id') or p['invoice_number']}"[:30],
        lines=tuple(lines),
    )


def _route(cur: Any, payload: dict[str, Any]) -> tuple[str, str]:
    """One company and site per invoice, from its lines' location (or the default route)."""
    locations = {(ln.get("location") or "").strip() for ln in payload["lines"]}
    routes = {mapping.route(cur, loc) for loc in sorted(locations)}
    if len(routes) > 1:
        names = ", ".join(f"{c}/{s}" for c, s in sorted(routes))
        raise mapping.UnknownRoute(f"lines route to several X3 companies or sites ({names}): "
                                   "split the invoice in Stampli")
    return routes.pop()


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
                 document: NewInvoice | None = None, elapsed_ms: float | None = None) -> None:
    with db.transaction() as cur:
        # A review reason that arrived mid-post (cancelled, changed) keeps the row for a person.
        cur.execute("UPDATE invoices SET status = CASE WHEN review_reason IS NULL THEN 'posted'"
                    " ELSE 'needs_review' END, x3_document_number = %s,"
                    " last_error = NULL, posted_at = now(), updated_at = now() WHERE id = %s",
                    (doc_number, invoice_id))
        detail: dict[str, Any] = {"document_number": doc_number, "adopted": adopted}
        if document is not None:
            detail["posted"] = _summary(document)
            detail["elapsed_ms"] = elapsed_ms
        audit.record(cur, "invoice_post", "ok", ctx=ctx, invoice_id=invoice_id, **detail)


def fail(ctx: TaskContext, invoice_id: int, reason: str, **detail: Any) -> None:
    """Terminal failure: the row says why, a replay can pick it up."""
    reason = logs.mask(reason)  # whatever raised it: last_error is shown and exported
    with db.transaction() as cur:
        cur.execute("UPDATE invoices SET status = CASE WHEN review_reason IS NULL THEN 'failed'"
                    " ELSE 'needs_review' END, last_error = %s, updated_at = now()"
                    " WHERE id = %s AND status NOT IN ('posted', 'needs_review')",
                    (reason, invoice_id))
        audit.record(cur, "invoice_post", "error", ctx=ctx, invoice_id=invoice_id,
                     reason=reason, terminal=True, **detail)
