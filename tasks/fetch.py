"""mlc.fetch_exports: one poll of the Stampli export directory, then one parse task per file."""

from __future__ import annotations

import logging
from typing import Any

from pipeline import recovery
from pipeline.config import settings
from pipeline.stampli import poll
from tasks.base import MlcTask
from tasks.parse import parse_file
from workers.app import app

log = logging.getLogger(__name__)
MAX_RECHECKS = 30


@app.task(bind=True, base=MlcTask, name="mlc.fetch_exports", trail=False)
def fetch_exports(self: MlcTask, recheck: int = 0, **_: Any) -> dict[str, Any]:
    result = poll.poll(self.ctx)
    if result.locked_out:
        log.info("another poll is running; this one returns at once")
        return {"locked_out": True}
    # Each file row is committed by now: safe to enqueue its parse.
    for file_id in result.new_file_ids:
        parse_file.delay(file_id)
    requeued = _requeue_stuck(self)
    if result.error and result.transient and not self.out_of_retries():
        self.retry_later(RuntimeError(result.error))
    if result.waiting and recheck < MAX_RECHECKS:
        # Files still being written: look again soon rather than a whole interval later.
        fetch_exports.apply_async(kwargs={"recheck": recheck + 1},
                                  countdown=settings().stability_recheck)
    return {"fetched": result.new_file_ids, "waiting": result.waiting, "error": result.error,
            "requeued": requeued}


def _requeue_stuck(task: MlcTask) -> int:
    """Messages lost with a Redis restart: the rows still say what is unfinished."""
    from tasks.invoice import process_invoice

    stuck = recovery.find_stuck(task.ctx, settings().requeue_after)
    for file_id in stuck.file_ids:
        parse_file.delay(file_id)
    for invoice_id in stuck.invoice_ids:
        process_invoice.delay(invoice_id)
    if stuck.file_ids or stuck.invoice_ids:
        log.warning("re-enqueued %d files and %d invoices unchanged for %d s",
                    len(stuck.file_ids), len(stuck.invoice_ids), settings().requeue_after)
    return len(stuck.file_ids) + len(stuck.invoice_ids)
