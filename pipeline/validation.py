"""Check every line's account and dimensions against X3 before posting.

X3 master data changes rarely and each question is a round trip on a licensed session, so codes
X3 confirmed are remembered for TTL_SECONDS in two tiers: this process's memory, then a Redis
hash per X3 endpoint shared by every worker (the parse task fills it for a whole file with one
batched query per type, see `prefetch`). What neither tier knows is asked in one batched query per
type (`known_accounts` / `known_dimensions`). Unknown codes are never remembered: they are asked
again every time, so a fix in X3 is seen at once. Both tiers are dropped whenever X3 refuses an
invoice. Redis is only a shortcut: when it fails, X3 is asked.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Iterable

import redis

from pipeline.x3.client import NewInvoice, X3Client, by_type

TTL_SECONDS = 300.0
SHARED_PREFIX = "mlc:x3:known:"
log = logging.getLogger(__name__)
_lock = threading.Lock()
_known: dict[tuple[str, ...], float] = {}  # (scope, kind, code) -> when X3 confirmed it


def _shared() -> redis.Redis:
    from pipeline.x3.connect import redis_client

    return redis_client()


def forget() -> None:
    """Drop every remembered code, here and in the shared tier."""
    with _lock:
        _known.clear()
    try:
        r = _shared()
        keys = list(r.scan_iter(match=SHARED_PREFIX + "*", count=500))
        if keys:
            r.delete(*keys)
    except redis.RedisError as exc:
        log.warning("could not drop the shared X3 code cache: %s", type(exc).__name__)


def _scope(client: X3Client) -> str:
    """One cache per X3 endpoint and folder, whatever wraps the client."""
    return getattr(client, "scope", None) or repr(client)


def _shared_key(scope: str, kind: str) -> str:
    return SHARED_PREFIX + hashlib.sha256(f"{scope}|{kind}".encode()).hexdigest()[:24]


def _recall(scope: str, kind: str, codes: set[str]) -> set[str]:
    """The codes of `codes` confirmed within TTL_SECONDS, from memory then the shared tier."""
    now = time.time()
    with _lock:
        hit = {c for c in codes if now - _known.get((scope, kind, c), -1e18) < TTL_SECONDS}
    missing = sorted(codes - hit)
    if missing:
        try:
            stamps = _shared().hmget(_shared_key(scope, kind), missing)
        except redis.RedisError as exc:
            log.debug("shared X3 code cache unavailable: %s", type(exc).__name__)
            return hit
        fresh = {c: float(s) for c, s in zip(missing, stamps, strict=True)
                 if s is not None and now - float(s) < TTL_SECONDS}
        with _lock:
            _known.update({(scope, kind, c): s for c, s in fresh.items()})
        hit |= set(fresh)
    return hit


def _remember(scope: str, kind: str, codes: set[str]) -> None:
    if not codes:
        return
    now = time.time()
    with _lock:
        _known.update({(scope, kind, c): now for c in codes})
    try:
        with _shared().pipeline(transaction=False) as pipe:
            pipe.hset(_shared_key(scope, kind), mapping={c: repr(now) for c in codes})
            pipe.expire(_shared_key(scope, kind), int(TTL_SECONDS * 2))
            pipe.execute()
    except redis.RedisError as exc:
        log.debug("shared X3 code cache unavailable: %s", type(exc).__name__)


def known_codes(client: X3Client, chart: str, accounts: Iterable[str],
                dimensions: Iterable[tuple[str, str]]
                ) -> tuple[set[str], set[tuple[str, str]]]:
    """Which of these accounts (in `chart`) and (type, value) dimensions X3 holds: remembered
    answers first, then one batched X3 query per type for the rest."""
    scope = _scope(client)
    accounts = set(accounts)
    found_accounts = _recall(scope, f"ACC|{chart}", accounts)
    ask = accounts - found_accounts
    if ask:
        confirmed = client.known_accounts(chart, sorted(ask)) & ask
        _remember(scope, f"ACC|{chart}", confirmed)
        found_accounts |= confirmed
    found_dims: set[tuple[str, str]] = set()
    unknown: list[tuple[str, str]] = []
    for dim_type, values in by_type(dimensions).items():
        hit = _recall(scope, f"DIM|{dim_type}", values)
        found_dims |= {(dim_type, v) for v in hit}
        unknown += [(dim_type, v) for v in sorted(values - hit)]
    if unknown:
        confirmed_dims = client.known_dimensions(unknown) & set(unknown)
        for dim_type in {t for t, _ in confirmed_dims}:
            _remember(scope, f"DIM|{dim_type}", {v for t, v in confirmed_dims if t == dim_type})
        found_dims |= confirmed_dims
    return found_accounts, found_dims


def problems(document: NewInvoice, client: X3Client, chart: str) -> list[str]:
    """One readable reason per line and code that X3 does not know; empty when all is well."""
    accounts, dimensions = known_codes(
        client, chart, {ln.account for ln in document.lines},
        {pair for ln in document.lines for pair in ln.dimensions})
    found: list[str] = []
    for line in document.lines:
        if line.account not in accounts:
            found.append(f"line {line.line_number}: GL account {line.account} does not exist "
                         f"in X3 chart {chart}")
        for dim_type, value in line.dimensions:
            if (dim_type, value) not in dimensions:
                found.append(f"line {line.line_number}: dimension {dim_type} value {value} "
                             "does not exist in X3")
    return found
