"""The Postgres TokenStore: the x3_tokens row (migrations/0002) holds the shared access token;
the refresh token lives encrypted in the connections row's secret, and that row's lock is the
refresh lock."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from psycopg2.extensions import cursor as Cursor

from pipeline import connections, db
from pipeline.secrets import SecretError
from pipeline.x3.errors import X3AuthError
from pipeline.x3.tokens import SharedToken, fingerprint

# clock_timestamp(), not now(): a refresh may wait on the lock well into its transaction.
_SELECT = ("SELECT access_token, lifetime, refused_refresh,"
           " extract(epoch FROM expires_at - clock_timestamp()) AS remaining"
           " FROM x3_tokens WHERE connection = %s")


class PgTokenStore:
    def __init__(self, connection: str = connections.X3) -> None:
        self.connection = connection

    def __repr__(self) -> str:
        return f"PgTokenStore({self.connection!r})"

    def current(self) -> SharedToken | None:
        with db.transaction() as cur:
            cur.execute(_SELECT, (self.connection,))
            return _shared(cur.fetchone())

    @contextmanager
    def locked(self) -> Iterator[_PgLocked]:
        with db.transaction() as cur:
            # The connection's row is the refresh lock: every refresh of it, in any process,
            # queues here, and so does `mlc connection set`, which therefore cannot have its new
            # refresh token overwritten by a refresh that read the old one. Always taken before
            # the x3_tokens row, as `connection set` does, so the two never deadlock.
            cur.execute("SELECT 1 FROM connections WHERE name = %s FOR UPDATE",
                        (self.connection,))
            if cur.fetchone() is None:
                raise connections.ConnectionMissing(f"no connection named {self.connection!r}")
            cur.execute("INSERT INTO x3_tokens (connection) VALUES (%s) ON CONFLICT DO NOTHING",
                        (self.connection,))
            cur.execute(_SELECT, (self.connection,))
            yield _PgLocked(cur, self.connection, cur.fetchone())

    def refreshes(self) -> int:
        with db.transaction() as cur:
            cur.execute("SELECT refreshes FROM x3_tokens WHERE connection = %s",
                        (self.connection,))
            row = cur.fetchone()
            return int(row["refreshes"]) if row else 0


def forget(cur: Cursor, connection: str) -> None:
    """Drop the shared access token (new credentials were stored)."""
    cur.execute("DELETE FROM x3_tokens WHERE connection = %s", (connection,))


def seed(cur: Cursor, connection: str, access_token: str, expires_in: float) -> None:
    """Share an access token obtained outside a refresh (the onboarding's code exchange)."""
    sealed = connections.vault().encrypt({"access_token": access_token})
    cur.execute(
        "INSERT INTO x3_tokens (connection, access_token, lifetime, expires_at, refreshed_at)"
        " VALUES (%s, %s, %s, clock_timestamp() + make_interval(secs => %s), now())"
        " ON CONFLICT (connection) DO UPDATE SET access_token = EXCLUDED.access_token,"
        " lifetime = EXCLUDED.lifetime, expires_at = EXCLUDED.expires_at,"
        " refreshed_at = EXCLUDED.refreshed_at, refused_refresh = NULL",
        (connection, sealed, expires_in, expires_in))


def _shared(row: dict[str, Any] | None) -> SharedToken | None:
    if row is None or row["access_token"] is None or row["remaining"] is None:
        return None
    try:
        token = connections.vault().decrypt(row["access_token"])["access_token"]
    except (SecretError, KeyError):
        return None  # encrypted with a key since removed: refresh instead
    return SharedToken(token, float(row["remaining"]), float(row["lifetime"] or 300))


class _PgLocked:
    def __init__(self, cur: Cursor, connection: str, row: dict[str, Any]) -> None:
        self._cur, self._connection, self._row = cur, connection, row

    def current(self) -> SharedToken | None:
        return _shared(self._row)

    def _secret(self) -> dict[str, Any]:
        return connections.load(self._cur, self._connection).secret

    def refresh_token(self) -> str:
        token = self._secret().get("refresh_token")
        if not token:
            raise X3AuthError("the x3 connection has no refresh token: store one with "
                              "`mlc connection set x3 ... --refresh-token-stdin`")
        return str(token)

    def is_refused(self, refresh_token: str) -> bool:
        return self._row["refused_refresh"] == fingerprint(refresh_token)

    def mark_refused(self, refresh_token: str) -> None:
        self._cur.execute("UPDATE x3_tokens SET refused_refresh = %s, access_token = NULL"
                          " WHERE connection = %s", (fingerprint(refresh_token), self._connection))

    def save(self, access_token: str, expires_in: float, refresh_token: str) -> None:
        secret = self._secret()
        if secret.get("refresh_token") != refresh_token:
            connections.update_secret(self._cur, self._connection,
                                      {**secret, "refresh_token": refresh_token})
        sealed = connections.vault().encrypt({"access_token": access_token})
        self._cur.execute(
            "UPDATE x3_tokens SET access_token = %s, lifetime = %s,"
            " expires_at = clock_timestamp() + make_interval(secs => %s), refreshed_at = now(),"
            " refreshes = refreshes + 1, refused_refresh = NULL WHERE connection = %s",
            (sealed, expires_in, expires_in, self._connection))
