"""mlc.process_invoice: resolve the invoice's vendor, then post it, in one task per invoice.

One task, not a chain: a second message per invoice cost more Celery work than the post itself
(README, Benchmarks). Both steps are idempotent: they re-read the row. The names of earlier
releases (mlc.resolve_vendor, mlc.post_invoice) stay registered for the same body, so messages
queued before a deploy still run.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pipeline import posting, vendors
from pipeline.config import settings
from pipeline.x3.connect import shared_client
from pipeline.x3.errors import X3CreateInFlight, X3Error
from tasks.base import MlcTask
from workers.app import app

NAME = "mlc.process_invoice"
RENAMED = ("mlc.resolve_vendor", "mlc.post_invoice")
# Failures the pipeline expects and has already written to the row: Celery marks the task
# failed (Flower shows it) without a traceback in the worker log.
EXPECTED = (X3Error, posting.InvoiceRejectedByValidation)


@contextmanager
def x3_step(task: MlcTask, invoice_id: int, stage: str) -> Iterator[None]:
    """Trouble that may pass is retried with backoff until the invoice has failed
    MLC_MAX_RETRIES tries (counted in its row: re-enqueues and redeliveries do not start again
    at 0); a create that may still be in flight is a scheduled wait, not a failed try. What is
    not retried is raised: the task fails and `on_failure` writes why on the row."""
    try:
        yield
    except X3CreateInFlight as exc:
        task.retry_later(exc, exc.retry_after, stage=stage)
    except X3Error as exc:
        if exc.transient and posting.count_try(invoice_id) <= settings().max_retries:
            task.retry_later(exc, getattr(exc, "retry_after", None), stage=stage)
        raise


def _process(self: MlcTask, invoice_id: int, **_: Any) -> dict[str, Any] | None:
    with x3_step(self, invoice_id, "vendor_lookup"):
        code = vendors.resolve(self.ctx, invoice_id, shared_client())
    if code is None:
        return None  # posted or under review meanwhile: nothing to do
    with x3_step(self, invoice_id, "invoice_post"):
        outcome = posting.post(self.ctx, invoice_id, shared_client())
    return {"invoice_id": invoice_id, "status": outcome.status,
            "document": outcome.document_number}


def _on_failure(task: MlcTask, exc: BaseException, ids: dict[str, Any]) -> None:
    """The one failure hook of the invoice tasks: an X3 error that is not retried (a refusal,
    or retries exhausted) fails the invoice with its reason; an unknown outcome stays
    outcome_unknown (posting.fail decides). Rejections were written where they happened."""
    if isinstance(exc, X3Error) and ids.get("invoice_id") is not None:
        posting.fail(task.ctx, ids["invoice_id"], f"{type(exc).__name__}: {exc}",
                     retries=task.request.retries)


_OPTIONS = {"bind": True, "base": MlcTask, "stage": "invoice_post", "throws": EXPECTED,
            "failed": _on_failure}
process_invoice = app.task(name=NAME, **_OPTIONS)(_process)
for _old in RENAMED:
    app.task(name=_old, **_OPTIONS)(_process)
