"""Work whose message was lost (Redis restarted) is found again in Postgres by the poll."""

import pytest

from pipeline import db, ledger, recovery
from pipeline.audit import TaskContext
from pipeline.stampli import poll
from tests.conftest import drop_samples

pytestmark = pytest.mark.integration
CTX = TaskContext(task_id="test", attempt=1)


def _age(table, column, ids, seconds):
    with db.transaction() as cur:
        cur.execute(f"UPDATE {table} SET {column} = now() - make_interval(secs => %s)"
                    " WHERE id = ANY(%s)", (seconds, list(ids)))


def test_stuck_invoices_and_files_are_claimed_once_per_threshold(connected):
    drop_samples(connected["sftp"].export_dir)
    poll.poll(CTX)
    vendors_file, invoices_file = poll.poll(CTX).new_file_ids
    ledger.parse_file(CTX, vendors_file)
    # The invoices file stays `fetched`, as if its parse message had been lost.
    assert recovery.find_stuck(CTX, older_than=60).file_ids == []
    _age("source_files", "fetched_at", [invoices_file], 120)
    assert recovery.find_stuck(CTX, older_than=60).file_ids == [invoices_file]

    outcome = ledger.parse_file(CTX, invoices_file)
    received, posting, posted = outcome.invoice_ids
    with db.transaction() as cur:
        cur.execute("UPDATE invoices SET status = 'posting' WHERE id = %s", (posting,))
        cur.execute("UPDATE invoices SET status = 'posted' WHERE id = %s", (posted,))
    assert recovery.find_stuck(CTX, older_than=60).invoice_ids == []  # fresh rows are busy
    _age("invoices", "updated_at", [received, posting, posted], 120)
    found = recovery.find_stuck(CTX, older_than=60)
    assert found.invoice_ids == [received, posting]  # posted is done: never again
    assert found.file_ids == []  # parsed now
    # Touched when claimed: the next poll does not enqueue them a second time.
    assert recovery.find_stuck(CTX, older_than=60).invoice_ids == []
    with db.transaction() as cur:
        cur.execute("SELECT invoice_id, detail->>'previous_status' AS was FROM audit_events"
                    " WHERE stage = 'replay' AND invoice_id IS NOT NULL ORDER BY invoice_id")
        assert [(r["invoice_id"], r["was"]) for r in cur.fetchall()] == [
            (received, "received"), (posting, "posting")]


def test_a_row_locked_by_a_worker_is_left_to_it(connected):
    drop_samples(connected["sftp"].export_dir)
    poll.poll(CTX)
    for file_id in poll.poll(CTX).new_file_ids:
        ledger.parse_file(CTX, file_id)
    with db.transaction() as cur:
        cur.execute("SELECT id FROM invoices ORDER BY id")
        ids = [r["id"] for r in cur.fetchall()]
    _age("invoices", "updated_at", ids, 120)
    with db.transaction() as cur:
        cur.execute("SELECT id FROM invoices WHERE id = %s FOR UPDATE", (ids[0],))
        assert recovery.find_stuck(CTX, older_than=60).invoice_ids == ids[1:]


def test_default_threshold_outlives_the_longest_retry_and_task(monkeypatch):
    from pipeline.config import load_settings

    env = {"DATABASE_URL": "postgresql://x/y", "MLC_SECRET_KEYS": _key(),
           "MLC_RETRY_BACKOFF_MAX": "100", "MLC_TASK_TIME_LIMIT": "50"}
    assert load_settings(env).requeue_after == 150
    assert load_settings({**env, "MLC_REQUEUE_AFTER": "30"}).requeue_after == 30


def _key():
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()
