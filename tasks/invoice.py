"""mlc.process_invoice: resolve the invoice's vendor, then post it, in one task per invoice;
mlc.process_invoices: the same for several invoices of one file, in one task.

One task, not a chain: a second message per invoice cost more Celery work than the post itself
(README, Benchmarks). Both steps are idempotent: they re-read the row. The names of earlier
releases (mlc.resolve_vendor, mlc.post_invoice) stay registered for the same body, so messages
queued before a deploy still run.

The parse task sends batches (MLC_INVOICES_PER_TASK ids of one file per message): Celery's own
work per message (consumer, events, tracing: about a third of a worker's CPU per invoice) is
then paid once for several invoices. Each invoice of a batch goes through the very steps of the
single task (`_post_one`); one the single task would retry is handed on as its own
mlc.process_invoice, so a slow or refused invoice neither holds up nor fails the others.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded

from pipeline import logs, posting, vendors
from pipeline.audit import TaskContext
from pipeline.config import settings
from pipeline.db import TRANSIENT_DB_ERRORS
from pipeline.secrets import masked_exception
from pipeline.x3.connect import shared_client
from pipeline.x3.errors import X3CreateInFlight, X3Error
from tasks.base import MlcTask
from workers.app import app

log = logging.getLogger(__name__)
NAME = "mlc.process_invoice"
BATCH_NAME = "mlc.process_invoices"
RENAMED = ("mlc.resolve_vendor", "mlc.post_invoice")
# Failures the pipeline expects and has already written to the row: Celery marks the task
# failed (Flower shows it) without a traceback in the worker log.
EXPECTED = (X3Error, posting.InvoiceRejectedByValidation)


class RetryLater(Exception):
    """x3_step's verdict on trouble that may pass: try this invoice again later. The single task
    retries itself; a batch hands the invoice on as its own task after the same countdown."""

    def __init__(self, exc: X3Error, retry_after: float | None, stage: str) -> None:
        super().__init__(f"{type(exc).__name__}: {exc}")
        self.exc, self.retry_after, self.stage = exc, retry_after, stage


@contextmanager
def x3_step(invoice_id: int, stage: str) -> Iterator[None]:
    """Trouble that may pass is retried with backoff until the invoice has failed
    MLC_MAX_RETRIES tries (counted in its row: re-enqueues and redeliveries do not start again
    at 0); a create that may still be in flight is a scheduled wait, not a failed try. Both are
    a RetryLater. What is not retried is raised: the task fails and `on_failure` writes why on
    the row (a batch calls the same hook for that one invoice)."""
    try:
        yield
    except X3CreateInFlight as exc:
        raise RetryLater(exc, exc.retry_after, stage) from exc
    except X3Error as exc:
        if exc.transient and posting.count_try(invoice_id) <= settings().max_retries:
            raise RetryLater(exc, getattr(exc, "retry_after", None), stage) from exc
        raise


def _post_one(ctx: TaskContext, invoice_id: int) -> dict[str, Any] | None:
    """One invoice, both steps: the whole of mlc.process_invoice, and of each invoice of a
    batch. Exactly once is posting.post's and vendors.resolve's (locks, look-ups before any
    re-create), whichever task calls them."""
    with x3_step(invoice_id, "vendor_lookup"):
        code = vendors.resolve(ctx, invoice_id, shared_client())
    if code is None:
        return None  # posted or under review meanwhile: nothing to do
    with x3_step(invoice_id, "invoice_post"):
        outcome = posting.post(ctx, invoice_id, shared_client())
    return {"invoice_id": invoice_id, "status": outcome.status,
            "document": outcome.document_number}


def _process(self: MlcTask, invoice_id: int, **_: Any) -> dict[str, Any] | None:
    try:
        return _post_one(self.ctx, invoice_id)
    except RetryLater as later:
        verdict = later
    # Outside the except block: Celery's Retry is not chained to the verdict.
    return self.retry_later(verdict.exc, verdict.retry_after, stage=verdict.stage)


def _on_failure(task: MlcTask, exc: BaseException, ids: dict[str, Any]) -> None:
    """The one failure hook of the invoice tasks: an X3 error that is not retried (a refusal,
    or retries exhausted) fails the invoice with its reason; an unknown outcome stays
    outcome_unknown (posting.fail decides). Rejections were written where they happened."""
    if isinstance(exc, X3Error) and ids.get("invoice_id") is not None:
        posting.fail(task.ctx, ids["invoice_id"], f"{type(exc).__name__}: {exc}",
                     retries=task.request.retries)


def _clock() -> float:
    return time.monotonic()  # a function of its own: tests move the batch's clock


def _process_batch(self: MlcTask, invoice_ids: list[int], **_: Any) -> dict[str, int]:
    """Each invoice in order, as mlc.process_invoice would, but one invoice's trouble stays its
    own (`_one_of_batch`). Past a quarter of MLC_TASK_TIME_LIMIT the rest goes on in a new
    batch, so a slow X3 never drives a batch into the time limit. What ends the batch goes on
    from the invoice it hit, never from the first: a transient database error retries the batch
    with the invoices not done yet (Celery's retry: counted, with backoff, bounded by
    MLC_MAX_RETRIES, then the poll's sweep), and the soft time limit hands them to a new batch
    before the task fails. The invoice it hit may be repeated: every step is idempotent (a
    posted invoice is skipped by its status; posting.post's lock and its look-up before any
    re-create hold whichever run comes first). Returns the count of each outcome."""
    started, budget = _clock(), settings().task_time_limit / 4
    counts: Counter[str] = Counter()
    for index, invoice_id in enumerate(invoice_ids):
        rest = list(invoice_ids[index:])
        # Never before the first invoice: every batch moves at least one invoice on.
        if index and _clock() - started > budget:
            process_invoices.apply_async(args=[rest])
            log.info("%s[%s]: %.0f s spent, %d invoices handed on to a new batch", self.name,
                     self.request.id, _clock() - started, len(rest))
            counts["handed_on"] += len(rest)
            break
        try:
            with logs.bind(invoice_id=invoice_id):
                counts[_one_of_batch(self, invoice_id)] += 1
        except SoftTimeLimitExceeded:
            process_invoices.apply_async(args=[rest])
            log.warning("%s[%s]: soft time limit at invoice %d; %d invoices handed on to a new"
                        " batch", self.name, self.request.id, invoice_id, len(rest))
            raise
        except TRANSIENT_DB_ERRORS as exc:
            # Not autoretry's whole batch again: the invoices already settled or handed on
            # would run (and count a try) once more each time.
            raise self.retry(args=[rest], kwargs={}, exc=exc, countdown=self.backoff()) from None
    return dict(counts)


def _one_of_batch(task: MlcTask, invoice_id: int) -> str:
    """One invoice of a batch; its outcome for the summary. Raises only what must end the
    batch: transient database errors and the soft time limit (see _process_batch)."""
    try:
        return _settle_one(task, invoice_id)
    except (*TRANSIENT_DB_ERRORS, SoftTimeLimitExceeded):
        raise
    except Exception:  # noqa: BLE001 - one invoice's bug must not stop the others
        # The row keeps its status (received, vendor_resolved, posting): the poll's sweep
        # re-enqueues it as its own mlc.process_invoice once unchanged for MLC_REQUEUE_AFTER
        # (pipeline/recovery.py, tasks/fetch.py), as for a single task that failed this way.
        log.exception("invoice %d: unexpected error; the batch goes on", invoice_id)
        return "error"


def _settle_one(task: MlcTask, invoice_id: int) -> str:
    try:
        result = _post_one(task.ctx, invoice_id)
    except RetryLater as later:
        _hand_on(task, invoice_id, later)
        return "retried"
    except X3Error as exc:  # a refusal, or out of retries: the single task's failure hook
        log.warning("invoice %d failed: %s: %s", invoice_id, type(exc).__name__, exc)
        _on_failure(task, exc, {"invoice_id": invoice_id})
        return "failed"
    except posting.InvoiceRejectedByValidation:
        return "rejected"  # already written on the row
    return "skipped" if result is None else str(result["status"])


def _hand_on(task: MlcTask, invoice_id: int, later: RetryLater) -> None:
    """What the single task's retry does, for one invoice of a batch: its own
    mlc.process_invoice after the same countdown, numbered as the retry would be (Celery's
    `retries`: its audit rows say attempt 2, its backoff grows as a retry's), and the same
    audit row, which mlc_retries_total counts. The batch goes on with its next invoice."""
    countdown = task.backoff(later.retry_after)
    exc = masked_exception(later.exc)
    process_invoice.apply_async(args=[invoice_id], countdown=countdown,
                                retries=task.request.retries + 1)
    log.warning("invoice %d handed on as its own task, retry %d in %.1fs: %s", invoice_id,
                task.request.retries + 1, countdown, exc)
    task.record_retry(exc, {"invoice_id": invoice_id}, stage=later.stage, countdown=countdown)


_OPTIONS = {"bind": True, "base": MlcTask, "stage": "invoice_post", "throws": EXPECTED,
            "failed": _on_failure}
process_invoice = app.task(name=NAME, **_OPTIONS)(_process)
for _old in RENAMED:
    app.task(name=_old, **_OPTIONS)(_process)
# No failure hook: an X3 error is settled per invoice inside; a batch has no one invoice_id.
process_invoices = app.task(name=BATCH_NAME, bind=True, base=MlcTask,
                            stage="invoice_post")(_process_batch)
