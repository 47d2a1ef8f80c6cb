"""mlc.replay: `celery -A workers call mlc.replay --kwargs '{"invoice_id": 7}'`."""

from __future__ import annotations

from typing import Any

from pipeline import replay as replay_mod
from tasks.base import MlcTask
from tasks.invoice import resolve_vendor
from workers.app import app


@app.task(bind=True, base=MlcTask, name="mlc.replay", trail=False)
def replay(self: MlcTask, invoice_id: int | None = None, file_id: int | None = None,
           status: str = "failed", **_: Any) -> list[int]:
    ids = replay_mod.select_for_replay(self.ctx, invoice_id=invoice_id, file_id=file_id,
                                       status=status)
    for i in ids:
        resolve_vendor.delay(i)
    return ids
