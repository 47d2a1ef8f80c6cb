"""Pooled connections come back clean (issue 11, section 3).

A connection returned with autocommit still on makes the next large-object read of that process
fail ("can't use a lobject outside of transactions"); one returned holding a session advisory lock
makes every later taker of that lock wait forever. Each leak path is driven through the public
function that had it, then the pool is used the way the parse task uses it.

The locks are held from outside with their literal keys: they are the keys workers of the
previous release take, so old and new workers still exclude each other during a rolling deploy.
"""

from __future__ import annotations

import json
import time
import uuid

import psycopg2
import psycopg2.extras
import psycopg2.sql
import pytest
from celery.exceptions import SoftTimeLimitExceeded

from pipeline import blobs, db, locks, posting, vendors
from pipeline.audit import TaskContext
from pipeline.stampli import poll
from pipeline.x3.errors import X3Unavailable

pytestmark = pytest.mark.integration
CTX = TaskContext(task_id="test", attempt=1)

POST_KEY = (0x4D4C_0004,)  # + invoice id
VENDOR_KEY = (0x4D4C_0003,)  # + hashtext(supplier code)
POLL_KEY = 0x4D4C43_02
CONTENT = b"vendor_id,vendor_name\nV-1,Acme\n"


class _X3Down:
    """Every supplier look-up answers 503, as an overloaded X3 does."""

    def find_supplier_by_tax_id(self, tax_id: str) -> None:
        raise X3Unavailable("X3 answered 503 Service Unavailable")

    def find_supplier_by_code(self, code: str) -> None:
        raise X3Unavailable("X3 answered 503 Service Unavailable")

    def find_suppliers(self, *args: object, **kwargs: object) -> None:
        raise X3Unavailable("X3 answered 503 Service Unavailable")


def _holder(dsn: str) -> psycopg2.extensions.connection:
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    return conn


def _invoice(vendor_id: str = "V-LEAK") -> int:
    """An invoice whose vendor has no link yet: resolving it takes the vendor lock."""
    payload = {"vendor_id": vendor_id, "vendor_name": "Leaky Ltd", "vendor_tax_id": "12-3456789",
               "invoice_number": "INV-1", "invoice_date": "2026-11-03", "lines": []}
    with db.transaction() as cur:
        cur.execute("INSERT INTO source_files (connection, path, kind, size, mtime, sha256,"
                    " content) VALUES ('stampli', 'invoices_1.csv', 'invoices', 1, 1, %s, '')"
                    " RETURNING id", (uuid.uuid4().hex,))
        file_id = cur.fetchone()["id"]
        cur.execute("INSERT INTO invoices (stampli_vendor_id, invoice_number, source_file_id,"
                    " payload, payload_sha256) VALUES (%s, 'inv-1', %s, %s, 'x') RETURNING id",
                    (vendor_id.lower(), file_id, json.dumps(payload)))
        return cur.fetchone()["id"]


def _read_large_object_like_a_parse() -> None:
    with db.transaction() as cur:
        cur.execute("SELECT lo_from_bytea(0, %s) AS oid", (CONTENT,))
        oid = cur.fetchone()["oid"]
    with db.transaction() as cur:
        assert blobs.open_for_reading(cur, oid).read() == CONTENT


def _advisory_locks(dsn: str) -> list[tuple]:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT pid, classid, objid, objsubid FROM pg_locks"
                    " WHERE locktype = 'advisory' AND granted"
                    " AND database = (SELECT oid FROM pg_database"
                    "                 WHERE datname = current_database())")
        rows = cur.fetchall()
    conn.close()
    return rows


def _no_advisory_lock_left(dsn: str, deadline: float = 5.0) -> None:
    # A discarded connection's backend releases its locks as it exits, a moment later.
    until, seen = time.monotonic() + deadline, None
    while time.monotonic() < until:
        seen = _advisory_locks(dsn)
        if not seen:
            return
        time.sleep(0.02)
    raise AssertionError(f"advisory locks still held: {seen}")


def test_post_that_loses_the_try_lock_leaves_a_clean_connection(db_env):
    holder = _holder(db_env["DATABASE_URL"])
    try:
        with holder.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s, %s)", (*POST_KEY, 4242))
        outcome = posting.post(CTX, 4242, client=None)  # type: ignore[arg-type]
        assert outcome.status == "skipped"
    finally:
        holder.close()
    _read_large_object_like_a_parse()


def test_vendor_resolve_whose_lookup_gets_a_503_leaves_a_clean_connection(db_env):
    invoice_id = _invoice()
    with pytest.raises(X3Unavailable):
        vendors.resolve(CTX, invoice_id, _X3Down())  # type: ignore[arg-type]
    _read_large_object_like_a_parse()
    _no_advisory_lock_left(db_env["DATABASE_URL"])


def test_poll_locked_out_leaves_a_clean_connection(db_env):
    holder = _holder(db_env["DATABASE_URL"])
    try:
        with holder.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s)", (POLL_KEY,))
        assert poll.poll(CTX).locked_out
    finally:
        holder.close()
    _read_large_object_like_a_parse()


@pytest.fixture
def interrupted_after(monkeypatch):
    """Raise a soft time limit the moment a statement taking an advisory lock returns: the lock
    is granted, the code that would release it has not started yet."""
    calls = []

    def arm(function: str) -> list[str]:
        real = psycopg2.extras.RealDictCursor.execute

        def execute(self, query, vars=None):  # noqa: A002 (psycopg2's own name)
            result = real(self, query, vars)
            if f"{function}(" in str(query) and not calls:
                calls.append(str(query))
                raise SoftTimeLimitExceeded()
            return result

        monkeypatch.setattr(psycopg2.extras.RealDictCursor, "execute", execute)
        return calls

    return arm


@pytest.mark.parametrize("where", ["vendors.resolve", "posting.post", "poll.poll"])
def test_exception_right_after_the_lock_is_granted_leaves_no_lock_held(db_env,
                                                                         interrupted_after,
                                                                         where):
    invoice_id = _invoice()
    if where == "vendors.resolve":
        calls = interrupted_after("pg_advisory_lock")
        run = lambda: vendors.resolve(CTX, invoice_id, _X3Down())  # noqa: E731
    elif where == "posting.post":
        calls = interrupted_after("pg_try_advisory_lock")
        run = lambda: posting.post(CTX, invoice_id, None)  # noqa: E731
    else:
        calls = interrupted_after("pg_try_advisory_lock")
        run = lambda: poll.poll(CTX)  # noqa: E731
    with pytest.raises(SoftTimeLimitExceeded):
        run()
    assert calls, "the lock statement was never run"
    _no_advisory_lock_left(db_env["DATABASE_URL"])
    _read_large_object_like_a_parse()


def test_a_connection_left_dirty_by_hand_is_reset_before_reuse(db_env):
    with db.connection() as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("BEGIN")
            cur.execute("SELECT pg_advisory_lock(1, 2)")
    with pytest.raises(RuntimeError):
        with db.connection() as conn, conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(1, 3)")
            raise RuntimeError("the block fails with a lock and a transaction open")
    _read_large_object_like_a_parse()
    _no_advisory_lock_left(db_env["DATABASE_URL"])


def test_a_held_lock_excludes_others_on_an_idle_connection_and_is_released_on_error(db_env):
    with pytest.raises(RuntimeError):
        with locks.held(locks.vendor("ACME01")):
            with locks.try_held(locks.vendor("ACME01")) as ours:
                assert not ours
            with locks.try_held(locks.vendor("OTHER")) as ours:
                assert ours
            with psycopg2.connect(db_env["DATABASE_URL"]) as watcher, watcher.cursor() as cur:
                cur.execute("SELECT a.state, l.objid FROM pg_locks l"
                            " JOIN pg_stat_activity a USING (pid)"
                            " WHERE l.locktype = 'advisory' AND l.classid = %s"
                            " AND a.datname = current_database()", (locks.VENDOR_NS,))
                # Held between transactions: not "idle in transaction", so the idle timeout
                # never ends a long post, and no snapshot is pinned meanwhile.
                rows = cur.fetchall()
                assert [r[0] for r in rows] == ["idle"], rows
            watcher.close()
            raise RuntimeError("X3 said 503")
    with locks.try_held(locks.vendor("ACME01")) as ours:
        assert ours


def test_a_release_that_fails_discards_the_connection_and_so_the_lock(db_env, monkeypatch):
    real = psycopg2.extras.RealDictCursor.execute

    def execute(self, query, vars=None):  # noqa: A002
        if "pg_advisory_unlock(" in str(query):
            raise psycopg2.OperationalError("network hiccup during the unlock")
        return real(self, query, vars)

    monkeypatch.setattr(psycopg2.extras.RealDictCursor, "execute", execute)
    with locks.held(locks.invoice_post(9)):
        pass
    monkeypatch.undo()
    _no_advisory_lock_left(db_env["DATABASE_URL"])
    with locks.try_held(locks.invoice_post(9)) as ours:
        assert ours


@pytest.mark.parametrize("statement", [
    "SELECT pg_advisory_lock(7, 8)",
    psycopg2.sql.SQL("SELECT {}(7, 8)").format(psycopg2.sql.Identifier("pg_advisory_lock")),
])
def test_a_lock_taken_by_hand_inside_a_transaction_is_released_on_return(db_env, statement):
    # Plain transactions skip the unlock round trip; one whose statement took a lock does not.
    with db.transaction() as cur:
        cur.execute(statement)
    _no_advisory_lock_left(db_env["DATABASE_URL"])
    with db.transaction() as cur:
        cur.execute("SELECT 1")
        assert cur.connection.may_hold_locks is False


def test_a_lock_connection_goes_back_with_one_round_trip_less_and_nothing_held(db_env,
                                                                             monkeypatch):
    sent: list[str] = []
    real = psycopg2.extras.RealDictCursor.execute

    def execute(self, query, vars=None):  # noqa: A002 (psycopg2's own name)
        sent.append(str(query))
        return real(self, query, vars)

    monkeypatch.setattr(psycopg2.extras.RealDictCursor, "execute", execute)
    with locks.try_held(locks.invoice_post(4243)) as ours:
        assert ours
    with pytest.raises(RuntimeError):
        with locks.held(locks.invoice_post(4244)):
            raise RuntimeError("the block fails while the lock is held")
    assert not [q for q in sent if "unlock_all" in q]  # the release was confirmed: enough
    assert len(sent) == 4  # lock, unlock; lock, unlock
    _no_advisory_lock_left(db_env["DATABASE_URL"])
