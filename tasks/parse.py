"""mlc.parse_file: parse one fetched file; fan out one invoice pipeline per new invoice."""

from __future__ import annotations

from typing import Any

from pipeline import ledger, prefetch
from pipeline.stampli import poll
from pipeline.states import FileStatus
from tasks.base import MlcTask
from workers.app import app


@app.task(bind=True, base=MlcTask, name="mlc.parse_file", trail=False, stage="file_parse")
def parse_file(self: MlcTask, file_id: int, **_: Any) -> dict[str, Any]:
    from tasks.invoice import process_invoice

    try:
        outcome = ledger.parse_file(self.ctx, file_id)
    except ledger.NotReady as exc:
        # Vendor files of the same poll are parsed first; wait briefly for them.
        raise self.retry(exc=exc, countdown=2, max_retries=300) from None
    if outcome.status == FileStatus.REJECTED and not outcome.already_parsed:
        poll.quarantine(self.ctx, file_id)
    # One batched X3 query per code type for the whole file, before any invoice asks alone.
    prefetch.prefetch_codes(outcome.invoice_ids)
    for invoice_id in outcome.invoice_ids:
        process_invoice.delay(invoice_id)
    return {"file_id": file_id, "status": outcome.status, "invoices": len(outcome.invoice_ids)}
