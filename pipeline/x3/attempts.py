"""One record per X3 HTTP call made for an invoice or a vendor: when, which call, how long, what
came of it (saleor's webhook delivery attempts are the model).

`posting.post` and `vendors.resolve` open `recording(...)` around their X3 work and wrap the
client in `RecordingClient`, which names the call; the transport notes every HTTP try (a read
retried three times leaves three records). Records are buffered and written in one statement
when the block ends, whatever way it ends, and at once after a create; they hold the HTTP status
and the error's type, never a body.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from time import monotonic  # bound once: tests that patch time.monotonic don't see ours
from typing import Any

import psycopg2.extras

from pipeline import db

log = logging.getLogger(__name__)

_call: contextvars.ContextVar[str | None] = contextvars.ContextVar("x3_call", default=None)
_book: contextvars.ContextVar[_Book | None] = contextvars.ContextVar("x3_book", default=None)


@dataclass
class _Book:
    invoice_id: int | None
    vendor_id: str | None
    task_id: str | None
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    tries: dict[str, int] = field(default_factory=dict)


@contextmanager
def recording(*, invoice_id: int | None = None, vendor_id: str | None = None,
              task_id: str | None = None) -> Iterator[None]:
    """Record the X3 calls made inside the block for this invoice (or vendor)."""
    book = _Book(invoice_id, vendor_id, task_id)
    token = _book.set(book)
    try:
        yield
    finally:
        _book.reset(token)
        _flush(book)


def _flush(book: _Book) -> None:
    rows, book.rows = book.rows, []
    if not rows:
        return
    try:
        with db.transaction() as cur:
            psycopg2.extras.execute_values(
                cur, "INSERT INTO x3_attempts (started_at, invoice_id, stampli_vendor_id,"
                " task_id, call, try, duration_ms, outcome, http_status, error) VALUES %s", rows)
    except db.TRANSIENT_DB_ERRORS as exc:
        # The records describe the work; they must never turn its outcome into an error.
        log.warning("%d X3 attempt record(s) not written: %s", len(rows), type(exc).__name__)


def flush_now() -> None:
    """Write what is buffered at once: after a create, whose record a crash must not lose."""
    book = _book.get()
    if book is not None:
        _flush(book)


@contextmanager
def call(name: str) -> Iterator[None]:
    """Name the X3 operation the HTTP tries inside belong to."""
    token = _call.set(name)
    try:
        yield
    finally:
        _call.reset(token)


class Try:
    """One HTTP try, timed from construction; `done` notes how it ended."""

    def __init__(self, method: str) -> None:
        self.method = method
        self.started = datetime.now(UTC)
        self.t0 = monotonic()

    def done(self, outcome: str, status: int | None = None, error: str | None = None) -> None:
        book = _book.get()
        if book is None:
            return
        name = _call.get() or self.method
        book.tries[name] = n = book.tries.get(name, 0) + 1
        book.rows.append((self.started, book.invoice_id, book.vendor_id, book.task_id, name, n,
                          round((monotonic() - self.t0) * 1000, 1), outcome, status,
                          error))


class RecordingClient:
    """Any X3 client, each operation named for the attempt records."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._client, name)
        if name.startswith("_") or not callable(target) or name == "close":
            return target

        def named(*args: Any, **kwargs: Any) -> Any:
            try:
                with call(name):
                    return target(*args, **kwargs)
            finally:
                if name.startswith("create_"):
                    flush_now()
        return named


def for_invoice(cur: Any, invoice_id: int) -> list[dict[str, Any]]:
    cur.execute("SELECT started_at, call, try, duration_ms, outcome, http_status, error, task_id"
                " FROM x3_attempts WHERE invoice_id = %s ORDER BY id", (invoice_id,))
    return list(cur.fetchall())
