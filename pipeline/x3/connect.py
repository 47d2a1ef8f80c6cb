"""Build the X3 client named by the stored `x3` connection."""

from __future__ import annotations

import hashlib
import os

import redis
from psycopg2.extensions import cursor as Cursor

from pipeline import connections
from pipeline.config import settings
from pipeline.x3.client import X3Client
from pipeline.x3.graphql import GraphQLClient
from pipeline.x3.limits import RedisLimiter
from pipeline.x3.rest import RestClient
from pipeline.x3.token_store import PgTokenStore
from pipeline.x3.tokens import ConnectedAppTokens, RefreshTokens, TokenSource
from pipeline.x3.transport import RetryPolicy

CONNECT_TIMEOUT = 5.0

_redis: dict[tuple[int, str], redis.Redis] = {}


def redis_client() -> redis.Redis:
    """This process's client of the broker's Redis (the call cap, the shared code cache)."""
    # Keyed by pid: a client inherited through fork shares its sockets with the parent.
    s = settings()
    key = (os.getpid(), s.broker_url)
    client = _redis.get(key)
    if client is None:
        # Bounded: a Redis that accepts and never answers (failover, dead NAT entry) makes the
        # call fail as X3Unavailable, retried later, instead of hanging the worker.
        client = _redis[key] = redis.Redis.from_url(
            s.broker_url, socket_timeout=s.redis_socket_timeout,
            socket_connect_timeout=s.redis_connect_timeout)
    return client


def limiter_for(url: str, folder: str) -> RedisLimiter:
    """The cross-process call cap of one X3 server and folder (the licence's unit)."""
    client = redis_client()
    digest = hashlib.sha256(f"{url.rstrip('/')}|{folder}".encode()).hexdigest()[:16]
    # A lease outlives the longest call it guards (one HTTP exchange ends by the call's
    # deadline), so only a dead holder's slot ever expires.
    lease = settings().x3_deadline + 5
    return RedisLimiter(client, f"mlc:x3:slots:{digest}", settings().x3_max_concurrency,
                        lease_seconds=lease, wait_seconds=max(30.0, lease))


def token_source(conn: connections.Connection) -> TokenSource:
    s, secret, cfg = conn.settings, conn.secret, settings()
    if s.get("auth") == "jwt":
        return ConnectedAppTokens(s["client_id"], secret.get("client_secret", ""),
                                  s["x3_user"], s["audience"])
    # The token endpoint sits behind the same private CA as X3 (or is X3 itself).
    return RefreshTokens(PgTokenStore(conn.name), s["token_url"], s["client_id"],
                         secret.get("client_secret", ""), timeout=cfg.x3_timeout,
                         verify=s.get("ca_bundle") or True, deadline=cfg.x3_deadline,
                         max_response_mb=cfg.x3_max_response_mb)


def open_client(cur: Cursor, name: str = connections.X3, *, retry: RetryPolicy | None = None,
                deadline: float | None = None) -> X3Client:
    """The connection's client; `retry` and `deadline` (seconds a call may take) replace the
    defaults for a caller that must not wait long (the parse task's prefetch)."""
    conn = connections.load(cur, name)
    s, cfg = conn.settings, settings()
    verify = s.get("ca_bundle") or True
    # The regional endpoint the OAuth onboarding was told about, when there was one.
    base_url = s.get("endpoint") or s["url"]
    limiter = limiter_for(base_url, s.get("folder", ""))
    if conn.kind == "x3_rest":
        return RestClient(
            s["url"], s["folder"], s["username"], conn.secret.get("password", ""),
            invoice_class=cfg.x3_invoice_class, timeout=cfg.x3_timeout,
            connect_timeout=CONNECT_TIMEOUT, verify=verify, limiter=limiter, retry=retry,
            deadline=deadline or cfg.x3_deadline, max_response_mb=cfg.x3_max_response_mb,
        )
    if conn.kind == "x3_graphql":
        return GraphQLClient(
            base_url, s["folder"], token_source(conn), chart=cfg.x3_coa,
            invoice_package=cfg.x3_graphql_invoice_package,
            invoice_node=cfg.x3_graphql_invoice_node, timeout=cfg.x3_timeout,
            connect_timeout=CONNECT_TIMEOUT, verify=verify, limiter=limiter, retry=retry,
            deadline=deadline or cfg.x3_deadline, max_response_mb=cfg.x3_max_response_mb,
        )
    raise NotImplementedError(f"X3 transport {conn.kind!r} is not available")


_checked: dict[tuple[int, str], float] = {}
_cache: dict[tuple[int, str], tuple[object, X3Client]] = {}


RECHECK_SECONDS = 30.0


def shared_client(name: str = connections.X3) -> X3Client:
    """One client (and HTTP session) per process, rebuilt when the connection row changes
    (looked at every RECHECK_SECONDS, not on every task)."""
    import time

    from pipeline import db

    key = (os.getpid(), name)
    cached = _cache.get(key)
    if cached and time.monotonic() - _checked.get(key, 0.0) < RECHECK_SECONDS:
        return cached[1]
    with db.transaction() as cur:
        cur.execute("SELECT updated_at FROM connections WHERE name = %s", (name,))
        row = cur.fetchone()
        if row is None:
            raise connections.ConnectionMissing(
                f"no connection named {name!r}: run `mlc connection set {name} ...` first")
        _checked[key] = time.monotonic()
        if cached and cached[0] == row["updated_at"]:
            return cached[1]
        client = open_client(cur, name)
    if cached:
        cached[1].close()
    _cache[key] = (row["updated_at"], client)
    return client
