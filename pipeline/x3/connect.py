"""Build the X3 client named by the stored `x3` connection."""

from __future__ import annotations

from psycopg2.extensions import cursor as Cursor

from pipeline import connections
from pipeline.config import settings
from pipeline.x3.client import X3Client
from pipeline.x3.rest import RestClient


def open_client(cur: Cursor, name: str = connections.X3) -> X3Client:
    conn = connections.load(cur, name)
    s = conn.settings
    if conn.kind == "x3_rest":
        return RestClient(
            s["url"], s["folder"], s["username"], conn.secret.get("password", ""),
            invoice_class=settings().x3_invoice_class, timeout=settings().x3_timeout,
            verify=s.get("ca_bundle") or True,
        )
    raise NotImplementedError(f"X3 transport {conn.kind!r} is not available yet")


_cache: dict[tuple[int, str], tuple[object, X3Client]] = {}


def shared_client(name: str = connections.X3) -> X3Client:
    """One client (and HTTP session) per process, rebuilt when the connection row changes."""
    import os

    from pipeline import db

    with db.transaction() as cur:
        cur.execute("SELECT updated_at FROM connections WHERE name = %s", (name,))
        row = cur.fetchone()
        if row is None:
            raise connections.ConnectionMissing(
                f"no connection named {name!r}: run `mlc connection set {name} ...` first")
        key = (os.getpid(), name)
        cached = _cache.get(key)
        if cached and cached[0] == row["updated_at"]:
            return cached[1]
        client = open_client(cur, name)
    if cached:
        cached[1].close()
    _cache[key] = (row["updated_at"], client)
    return client
