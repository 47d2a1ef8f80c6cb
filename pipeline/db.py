"""Postgres connections and transactions. One small pool per process, created after fork."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg2
import psycopg2.extras
import psycopg2.pool

from pipeline.config import settings

_lock = threading.Lock()
_pools: dict[tuple[int, str], psycopg2.pool.ThreadedConnectionPool] = {}

# Errors worth a retry: the server went away or a lock/serialisation conflict.
TRANSIENT_DB_ERRORS = (psycopg2.OperationalError, psycopg2.InterfaceError,
                       psycopg2.errors.SerializationFailure, psycopg2.errors.DeadlockDetected)


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
                2, 8, dsn, cursor_factory=psycopg2.extras.RealDictCursor,
                application_name="ml-connector",
            )
            _pools[key] = pool
        return pool


@contextmanager
def connection(dsn: str | None = None) -> Iterator[psycopg2.extensions.connection]:
    """A pooled connection; the caller manages transactions (or uses `transaction`)."""
    pool = _pool(dsn or settings().database_url)
    conn = pool.getconn()
    broken = False
    try:
        yield conn
    except TRANSIENT_DB_ERRORS:
        broken = True
        raise
    finally:
        if not broken and not conn.closed:
            try:
                conn.rollback()
            except psycopg2.Error:
                broken = True
        pool.putconn(conn, close=broken or bool(conn.closed))


@contextmanager
def transaction(dsn: str | None = None) -> Iterator[psycopg2.extras.RealDictCursor]:
    """A cursor inside one transaction: commit on success, rollback on any error."""
    with connection(dsn) as conn:
        with conn:  # psycopg2: commit on exit, rollback on exception
            with conn.cursor() as cur:
                yield cur


def close_pools() -> None:
    with _lock:
        for pool in _pools.values():
            pool.closeall()
        _pools.clear()
