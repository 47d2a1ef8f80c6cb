"""The one base Task: acks late, idempotent bodies, transient errors retried with backoff."""

from __future__ import annotations

import inspect
import logging
import random
from typing import Any

from celery import Task

from pipeline import logs
from pipeline.audit import TaskContext
from pipeline.config import ConfigError, settings
from pipeline.db import TRANSIENT_DB_ERRORS
from pipeline.secrets import masked_exception

log = logging.getLogger(__name__)
IDS = ("file_id", "invoice_id")  # what tasks receive, named in every log line and audit row


def _setting(name: str, default: int) -> int:
    """Celery reads these when it registers the tasks, Flower included: Flower runs without the
    database URL and the Fernet keys, so without Settings (a worker with bad settings has
    already stopped, in workers.app)."""
    try:
        return getattr(settings(), name)
    except ConfigError:
        return default


class MlcTask(Task):
    acks_late = True
    reject_on_worker_lost = True
    ignore_result = True
    # Transient database trouble is retried by Celery itself; X3 errors are decided per task.
    autoretry_for = TRANSIENT_DB_ERRORS
    retry_backoff = True
    retry_jitter = True
    # Declared by each task (app.task(stage=...)): the audit stage its retries are recorded
    # under, and its failure hook, `failed(task, exc, ids)`.
    stage = "poll"
    failed: Any = None

    @property
    def max_retries(self) -> int:  # type: ignore[override]
        return _setting("max_retries", 8)

    @property
    def retry_backoff_max(self) -> int:  # type: ignore[override]
        return _setting("retry_backoff_max", 1800)

    def ids(self, args: Any, kwargs: Any) -> dict[str, Any]:
        """The ids this call works on, however they were passed (positional or by name)."""
        signature = self.__dict__.get("_run_signature")
        if signature is None:  # once per task: this runs on every call
            signature = self.__dict__["_run_signature"] = inspect.signature(self.run)
        try:
            bound = signature.bind_partial(*args, **kwargs).arguments
        except TypeError:
            bound = dict(kwargs)
        return {k: bound.get(k) for k in IDS}

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # Every log line of the task carries its id, name and the ids it works on.
        with logs.bind(task_id=self.request.id, task=self.name, **self.ids(args, kwargs)):
            return super().__call__(*args, **kwargs)

    def on_failure(self, exc: Exception, task_id: str, args: Any, kwargs: Any,
                   einfo: Any) -> None:
        if self.failed is not None:
            type(self).failed(self, exc, self.ids(args, kwargs))

    @property
    def ctx(self) -> TaskContext:
        return TaskContext(task_id=self.request.id, attempt=self.request.retries + 1)

    def backoff(self, retry_after: float | None = None) -> float:
        """Exponential backoff with full jitter, capped below the visibility timeout."""
        cap = settings().retry_backoff_max
        if retry_after:
            return min(cap, retry_after + random.uniform(0, 1))
        base = min(cap, 2 ** (self.request.retries + 1))
        return random.uniform(base / 2, base)

    def out_of_retries(self) -> bool:
        return self.request.retries >= settings().max_retries

    def retry_later(self, exc: Exception, retry_after: float | None = None, *,
                    stage: str | None = None) -> Any:
        countdown = self.backoff(retry_after)
        # What Celery is handed travels on: retry events, Flower, the result backend.
        exc = masked_exception(exc)  # type: ignore[assignment]
        self.request.mlc_retry = {"stage": stage, "countdown": countdown}
        log.warning("%s[%s] retry %d in %.1fs: %s", self.name, self.request.id,
                    self.request.retries + 1, countdown, exc)
        # The bound is the caller's (an invoice counts its tries in its row): Celery's own
        # count restarts with every re-enqueue, so it must not refuse this retry.
        raise self.retry(exc=exc, countdown=countdown, max_retries=self.request.retries + 1)

    def on_retry(self, exc: Exception, task_id: str, args: Any, kwargs: Any,
                 einfo: Any) -> None:
        """Every retry is on the audit trail (the error, then "attempt N+1") and counts in
        mlc_retries_total. Waiting for a vendor file to be parsed is not a retry of an error."""
        from pipeline import ledger

        if isinstance(exc, ledger.NotReady):
            return
        planned = getattr(self.request, "mlc_retry", None) or {}
        self.record_retry(exc, self.ids(args, kwargs), stage=planned.get("stage"),
                          countdown=planned.get("countdown"))

    def record_retry(self, exc: BaseException, ids: dict[str, Any], *, stage: str | None,
                     countdown: float | None) -> None:
        """The audit row of one retry: what on_retry writes, and what a batch writes for an
        invoice it hands on as its own task (tasks/invoice.py). mlc_retries_total counts these
        rows (ops/metrics.py), so both count alike. Never raises: the database may be why."""
        try:
            from pipeline import audit, db

            with db.transaction() as cur:
                audit.record(cur, stage or self.stage,
                             "error", ctx=self.ctx, source_file_id=ids.get("file_id"),
                             invoice_id=ids.get("invoice_id"), retry=True,
                             error=f"{type(exc).__name__}: {exc}", task=self.name,
                             next_attempt=self.request.retries + 2,
                             retry_in_s=round(countdown, 1) if countdown else None)
        except Exception:  # noqa: BLE001 - the database may be why we retry; the log has it
            log.warning("%s[%s]: retry not recorded in the audit trail", self.name,
                        self.request.id, exc_info=True)
