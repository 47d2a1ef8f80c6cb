"""mlc.replay: `celery -A workers call mlc.replay --kwargs '{"failed": true}'`.

Same selection as `mlc replay`: invoice_id, or vendor_id + invoice_number, or failed (+ since),
or file; reason and by are recorded in the audit trail.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from pipeline import replay as replay_mod
from tasks.base import MlcTask
from tasks.invoice import process_invoice
from workers.app import app


# A refusal fails the task (Flower shows FAILURE with the reason, not SUCCESS); `throws` makes
# it an expected error: logged in one line, without a traceback.
@app.task(bind=True, base=MlcTask, name="mlc.replay", trail=False, stage="replay",
          throws=(replay_mod.ReplayRefused,))
def replay(self: MlcTask, invoice_id: int | None = None, vendor_id: str | None = None,
           invoice_number: str | None = None, failed: bool = False, since: str | None = None,
           file: str | None = None, reason: str | None = None, by: str | None = None,
           dry_run: bool = False, **_: Any) -> list[dict[str, Any]]:
    sel = replay_mod.Selection(invoice_id=invoice_id, vendor_id=vendor_id,
                               invoice_number=invoice_number, failed=failed,
                               since=date.fromisoformat(since) if since else None, file=file)
    chosen = replay_mod.select_for_replay(self.ctx, sel, reason=reason,
                                          by=by or "celery call", dry_run=dry_run)
    if not dry_run:
        for row in chosen:
            process_invoice.delay(row["id"])
    return chosen
