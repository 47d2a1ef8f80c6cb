"""Work whose Celery message was lost, found again in Postgres.

Redis keeps nothing on disk here: a restart loses queued, reserved and countdown messages. The
rows still say what is unfinished, so every poll re-enqueues files still `fetched` and invoices
still received / vendor_resolved / posting that have not moved for `older_than` seconds. Every
task is idempotent, so a message that was only slow costs a duplicate run that does nothing.
Each row is touched when re-enqueued: one sweep per threshold re-enqueues it at most once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline import audit, db
from pipeline.audit import TaskContext
from pipeline.states import STUCK, FileStatus

BATCH = 5000


@dataclass
class Stuck:
    file_ids: list[int] = field(default_factory=list)  # to parse again
    invoice_ids: list[int] = field(default_factory=list)  # to resolve and post again


def find_stuck(ctx: TaskContext, older_than: float, limit: int = BATCH) -> Stuck:
    """Claim stuck rows (touching them) and return their ids; the caller enqueues after commit.

    Rows locked right now (a poster or parser at work) are skipped.
    """
    found = Stuck()
    with db.transaction() as cur:
        cur.execute(
            "UPDATE invoices SET updated_at = now() WHERE id IN (SELECT id FROM invoices"
            " WHERE status = ANY(%s) AND updated_at < now() - make_interval(secs => %s)"
            " ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED) RETURNING id, status",
            (list(STUCK), older_than, limit))
        rows = sorted(cur.fetchall(), key=lambda r: r["id"])
        for r in rows:
            audit.record(cur, "replay", "ok", ctx=ctx, invoice_id=r["id"],
                         previous_status=r["status"],
                         reason=f"unchanged for {older_than:g} s: re-enqueued by the poll")
        found.invoice_ids = [r["id"] for r in rows]
        # source_files has no updated_at: a file is re-enqueued once per sweep while it stays
        # `fetched` past the threshold (a parse is short; a duplicate returns at once).
        cur.execute(
            "SELECT id FROM source_files WHERE status = %s"
            " AND fetched_at < now() - make_interval(secs => %s) ORDER BY id"
            " FOR UPDATE SKIP LOCKED", (FileStatus.FETCHED, older_than))
        found.file_ids = [r["id"] for r in cur.fetchall()]
        for file_id in found.file_ids:
            audit.record(cur, "replay", "ok", ctx=ctx, source_file_id=file_id,
                         reason=f"still unparsed after {older_than:g} s: re-enqueued by the poll")
    return found
