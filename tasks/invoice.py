"""mlc.resolve_vendor then mlc.post_invoice, per invoice. Both idempotent: they re-read the row."""

from __future__ import annotations

from typing import Any

from pipeline import posting, vendors
from pipeline.x3.connect import shared_client
from pipeline.x3.errors import X3AuthError, X3Error, X3ValidationError
from tasks.base import MlcTask
from workers.app import app


def _give_up(task: MlcTask, invoice_id: int, exc: Exception) -> None:
    posting.fail(task.ctx, invoice_id, f"{type(exc).__name__}: {exc}",
                 retries=task.request.retries)


@app.task(bind=True, base=MlcTask, name="mlc.resolve_vendor")
def resolve_vendor(self: MlcTask, invoice_id: int, **_: Any) -> str | None:
    try:
        code = vendors.resolve(self.ctx, invoice_id, shared_client())
    except (X3ValidationError, X3AuthError) as exc:
        _give_up(self, invoice_id, exc)
        return None
    except X3Error as exc:
        if self.out_of_retries():
            _give_up(self, invoice_id, exc)
            return None
        self.retry_later(exc, getattr(exc, "retry_after", None))
    if code is not None:
        post_invoice.delay(invoice_id)
    return code


@app.task(bind=True, base=MlcTask, name="mlc.post_invoice")
def post_invoice(self: MlcTask, invoice_id: int, **_: Any) -> dict[str, Any] | None:
    try:
        outcome = posting.post(self.ctx, invoice_id, shared_client())
    except posting.InvoiceRejectedByValidation:
        return None  # already failed with its reason on the row and in the audit trail
    except posting.NotReadyToPost:
        resolve_vendor.delay(invoice_id)
        return None
    except X3AuthError as exc:
        _give_up(self, invoice_id, exc)
        return None
    except X3Error as exc:
        if self.out_of_retries():
            _give_up(self, invoice_id, exc)
            return None
        self.retry_later(exc, getattr(exc, "retry_after", None))
    return {"invoice_id": invoice_id, "status": outcome.status,
            "document": outcome.document_number}
