"""Postgres connections and transactions. One small pool per process, created after fork.

A pooled connection goes back exactly as it was taken, on every path (exceptions, early
returns, time limits): not in autocommit, outside any transaction, holding no session advisory
lock. One that cannot be put back that way is closed; its session state dies with it.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg2
import psycopg2.errors
import psycopg2.extras
import psycopg2.pool
from psycopg2 import extensions

from pipeline.config import Settings, settings

log = logging.getLogger(__name__)
_lock = threading.Lock()
_pools: dict[tuple[int, str], psycopg2.pool.ThreadedConnectionPool] = {}


class DatabaseTimeout(psycopg2.OperationalError):
    """A bounded wait on Postgres ran out (statement, lock, idle transaction, connect). The
    server may be busy or a peer slow: retryable, and the message names the setting."""


class ConnectionLost(psycopg2.OperationalError):
    """The server closed the connection in the middle of the work. Retryable."""


# Errors worth a retry: the server went away, a timeout, or a lock/serialisation conflict.
# (DatabaseTimeout and Postgres's own QueryCanceled/LockNotAvailable are OperationalErrors.)
TRANSIENT_DB_ERRORS = (psycopg2.OperationalError, psycopg2.InterfaceError,
                       psycopg2.errors.SerializationFailure, psycopg2.errors.DeadlockDetected,
                       psycopg2.errors.IdleInTransactionSessionTimeout)


class _Connection(extensions.connection):
    """A pooled connection that knows whether it may hold a session advisory lock: only then
    does it cost a round trip (pg_advisory_unlock_all) to put back."""

    may_hold_locks = False


class _Cursor(psycopg2.extras.RealDictCursor):
    """Rows as dicts; a statement that names an advisory lock marks its connection."""

    def execute(self, query: Any, vars: Any = None) -> Any:  # noqa: A002 (psycopg2's name)
        if not self.connection.may_hold_locks and "advisory" in _text(query):
            self.connection.may_hold_locks = True
        return super().execute(query, vars)


def _text(query: Any) -> str:
    if isinstance(query, str):
        return query
    if isinstance(query, bytes):
        return query.decode("utf-8", "replace")
    return repr(query)  # a psycopg2.sql composition: its parts' texts are in the repr


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def _connect_kwargs(dsn: str, s: Settings) -> dict[str, object]:
    """libpq parameters: the timeouts ride on every connection's startup packet."""
    mine = (f"-c statement_timeout={_ms(s.pg_statement_timeout)}"
            f" -c lock_timeout={_ms(s.pg_lock_timeout)}"
            f" -c idle_in_transaction_session_timeout={_ms(s.pg_idle_in_transaction_timeout)}")
    # Options given in DATABASE_URL come last, so an operator's explicit ones win.
    theirs = extensions.parse_dsn(dsn).get("options", "")
    return {"connect_timeout": s.pg_connect_timeout,
            "options": f"{mine} {theirs}".strip()}


def _pool(dsn: str) -> psycopg2.pool.ThreadedConnectionPool:
    # Keyed by pid: a pool inherited through fork shares sockets with the parent.
    key = (os.getpid(), dsn)
    with _lock:
        pool = _pools.get(key)
        if pool is None:
            # psycopg2 keeps at most `minconn` idle connections and closes any other returned
            # one. The poster and the vendor resolver hold an advisory-lock connection while
            # their transactions take a second one: with minconn=1 every such transaction paid
            # a new Postgres backend (a fork and an authentication, ~20% of a task's time).
            pool = psycopg2.pool.ThreadedConnectionPool(
                2, 8, dsn, connection_factory=_Connection, cursor_factory=_Cursor,
                application_name="ml-connector", **_connect_kwargs(dsn, settings()),
            )
            _pools[key] = pool
        return pool


@contextmanager
def connection(dsn: str | None = None) -> Iterator[psycopg2.extensions.connection]:
    """A pooled connection; the caller manages transactions (or uses `transaction`).

    Whatever the block did to it (autocommit, an open or failed transaction, session advisory
    locks), it is reset before it goes back, or closed if it cannot be."""
    with _checkout(dsn, raw=True) as conn:
        yield conn


@contextmanager
def _checkout(dsn: str | None, *, raw: bool) -> Iterator[_Connection]:
    """A pooled connection, reset on its way back. `raw`: handed to a caller who may do
    anything with it, so it is treated as holding advisory locks."""
    pool, conn, clean = None, None, False
    try:
        # Taken inside the try: nothing can land between the checkout and the finally.
        pool = _pool(dsn or settings().database_url)
        conn = pool.getconn()
        if raw:
            conn.may_hold_locks = True
        yield conn
    except psycopg2.Error as exc:
        clearer = _clearer(exc, lost=conn is not None and bool(conn.closed))
        if clearer is exc:
            raise
        raise clearer from exc
    finally:
        if pool is not None and conn is not None:
            try:
                clean = _reset(conn)
            finally:
                pool.putconn(conn, close=not clean)


def _reset(conn: psycopg2.extensions.connection) -> bool:
    """Put the connection back as the pool handed it out; False if it must be closed."""
    if conn.closed:
        return False
    try:
        status = conn.info.transaction_status
        if status == extensions.TRANSACTION_STATUS_UNKNOWN:
            return False  # the server went away
        if status != extensions.TRANSACTION_STATUS_IDLE:
            if conn.autocommit:  # a BEGIN sent by hand: psycopg2's rollback() would skip it
                with conn.cursor() as cur:
                    cur.execute("ROLLBACK")
            else:
                conn.rollback()
        # Session advisory locks outlive transactions; one left behind would make the next
        # taker of that lock wait forever. Only a connection that may hold one pays the round
        # trip, in autocommit so that it opens no transaction of its own.
        if getattr(conn, "may_hold_locks", True):
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_unlock_all()")
            conn.autocommit = False
            conn.may_hold_locks = False
        return True
    except psycopg2.Error as exc:
        log.warning("discarding a pooled connection that could not be reset: %s", exc)
        return False


# What Postgres or libpq says when a bounded wait ran out, and what it means for an operator.
_TIMEOUTS = (
    ("statement timeout", "a statement ran longer than MLC_PG_STATEMENT_TIMEOUT"),
    ("lock timeout",
     "a lock was not granted within MLC_PG_LOCK_TIMEOUT (another transaction holds it)"),
    ("idle-in-transaction timeout",
     "a transaction stayed idle longer than MLC_PG_IDLE_IN_TRANSACTION_TIMEOUT"),
    ("timeout expired", "no connection to Postgres within MLC_PG_CONNECT_TIMEOUT"),
)


def _clearer(exc: psycopg2.Error, *, lost: bool = False) -> psycopg2.Error:
    """A timeout or a lost connection as an error that says what happened and which setting
    bounds it (still an OperationalError: retried); any other error unchanged."""
    if isinstance(exc, DatabaseTimeout | ConnectionLost):
        return exc
    # The root cause: a failed rollback on a closed connection hides the error that closed it.
    cause: BaseException = exc
    while isinstance(cause.__context__, psycopg2.Error):
        cause = cause.__context__
    text = str(cause).strip()
    said = text.splitlines()[0] if text else type(cause).__name__
    for marker, meaning in _TIMEOUTS:
        if marker in text:
            return DatabaseTimeout(f"{meaning}; retried later ({said})")
    if lost and isinstance(exc, psycopg2.OperationalError | psycopg2.InterfaceError):
        # The server says nothing when it ends an idle transaction's session: name that too.
        return ConnectionLost(
            "lost the connection to Postgres (server restart, network, or a transaction idle"
            f" longer than MLC_PG_IDLE_IN_TRANSACTION_TIMEOUT); retried later ({said})")
    return exc


@contextmanager
def transaction(dsn: str | None = None) -> Iterator[psycopg2.extras.RealDictCursor]:
    """A cursor inside one transaction: commit on success, rollback on any error. A statement
    of the block that takes an advisory lock by hand is seen (see _Cursor) and undone."""
    with _checkout(dsn, raw=False) as conn:
        with conn:  # psycopg2: commit on exit, rollback on exception
            with conn.cursor() as cur:
                yield cur


def close_pools() -> None:
    with _lock:
        for pool in _pools.values():
            pool.closeall()
        _pools.clear()


def ping() -> None:
    """The database answers: one trivial query through the pool (errors as `transaction`'s)."""
    with transaction() as cur:
        cur.execute("SELECT 1")
