"""mlc.fetch_exports: one poll of the Stampli export directory, then one parse task per file."""

from __future__ import annotations

import logging
from typing import Any

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
    if result.error and result.transient and not self.out_of_retries():
        self.retry_later(RuntimeError(result.error))
    if result.waiting and recheck < MAX_RECHECKS:
        # Files still being written: look again soon rather than a whole interval later.
        fetch_exports.apply_async(kwargs={"recheck": recheck + 1},
                                  countdown=settings().stability_recheck)
    return {"fetched": result.new_file_ids, "waiting": result.waiting, "error": result.error}
