"""mlc.parse_file: parse one fetched file; fan its new invoices out in batches of
MLC_INVOICES_PER_TASK consecutive ids (mlc.process_invoices)."""

from __future__ import annotations

from typing import Any

from pipeline import ledger, prefetch
from pipeline.config import settings
from pipeline.stampli import poll
from pipeline.states import FileStatus
from tasks.base import MlcTask
from workers.app import app


@app.task(bind=True, base=MlcTask, name="mlc.parse_file", trail=False, stage="file_parse")
def parse_file(self: MlcTask, file_id: int, **_: Any) -> dict[str, Any]:
    try:
        outcome = ledger.parse_file(self.ctx, file_id)
    except ledger.NotReady as exc:
        # Vendor files of the same poll are parsed first; wait briefly for them.
        raise self.retry(exc=exc, countdown=2, max_retries=300) from None
    if outcome.status == FileStatus.REJECTED and not outcome.already_parsed:
        poll.quarantine(self.ctx, file_id)
    # One batched X3 query per code type for the whole file, before any invoice asks alone.
    prefetch.prefetch_codes(outcome.invoice_ids)
    fan_out(outcome.invoice_ids)
    return {"file_id": file_id, "status": outcome.status, "invoices": len(outcome.invoice_ids)}


def fan_out(invoice_ids: list[int]) -> None:
    """One message per MLC_INVOICES_PER_TASK consecutive invoices of the file. A setting of 1
    sends mlc.process_invoice per invoice rather than batches of one: the same number of
    messages, but exactly the behaviour before batches (Celery's own retries, one task per
    invoice in Flower), so 1 is the way back should batches ever be in doubt."""
    from tasks.invoice import process_invoice, process_invoices

    size = settings().invoices_per_task
    if size == 1:
        for invoice_id in invoice_ids:
            process_invoice.delay(invoice_id)
        return
    for start in range(0, len(invoice_ids), size):
        process_invoices.delay(list(invoice_ids[start:start + size]))
