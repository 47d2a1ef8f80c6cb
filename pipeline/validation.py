"""Check every line's account and dimensions against X3 before posting.

Known-good codes are cached per process for a while (X3 master data changes rarely, and each
check is a round trip); unknown ones are asked again every time, so a fix in X3 is seen at once.
The cache is dropped whenever X3 refuses an invoice.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from pipeline.x3.client import NewInvoice, X3Client

TTL_SECONDS = 300.0
_lock = threading.Lock()
_known: dict[tuple[str, ...], float] = {}


def forget() -> None:
    with _lock:
        _known.clear()


def _cached(key: tuple[str, ...]) -> bool:
    with _lock:
        seen = _known.get(key)
        return seen is not None and time.monotonic() - seen < TTL_SECONDS


def _remember(key: tuple[str, ...]) -> None:
    with _lock:
        _known[key] = time.monotonic()


def _exists(key: tuple[str, ...], ask: Callable[[], bool]) -> bool:
    if _cached(key):
        return True
    if ask():
        _remember(key)
        return True
    return False


def problems(document: NewInvoice, client: X3Client, chart: str) -> list[str]:
    """One readable reason per line and code that X3 does not know; empty when all is well."""
    found: list[str] = []
    verdicts: dict[tuple[str, ...], bool] = {}
    where = repr(client)  # the cache is per X3 endpoint
    for line in document.lines:
        key = ("ACC", where, chart, line.account)
        if key not in verdicts:
            verdicts[key] = _exists(key, lambda k=key: client.account_exists(k[2], k[3]))
        if not verdicts[key]:
            found.append(f"line {line.line_number}: GL account {line.account} does not exist "
                         f"in X3 chart {chart}")
        for dim_type, value in line.dimensions:
            key = ("DIM", where, dim_type, value)
            if key not in verdicts:
                verdicts[key] = _exists(key, lambda k=key: client.dimension_exists(k[2], k[3]))
            if not verdicts[key]:
                found.append(f"line {line.line_number}: dimension {dim_type} value {value} "
                             "does not exist in X3")
    return found
