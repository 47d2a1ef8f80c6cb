"""Post one invoice into X3 exactly once. Postgres decides, X3 confirms.

1. A session advisory lock per invoice: one poster at a time; released if the worker dies.
2. The row is marked `posting`, with the attempt's start (database clock), and committed before
   X3 is called.
3. A create whose answer did not come leaves the invoice `outcome_unknown`: X3 keeps working on
   a request whose client gave up, so the outcome is settled only by a look-up (supplier +
   supplier document). Found: adopted. Not found: a new create only once the first can no
   longer be in flight (`MLC_X3_INFLIGHT_WINDOW` after it started); before that, look again.
   That look-up comes before any check that could fail the invoice (mapping, route, supplier).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from pipeline import audit, db, locks, logs, mapping, validation
from pipeline.audit import TaskContext
from pipeline.config import settings
from pipeline.states import IN_FLIGHT, POSTABLE, InvoiceStatus
from pipeline.x3.attempts import RecordingClient, recording
from pipeline.x3.client import NewInvoice, NewInvoiceLine, X3Client
from pipeline.x3.errors import X3CreateInFlight, X3Error, X3OutcomeUnknown, X3ValidationError

log = logging.getLogger(__name__)
# While the window is open, look again this often (found earlier = adopted earlier).
LOOK_AGAIN_EVERY = 60.0


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
    with locks.try_held(locks.invoice_post(invoice_id)) as ours:
        if not ours:
            _audit(ctx, invoice_id, "skipped", reason="another worker is posting it now")
            return PostOutcome(invoice_id, "skipped", reason="in flight elsewhere")
        with recording(invoice_id=invoice_id, task_id=ctx.task_id):
            return _post_locked(ctx, invoice_id, RecordingClient(client))


def _audit(ctx: TaskContext, invoice_id: int, outcome: str, stage: str = "invoice_post",
           **detail: Any) -> None:
    with db.transaction() as cur:
        audit.record(cur, stage, outcome, ctx=ctx, invoice_id=invoice_id, **detail)


def _read(ctx: TaskContext, invoice_id: int) -> dict[str, Any] | PostOutcome:
    """The row, or the outcome for a row that is not to be posted. A row with no earlier
    attempt to settle and a supplier comes with its X3 document built in the same transaction
    (`document`, or `problem` when its route is unknown)."""
    with db.transaction() as cur:
        # Posters are already serialised by the advisory lock; the row lock only waits for a
        # parse that is rewriting this row (SKIP LOCKED would drop the post silently).
        cur.execute("SELECT *, extract(epoch FROM now() - attempt_started_at) AS attempt_age"
                    " FROM invoices WHERE id = %s FOR UPDATE", (invoice_id,))
        inv = cur.fetchone()
        if inv is None:
            raise LookupError(f"invoice {invoice_id} does not exist")
        if inv["status"] not in POSTABLE:
            audit.record(cur, "invoice_post", "skipped", ctx=ctx, invoice_id=invoice_id,
                         reason=f"status is {inv['status']}",
                         document_number=inv["x3_document_number"])
            return PostOutcome(invoice_id, "skipped", inv["x3_document_number"],
                               reason=f"status is {inv['status']}")
        if inv["attempt_started_at"] is None and inv["x3_supplier_code"]:
            _build_into(cur, inv)
    return inv


def _build_into(cur: Any, inv: dict[str, Any]) -> None:
    inv["document"], inv["problem"] = None, None
    try:
        inv["document"] = build_invoice(cur, inv)
    except mapping.UnknownRoute as exc:
        inv["problem"] = str(exc)


def _post_locked(ctx: TaskContext, invoice_id: int, client: X3Client) -> PostOutcome:
    inv = _read(ctx, invoice_id)
    if isinstance(inv, PostOutcome):
        return inv
    with logs.bind(vendor_id=inv["payload"]["vendor_id"],
                   invoice_number=inv["payload"]["invoice_number"]):
        if inv["attempt_started_at"] is not None:
            settled = _settle_earlier_attempt(ctx, inv, client)
            if settled is not None:
                return settled
        if not inv["x3_supplier_code"]:
            raise NotReadyToPost(f"invoice {invoice_id} has no X3 supplier yet")
        if "document" not in inv:  # an earlier attempt was settled first: build it now
            with db.transaction() as cur:
                _build_into(cur, inv)
        document, problem = inv["document"], inv["problem"]
        if problem:
            _audit(ctx, invoice_id, "error", stage="gl_validate", problems=[problem])
            fail(ctx, invoice_id, problem)
            raise InvoiceRejectedByValidation(problem)
        return _post_document(ctx, invoice_id, inv, document, client)


def _settle_earlier_attempt(ctx: TaskContext, inv: dict[str, Any], client: X3Client
                            ) -> PostOutcome | None:
    """Ask X3 about a create whose outcome is unknown. Adopted: the outcome. Still possibly in
    flight: X3CreateInFlight. Surely not in X3: None (the caller may create again)."""
    invoice_id, number = inv["id"], inv["payload"]["invoice_number"]
    # Under the supplier of the earlier attempt too, should the vendor link have changed.
    tried = [s for s in (inv.get("posting_supplier_code"), inv["x3_supplier_code"]) if s]
    existing = next((found for s in dict.fromkeys(tried)
                     if (found := client.find_invoice(s, number))), None)
    started = inv["attempt_started_at"].isoformat()
    if existing:
        log.info("invoice already in X3 as %s (an earlier answer was lost): adopted", existing)
        _mark_posted(ctx, invoice_id, existing, adopted=True, attempt_started_at=started)
        return PostOutcome(invoice_id, "adopted", existing)
    window = settings().x3_inflight_window
    age = float(inv["attempt_age"])
    if age < window:
        left = window - age
        reason = (f"outcome unknown: the create sent at {started} is not in X3 yet and may"
                  f" still commit; looking again, a new create only after {window:g} s"
                  f" ({left:.0f} s from now)")
        with db.transaction() as cur:
            cur.execute("UPDATE invoices SET status = %s, last_error = %s,"
                        " updated_at = now() WHERE id = %s AND status = ANY(%s)",
                        (InvoiceStatus.OUTCOME_UNKNOWN, reason, invoice_id, list(IN_FLIGHT)))
            audit.record(cur, "invoice_post", "skipped", ctx=ctx, invoice_id=invoice_id,
                         reason=reason, looked_up=tried, attempt_started_at=started,
                         inflight_window=window)
        raise X3CreateInFlight(reason, retry_after=min(left, LOOK_AGAIN_EVERY) + 0.5)
    with db.transaction() as cur:
        # Settled: the earlier create can no longer commit and X3 does not hold it. A re-export
        # or cancellation that arrived meanwhile now goes to a person.
        cur.execute("UPDATE invoices SET attempt_started_at = NULL, updated_at = now(),"
                    " status = CASE WHEN review_reason IS NULL THEN status"
                    " ELSE %s END WHERE id = %s RETURNING status",
                    (InvoiceStatus.NEEDS_REVIEW, invoice_id))
        review = cur.fetchone()["status"] == InvoiceStatus.NEEDS_REVIEW
        audit.record(cur, "invoice_post", "ok", ctx=ctx, invoice_id=invoice_id,
                     settled="not in X3", looked_up=tried, attempt_started_at=started,
                     inflight_window=window,
                     reason=f"the create sent at {started} is not in X3 {age:.0f} s later"
                            " (past the in-flight window): it may be sent again")
    if review:
        return PostOutcome(invoice_id, "skipped", reason="changed or cancelled: needs review")
    if inv["tries"] >= settings().max_retries:
        reason = (f"not in X3 after {inv['tries']} tries (MLC_MAX_RETRIES): replay to post it")
        fail(ctx, invoice_id, reason)
        raise InvoiceRejectedByValidation(reason)
    return None


def _post_document(ctx: TaskContext, invoice_id: int, inv: dict[str, Any],
                   document: NewInvoice, client: X3Client) -> PostOutcome:
    supplier = document.supplier_code
    checked = _validate(ctx, invoice_id, document, client)

    if settings().dry_run:
        _audit(ctx, invoice_id, "skipped", dry_run=True, reason="dry run: not posted",
               would_post=_summary(document))
        return PostOutcome(invoice_id, "dry_run", reason="MLC_DRY_RUN is set")

    with db.transaction() as cur:
        # Only if nothing changed since we read it: a re-export (new payload) or a
        # cancellation (needs_review) that arrived meanwhile must win over this post.
        # The validation's audit row rides in the transaction that marks the row `posting`.
        shortened = shortened_texts(inv["payload"])
        if shortened:
            checked["shortened"] = shortened
        audit.record(cur, "gl_validate", "ok", ctx=ctx, invoice_id=invoice_id, **checked)
        cur.execute("UPDATE invoices SET status = %s, attempts = attempts + 1,"
                    " attempt_started_at = now(), posting_supplier_code = %s,"
                    " updated_at = now() WHERE id = %s AND status = ANY(%s)"
                    " AND payload_sha256 = %s AND review_reason IS NULL",
                    (InvoiceStatus.POSTING, supplier, invoice_id, list(POSTABLE),
                     inv["payload_sha256"]))
        if cur.rowcount == 0:
            # Nothing of it can be in flight (no unsettled attempt): a re-export or
            # cancellation that arrived meanwhile hands it to a person now, or every sweep
            # would find it stuck and skip it again.
            cur.execute("UPDATE invoices SET status = %s, updated_at = now() WHERE id = %s"
                        " AND review_reason IS NOT NULL AND attempt_started_at IS NULL"
                        " AND status = ANY(%s)",
                        (InvoiceStatus.NEEDS_REVIEW, invoice_id, list(POSTABLE)))
            audit.record(cur, "invoice_post", "skipped", ctx=ctx, invoice_id=invoice_id,
                         reason="the invoice changed while it was being validated")
            return PostOutcome(invoice_id, "skipped", reason="changed meanwhile")
    started = time.monotonic()
    try:
        doc_number = client.create_invoice(document)
    except X3ValidationError as exc:
        log.warning("X3 refused the invoice: %s", exc)
        validation.forget()  # X3 refused something we thought it knew: ask afresh next time
        fail(ctx, invoice_id, str(exc), settled=True, messages=exc.messages)
        raise InvoiceRejectedByValidation(str(exc)) from None
    except X3OutcomeUnknown as exc:
        # Sent, no readable answer: only a look-up can settle it (see _settle_earlier_attempt).
        _note_error(ctx, invoice_id, exc, InvoiceStatus.OUTCOME_UNKNOWN, settled=False)
        raise
    except X3Error as exc:
        # X3 answered that it did not do it (refused credentials, busy, down): nothing was
        # created, the next attempt may create at once.
        _note_error(ctx, invoice_id, exc, InvoiceStatus.VENDOR_RESOLVED, settled=True)
        raise
    _mark_posted(ctx, invoice_id, doc_number, adopted=False, document=document,
                 elapsed_ms=round((time.monotonic() - started) * 1000, 1))
    log.info("posted to X3 as %s (supplier %s, total %s %s)", doc_number, supplier,
             document.total_including_tax, document.currency)
    return PostOutcome(invoice_id, InvoiceStatus.POSTED, doc_number)


def _note_error(ctx: TaskContext, invoice_id: int, exc: X3Error, status: str, *,
                settled: bool) -> None:
    with db.transaction() as cur:
        cur.execute("UPDATE invoices SET status = %s, last_error = %s, updated_at = now(),"
                    " attempt_started_at = CASE WHEN %s THEN NULL ELSE attempt_started_at END"
                    " WHERE id = %s AND status = %s",
                    (status, str(exc), settled, invoice_id, InvoiceStatus.POSTING))
        audit.record(cur, "invoice_post", "error", ctx=ctx, invoice_id=invoice_id,
                     error=str(exc), error_type=type(exc).__name__, transient=exc.transient,
                     outcome_unknown=not settled)


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


# X3 field lengths (shared/sage-x3-api.md): keys too long are refused at parse; free text is cut
# to fit, and what was cut is named in the audit trail (`shortened`).
LINE_DESCRIPTION_MAX = 30


def shortened_texts(payload: dict[str, Any]) -> list[str]:
    """What build_invoice cuts to fit X3, in words for the audit trail."""
    return [f"line {ln['line_number']} description cut to {LINE_DESCRIPTION_MAX} characters"
            f" (X3 DES limit; it had {len(ln['description'])})"
            for ln in payload["lines"]
            if len(ln.get("description") or "") > LINE_DESCRIPTION_MAX]


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
            description=(line.get("description") or "")[:LINE_DESCRIPTION_MAX],
            dimensions=tuple(dims),
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
                 document: NewInvoice | None = None, elapsed_ms: float | None = None,
                 attempt_started_at: str | None = None) -> None:
    with db.transaction() as cur:
        # A review reason that arrived mid-post (cancelled, changed) keeps the row for a person.
        cur.execute("UPDATE invoices SET status = CASE WHEN review_reason IS NULL THEN %s"
                    " ELSE %s END, x3_document_number = %s, attempt_started_at = NULL,"
                    " last_error = NULL, posted_at = now(), updated_at = now() WHERE id = %s",
                    (InvoiceStatus.POSTED, InvoiceStatus.NEEDS_REVIEW, doc_number, invoice_id))
        detail: dict[str, Any] = {"document_number": doc_number, "adopted": adopted}
        if adopted:
            detail["reason"] = ("found in X3 by supplier and document number: an earlier"
                                " create's answer was lost")
            detail["attempt_started_at"] = attempt_started_at
        if document is not None:
            detail["posted"] = _summary(document)
            detail["elapsed_ms"] = elapsed_ms
        audit.record(cur, "invoice_post", "ok", ctx=ctx, invoice_id=invoice_id, **detail)


def fail(ctx: TaskContext, invoice_id: int, reason: str, *, settled: bool = False,
         **detail: Any) -> str | None:
    """Terminal failure: the row says why, a replay can pick it up. A row whose last create
    may still be in X3 (outcome unknown, not `settled` by an answer) is never marked failed:
    it stays `outcome_unknown` and the poll's sweep looks it up again."""
    reason = logs.mask(reason)  # whatever raised it: last_error is shown and exported
    with db.transaction() as cur:
        # An outcome still unknown wins over a review reason: the sweep must go on looking it
        # up (a person reviewing an invoice X3 may hold, with no document number, decides blind).
        cur.execute("UPDATE invoices SET status = CASE"
                    " WHEN attempt_started_at IS NOT NULL AND NOT %s THEN %s"
                    " WHEN review_reason IS NOT NULL THEN %s ELSE %s END,"
                    " last_error = %s,"
                    " attempt_started_at = CASE WHEN %s THEN NULL ELSE attempt_started_at END,"
                    " updated_at = now() WHERE id = %s AND status <> ALL(%s) RETURNING status",
                    (settled, InvoiceStatus.OUTCOME_UNKNOWN, InvoiceStatus.NEEDS_REVIEW,
                     InvoiceStatus.FAILED, reason, settled, invoice_id,
                     [InvoiceStatus.POSTED, InvoiceStatus.NEEDS_REVIEW]))
        row = cur.fetchone()
        unknown = row is not None and row["status"] == InvoiceStatus.OUTCOME_UNKNOWN
        audit.record(cur, "invoice_post", "error", ctx=ctx, invoice_id=invoice_id,
                     reason=reason, terminal=not unknown, outcome_unknown=unknown, **detail)
    return row["status"] if row else None


def count_try(invoice_id: int) -> int:
    """One more failed try of this invoice (kept in the row: it survives re-enqueues)."""
    with db.transaction() as cur:
        cur.execute("UPDATE invoices SET tries = tries + 1 WHERE id = %s RETURNING tries",
                    (invoice_id,))
        row = cur.fetchone()
    return row["tries"] if row else 0
