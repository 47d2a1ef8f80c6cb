"""Postgres timeouts: every wait is bounded, and running out of time is a retryable error that
names the setting to raise (issue 11, section 3)."""

from __future__ import annotations

import threading
import time

import psycopg2
import pytest

from pipeline import db, vendors
from pipeline.audit import TaskContext
from pipeline.config import settings
from tasks.base import MlcTask
from tests.integration.test_pool_hygiene import VENDOR_KEY, _invoice, _X3Down

pytestmark = pytest.mark.integration
CTX = TaskContext(task_id="test", attempt=1)


def _reconfigure(monkeypatch: pytest.MonkeyPatch, **env: str) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings.cache_clear()
    db.close_pools()  # the timeouts are set when a connection is opened


def _retryable(exc: BaseException, setting: str) -> None:
    assert isinstance(exc, db.TRANSIENT_DB_ERRORS), type(exc)
    assert isinstance(exc, MlcTask.autoretry_for), type(exc)  # Celery retries it by itself
    assert setting in str(exc), str(exc)


def _held_for(conn: psycopg2.extensions.connection, seconds: float) -> threading.Timer:
    """Let go of whatever `conn` holds after `seconds` whatever happens, so code that would
    wait forever (the bug) ends the test with a failure instead of hanging it."""
    timer = threading.Timer(seconds, conn.close)
    timer.start()
    return timer


def test_pooled_connections_carry_the_timeouts(db_env, monkeypatch):
    _reconfigure(monkeypatch, MLC_PG_CONNECT_TIMEOUT="7", MLC_PG_STATEMENT_TIMEOUT="45",
                 MLC_PG_LOCK_TIMEOUT="12.5", MLC_PG_IDLE_IN_TRANSACTION_TIMEOUT="90")
    with db.connection() as conn:
        assert conn.info.dsn_parameters["connect_timeout"] == "7"
        with conn.cursor() as cur:
            cur.execute("SELECT current_setting('statement_timeout') AS st,"
                        " current_setting('lock_timeout') AS lt,"
                        " current_setting('idle_in_transaction_session_timeout') AS it")
            row = cur.fetchone()
    assert (row["st"], row["lt"], row["it"]) == ("45s", "12500ms", "90s")


def test_statement_timeout_is_a_retryable_error_naming_its_setting(db_env, monkeypatch):
    _reconfigure(monkeypatch, MLC_PG_STATEMENT_TIMEOUT="0.2")
    started = time.monotonic()
    with pytest.raises(Exception) as caught:
        with db.transaction() as cur:
            cur.execute("SELECT pg_sleep(3)")
    assert time.monotonic() - started < 2.5
    _retryable(caught.value, "MLC_PG_STATEMENT_TIMEOUT")


def test_row_lock_wait_is_bounded_by_lock_timeout(db_env, monkeypatch):
    _reconfigure(monkeypatch, MLC_PG_LOCK_TIMEOUT="0.2")
    with db.transaction() as cur:
        cur.execute("INSERT INTO polls DEFAULT VALUES RETURNING id")
        poll_id = cur.fetchone()["id"]
    holder = psycopg2.connect(db_env["DATABASE_URL"])
    with holder.cursor() as hc:
        hc.execute("SELECT id FROM polls WHERE id = %s FOR UPDATE", (poll_id,))
    timer = _held_for(holder, 5)
    try:
        with pytest.raises(Exception) as caught:
            with db.transaction() as cur:
                cur.execute("UPDATE polls SET finished_at = now() WHERE id = %s", (poll_id,))
    finally:
        timer.cancel()
        holder.close()
    _retryable(caught.value, "MLC_PG_LOCK_TIMEOUT")


def test_idle_in_transaction_timeout_is_a_retryable_error_naming_its_setting(db_env,
                                                                              monkeypatch):
    _reconfigure(monkeypatch, MLC_X3_TIMEOUT="1", MLC_PG_IDLE_IN_TRANSACTION_TIMEOUT="1.5")
    with pytest.raises(Exception) as caught:
        with db.transaction() as cur:
            cur.execute("SELECT pg_backend_pid() AS pid")
            pid = cur.fetchone()["pid"]
            _wait_until_gone(db_env["DATABASE_URL"], pid, deadline=6)
            cur.execute("SELECT 1")
    _retryable(caught.value, "MLC_PG_IDLE_IN_TRANSACTION_TIMEOUT")


def _wait_until_gone(dsn: str, pid: int, deadline: float) -> None:
    until = time.monotonic() + deadline
    with psycopg2.connect(dsn) as watcher:
        watcher.autocommit = True
        while time.monotonic() < until:
            with watcher.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,))
                if cur.fetchone() is None:
                    break
            time.sleep(0.05)
    watcher.close()


def test_waiting_for_the_vendor_lock_times_out_as_a_retryable_error(db_env, monkeypatch):
    _reconfigure(monkeypatch, MLC_PG_LOCK_TIMEOUT="0.3")
    invoice_id = _invoice("V-WAIT")
    holder = psycopg2.connect(db_env["DATABASE_URL"])
    holder.autocommit = True
    with holder.cursor() as hc:
        hc.execute("SELECT pg_advisory_lock(%s, hashtext(%s))",
                   (*VENDOR_KEY, vendors.supplier_code("V-WAIT")))
    timer = _held_for(holder, 5)
    started = time.monotonic()
    try:
        with pytest.raises(Exception) as caught:
            vendors.resolve(CTX, invoice_id, _X3Down())  # type: ignore[arg-type]
    finally:
        timer.cancel()
        holder.close()
    assert time.monotonic() - started < 3
    _retryable(caught.value, "MLC_PG_LOCK_TIMEOUT")
    assert "vendor" in str(caught.value)
