"""Poll health is visible: last poll, last successful poll and the last error in `mlc status`
(text and JSON), `mlc health`, and the metrics; files waiting for stability are listed."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ops import health, metrics, status
from pipeline import db
from pipeline.audit import TaskContext
from pipeline.stampli import poll
from tests.conftest import SAMPLES

pytestmark = pytest.mark.integration
CTX = TaskContext(task_id="test", attempt=1)


def mlc(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ops.cli", *args], env=dict(os.environ),
                          capture_output=True, text=True, timeout=60)


def summary() -> dict:
    with db.transaction() as cur:
        return status.summary(cur, poll_interval=900)


def age_polls(seconds: int) -> None:
    with db.transaction() as cur:
        cur.execute("UPDATE polls SET started_at = started_at - make_interval(secs => %s),"
                    " finished_at = finished_at - make_interval(secs => %s)", (seconds, seconds))


def test_sftp_down_shows_last_success_and_the_error(connected):
    assert poll.poll(CTX).error is None
    ok_at = summary()["last_successful_poll_at"]
    connected["sftp"].stop()
    failed = poll.poll(CTX)
    assert failed.error
    data = summary()
    assert data["last_poll_outcome"] == "error"
    assert data["last_successful_poll_at"] == ok_at < data["last_poll_at"]
    assert data["last_error"]["error"] == failed.error

    text = mlc("status")
    assert text.returncode == 0, text.stderr
    assert f"last successful poll: {ok_at}" in text.stdout
    assert "last poll error:" in text.stdout and failed.error in text.stdout
    assert "(error)" in text.stdout
    shown = json.loads(mlc("status", "--json").stdout)
    assert shown["last_successful_poll_at"] == ok_at
    assert shown["last_error"]["error"] == failed.error

    exposition = metrics.exposition().decode()
    assert "mlc_poll_errors_total 1.0" in exposition
    ok_line = [ln for ln in exposition.splitlines()
               if ln.startswith("mlc_last_successful_poll_timestamp_seconds ")]
    last_line = [ln for ln in exposition.splitlines()
                 if ln.startswith("mlc_last_poll_timestamp_seconds ")]
    assert ok_line and last_line
    assert float(ok_line[0].split()[1]) < float(last_line[0].split()[1])


def test_health_fails_when_no_poll_succeeded_for_two_intervals(connected, monkeypatch):
    from pipeline.config import settings

    monkeypatch.setenv("MLC_POLL_INTERVAL", "60")
    settings.cache_clear()
    (never,) = health.run(("poll",))
    assert not never.ok and "never polled" in never.detail

    assert poll.poll(CTX).error is None
    (fresh,) = health.run(("poll",))
    assert fresh.ok, fresh.detail

    connected["sftp"].stop()
    assert poll.poll(CTX).error
    age_polls(100)  # the success is 100 s old, the error too: within 2 x 60 s
    (recent,) = health.run(("poll",))
    assert recent.ok, recent.detail
    age_polls(30)
    (stale,) = health.run(("poll",))
    assert not stale.ok
    assert "no successful poll for 13" in stale.detail and "last error" in stale.detail

    r = mlc("health")
    assert r.returncode == 1 and "poll" in r.stderr
    assert any(line.startswith("DOWN poll") for line in r.stdout.splitlines()), r.stdout


def test_waiting_files_are_listed_with_size_and_first_seen(connected):
    export = connected["sftp"].export_dir
    target = export / "invoices_20261103101500.csv"
    full = (SAMPLES / "invoices_20261103101500.csv").read_bytes()
    target.write_bytes(full[:100])
    poll.poll(CTX)
    (first,) = summary()["waiting_files"]
    assert first["name"] == target.name and first["size"] == 100
    with target.open("ab") as fh:
        fh.write(full[100:250])
    poll.poll(CTX)
    (second,) = summary()["waiting_files"]
    assert second["size"] == 250 and second["first_seen"] == first["first_seen"]

    text = mlc("status").stdout
    assert "waiting for stability (1):" in text
    assert f"{target.name}  250 bytes  first seen {first['first_seen']}" in text
    assert json.loads(mlc("status", "--json").stdout)["waiting_files"] == [second]

    with target.open("ab") as fh:
        fh.write(full[250:])
    poll.poll(CTX)
    assert len(poll.poll(CTX).new_file_ids) == 1
    assert summary()["waiting_files"] == []


def test_run_once_lists_waiting_files(connected):
    export = connected["sftp"].export_dir
    (export / "vendors_20261103101500.csv").write_bytes(
        (SAMPLES / "vendors_20261103101500.csv").read_bytes())
    r = mlc("run-once")
    assert r.returncode == 0, r.stderr
    assert "waiting for stability (1):" in r.stdout
    assert "vendors_20261103101500.csv" in r.stdout and "first seen" in r.stdout


def test_after_failure_leave_keeps_a_refused_file_in_place(connected, monkeypatch):
    from pipeline import ledger
    from pipeline.config import settings

    monkeypatch.setenv("MLC_AFTER_FAILURE", "leave")
    settings.cache_clear()
    export = connected["sftp"].export_dir
    bad = export / "invoices_20261105000000.csv"
    bad.write_bytes(b"\xff\xfe garbage \x00\x81\n")
    poll.poll(CTX)
    (file_id,) = poll.poll(CTX).new_file_ids
    assert ledger.parse_file(CTX, file_id).status == "rejected"
    assert poll.quarantine(CTX, file_id) is None
    assert bad.exists() and not (export / "failed").exists()
    with db.transaction() as cur:
        cur.execute("SELECT detail FROM audit_events WHERE stage = 'file_parse'"
                    " AND detail ? 'left_in_place'")
        assert cur.fetchall(), "the refusal left in place is on the audit trail"


def test_a_poll_without_a_stampli_connection_is_a_visible_failed_poll(db_env):
    result = poll.poll(CTX)
    assert result.error and "mlc connection set stampli" in result.error
    data = summary()
    assert data["last_poll_outcome"] == "error" and data["last_successful_poll_at"] is None
    assert "no connection named 'stampli'" in data["last_error"]["error"]
