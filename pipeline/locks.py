"""Postgres session advisory locks: the one registry of their keys, and the one way to take them.

Session locks (not transaction ones) because the work they guard spans several transactions and
X3 calls; a worker that dies loses its session and so its locks. Each lock is taken and released
in a short transaction of its own, so the connection is never switched to autocommit and is idle
(not idle in a transaction) while the lock is held.

The pair cannot be split: the lock statement runs inside the `try` whose `finally` releases it,
so an exception landing right after the lock was granted (a Celery soft time limit during the
wait) still releases it. A connection whose release cannot be confirmed is closed, which ends
its session and with it every lock it held.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg2
import psycopg2.errors

from pipeline import db

log = logging.getLogger(__name__)

# The registry. The values are those of the first release: workers of two releases running side
# by side during a deploy must still exclude each other, so a value never changes.
# Locks with one bigint key: one holder in the whole database.
MIGRATE_KEY = 0x4D4C43_01
POLL_KEY = 0x4D4C43_02
# Namespaces of locks with two int4 keys (namespace, item).
VENDOR_NS = 0x4D4C_0003  # item: hashtext(derived X3 supplier code)
POST_NS = 0x4D4C_0004  # item: invoice id

NAMES = {("bigint", MIGRATE_KEY): "migrate", ("bigint", POLL_KEY): "poll",
         ("int4", VENDOR_NS): "vendor", ("int4", POST_NS): "post"}


@dataclass(frozen=True)
class Key:
    """One advisory lock: `args` fill the placeholders of `sql`, the pg_advisory_* arguments."""

    label: str
    sql: str
    args: tuple[Any, ...]

    def __str__(self) -> str:
        return self.label


def migrate() -> Key:
    return Key("migrate", "%s", (MIGRATE_KEY,))


def poll() -> Key:
    return Key("poll", "%s", (POLL_KEY,))


def vendor(supplier_code: str) -> Key:
    # Hashed by Postgres, as the first release did: the item is what both releases agree on.
    return Key(f"vendor {supplier_code}", "%s, hashtext(%s)", (VENDOR_NS, supplier_code))


def invoice_post(invoice_id: int) -> Key:
    return Key(f"post of invoice {invoice_id}", "%s, %s", (POST_NS, invoice_id))


def describe(classid: int, objid: int, objsubid: int) -> str:
    """A pg_locks advisory row in the registry's words (objsubid 1: one bigint key)."""
    if objsubid == 1:
        key = classid << 32 | objid
        return f"{NAMES.get(('bigint', key), 'unknown')} ({key:#x})"
    return f"{NAMES.get(('int4', classid), 'unknown')} ({classid:#x}, {objid})"


class LockTimeout(db.DatabaseTimeout):
    """An advisory lock was not granted in time: a peer holds it. Retryable."""


@contextmanager
def held(key: Key, *, timeout: float | None = None, dsn: str | None = None) -> Iterator[None]:
    """Wait for the lock, hold it for the block. Waits at most `timeout` seconds (default
    MLC_PG_LOCK_TIMEOUT; 0 waits as long as it takes), then raises LockTimeout."""
    setting = None
    if timeout is None:
        from pipeline.config import settings

        timeout, setting = settings().pg_lock_timeout, "MLC_PG_LOCK_TIMEOUT"
    with db.connection(dsn) as conn, session_lock(conn, key, wait=True, timeout=timeout,
                                                 setting=setting, dedicated=True):
        yield


@contextmanager
def try_held(key: Key, *, dsn: str | None = None) -> Iterator[bool]:
    """Take the lock if it is free; yields whether this block holds it (never waits)."""
    with db.connection(dsn) as conn, session_lock(conn, key, wait=False,
                                                 dedicated=True) as ours:
        yield ours


@contextmanager
def session_lock(conn: psycopg2.extensions.connection, key: Key, *, wait: bool,
                 timeout: float = 0.0, setting: str | None = None,
                 dedicated: bool = False) -> Iterator[bool]:
    """The lock on a connection the caller owns (out of the pool, or migrate's own). Yields
    whether it is held: always True when waiting (or LockTimeout is raised). `dedicated`: a
    pooled connection taken for this lock alone; once its release is confirmed (or the lock
    was never granted) it goes back without the pool's pg_advisory_unlock_all round trip."""
    state = "unknown"  # until the lock statement has answered: release it to be sure
    try:
        try:
            state = "held" if _acquire(conn, key, wait, timeout) else "free"
        except psycopg2.errors.LockNotAvailable:
            state = "free"
            where = f" ({setting})" if setting else ""
            raise LockTimeout(f"advisory lock {key} not granted within {timeout:g} s{where}:"
                              " another session holds it") from None
        yield state == "held"
    finally:
        if state == "free" or _release(conn, key, expected=state == "held"):
            if dedicated:
                conn.may_hold_locks = False  # not reached if anything cut the release short


def _acquire(conn: psycopg2.extensions.connection, key: Key, wait: bool,
             timeout: float) -> bool:
    with conn, conn.cursor() as cur:
        if not wait:
            cur.execute(f"SELECT pg_try_advisory_lock({key.sql}) AS ok", key.args)
            return bool(_scalar(cur.fetchone()))
        # The wait is bounded by lock_timeout alone: statement_timeout is for statements that
        # work, and a LOCAL setting ends with this transaction.
        cur.execute("SELECT set_config('lock_timeout', %s, true),"
                    " set_config('statement_timeout', '0', true);"
                    f" SELECT pg_advisory_lock({key.sql})",
                    (f"{round(timeout * 1000)}ms", *key.args))
        return True


def _release(conn: psycopg2.extensions.connection, key: Key, *, expected: bool) -> bool:
    """Whether the lock was let go of, confirmed by Postgres (if not, the connection is
    closed: its session and every lock it held end with it)."""
    released = False
    try:
        with conn, conn.cursor() as cur:
            cur.execute(f"SELECT pg_advisory_unlock({key.sql}) AS ok", key.args)
            released = bool(_scalar(cur.fetchone()))
        if not released and expected:
            log.warning("advisory lock %s was no longer held when released", key)
    except psycopg2.Error as exc:
        # Not raised: it would hide the block's own exception, and closing settles it.
        log.warning("could not release advisory lock %s (%s): closing its connection", key, exc)
    finally:
        if not released:
            # Whatever this session still holds ends with it.
            conn.close()
    return released


def _scalar(row: Any) -> Any:
    return next(iter(row.values())) if isinstance(row, dict) else row[0]
