"""mlc.resolve_vendor then mlc.post_invoice, per invoice. Both idempotent: they re-read the row."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from pipeline import posting, vendors
from pipeline.config import settings
from pipeline.x3 import attempts
from pipeline.x3.connect import shared_client
from pipeline.x3.errors import X3CreateInFlight, X3Error
from tasks.base import MlcTask
from workers.app import app

T = TypeVar("T")


_FAILED = object()


def _x3_step(task: MlcTask, invoice_id: int, step: Callable[[], T],
             stage: str = "invoice_post") -> T | object:
    """Run one X3 step: a refusal fails the invoice at once, trouble that may pass is retried
    with backoff until the invoice has failed MLC_MAX_RETRIES tries (counted in its row, so
    re-enqueues and redeliveries do not start again at 0), then it fails with the last error.
    A create that may still be in flight is a scheduled wait, not a failed try."""
    try:
        return step()
    except X3CreateInFlight as exc:
        task.retry_later(exc, exc.retry_after, stage=stage)
        raise  # unreachable: retry_later raises
    except X3Error as exc:
        # Refusals, auth and broken-contract errors (X3ProtocolError) are permanent.
        permanent = not exc.transient
        if not permanent and posting.count_try(invoice_id) <= settings().max_retries:
            task.retry_later(exc, getattr(exc, "retry_after", None), stage=stage)
        posting.fail(task.ctx, invoice_id, f"{type(exc).__name__}: {exc}",
                     retries=task.request.retries)
        return _FAILED


@app.task(bind=True, base=MlcTask, name="mlc.resolve_vendor")
def resolve_vendor(self: MlcTask, invoice_id: int, **_: Any) -> str | None:
    def resolve() -> str | None:
        with attempts.for_invoice_work(invoice_id, shared_client(), self.request.id) as client:
            return vendors.resolve(self.ctx, invoice_id, client)

    code = _x3_step(self, invoice_id, resolve, stage="vendor_lookup")
    if code is _FAILED or code is None:
        return None
    # Post in the same task: a second message per invoice costs more Celery work than the post
    # itself. A retry re-runs the resolution, which finds the link in one transaction.
    return _post(self, invoice_id)


@app.task(bind=True, base=MlcTask, name="mlc.post_invoice")
def post_invoice(self: MlcTask, invoice_id: int, **_: Any) -> dict[str, Any] | None:
    return _post(self, invoice_id)


def _post(self: MlcTask, invoice_id: int) -> dict[str, Any] | None:
    try:
        outcome = _x3_step(self, invoice_id,
                           lambda: posting.post(self.ctx, invoice_id, shared_client()))
    except posting.InvoiceRejectedByValidation:
        return None  # already failed with its reason on the row and in the audit trail
    except posting.NotReadyToPost:
        resolve_vendor.delay(invoice_id)
        return None
    if not isinstance(outcome, posting.PostOutcome):
        return None
    return {"invoice_id": invoice_id, "status": outcome.status,
            "document": outcome.document_number}
