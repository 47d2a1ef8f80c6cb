"""The one base Task: acks late, idempotent bodies, transient errors retried with backoff."""

from __future__ import annotations

import logging
import random
from typing import Any

from celery import Task

from pipeline import logs
from pipeline.audit import TaskContext
from pipeline.config import settings
from pipeline.db import TRANSIENT_DB_ERRORS
from pipeline.secrets import masked_exception

log = logging.getLogger(__name__)
_FIRST_ARG = {"mlc.parse_file": "file_id", "mlc.resolve_vendor": "invoice_id",
              "mlc.post_invoice": "invoice_id"}


class MlcTask(Task):
    acks_late = True
    reject_on_worker_lost = True
    ignore_result = True
    # Transient database trouble is retried by Celery itself; X3 errors are decided per task.
    autoretry_for = TRANSIENT_DB_ERRORS
    retry_backoff = True
    retry_jitter = True

    @property
    def max_retries(self) -> int:  # type: ignore[override]
        return settings().max_retries

    @property
    def retry_backoff_max(self) -> int:  # type: ignore[override]
        return settings().retry_backoff_max

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # Every log line of the task carries its id, name and the ids it works on.
        ids = {k: kwargs.get(k) for k in ("file_id", "invoice_id")}
        if args and self.name in _FIRST_ARG:
            ids[_FIRST_ARG[self.name]] = args[0]
        with logs.bind(task_id=self.request.id, task=self.name, **ids):
            return super().__call__(*args, **kwargs)

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

    def retry_later(self, exc: Exception, retry_after: float | None = None) -> Any:
        countdown = self.backoff(retry_after)
        # What Celery is handed travels on: retry events, Flower, the result backend.
        exc = masked_exception(exc)  # type: ignore[assignment]
        log.warning("%s[%s] retry %d in %.1fs: %s", self.name, self.request.id,
                    self.request.retries + 1, countdown, exc)
        # The bound is the caller's (an invoice counts its tries in its row): Celery's own
        # count restarts with every re-enqueue, so it must not refuse this retry.
        raise self.retry(exc=exc, countdown=countdown, max_retries=self.request.retries + 1)
