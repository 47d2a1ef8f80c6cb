"""Polling a real sshd: pinned host keys, stability, dedup across polls."""

import pytest

from pipeline import connections, db
from pipeline.audit import TaskContext
from pipeline.stampli import poll
from tests.conftest import drop_samples

pytestmark = pytest.mark.integration
CTX = TaskContext(task_id="test", attempt=1)


def test_files_taken_once_stable_vendors_first_and_only_once(connected):
    export = connected["sftp"].export_dir
    drop_samples(export)
    first = poll.poll(CTX)
    assert first.new_file_ids == [] and sorted(first.waiting) == [
        "invoices_20261103101500.csv", "vendors_20261103101500.csv"]
    second = poll.poll(CTX)
    assert len(second.new_file_ids) == 2
    with db.transaction() as cur:
        cur.execute("SELECT id, kind, status FROM source_files ORDER BY id")
        rows = cur.fetchall()
    assert [r["kind"] for r in rows] == ["vendors", "invoices"]
    assert all(r["status"] == "fetched" for r in rows)
    third = poll.poll(CTX)
    assert third.new_file_ids == [] and third.waiting == []


def test_changed_host_key_is_refused_and_audited(connected):
    from sandbox.sftp import _keygen

    other = connected["sftp"].state_dir / "other_key"
    _keygen(other)
    pinned = " ".join((other.parent / "other_key.pub").read_text().split()[:2])
    with db.transaction() as cur:
        conn = connections.load(cur, "stampli")
        connections.save(cur, "stampli", conn.kind, {**conn.settings, "host_key": pinned},
                         conn.secret)
    result = poll.poll(CTX)
    assert result.error is not None and "refusing to connect" in result.error
    assert "\n" not in result.error
    with db.transaction() as cur:
        cur.execute("SELECT outcome, detail FROM audit_events WHERE stage = 'file_fetch'")
        (row,) = cur.fetchall()
    assert row["outcome"] == "error" and "refusing" in row["detail"]["error"]


def test_a_second_poll_is_locked_out_while_one_runs(connected):
    with db.connection() as holder:
        holder.autocommit = True
        with holder.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s)", (poll.POLL_LOCK,))
            try:
                assert poll.poll(CTX).locked_out
            finally:
                cur.execute("SELECT pg_advisory_unlock(%s)", (poll.POLL_LOCK,))
        holder.autocommit = False
