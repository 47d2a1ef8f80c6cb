"""Named endpoints (Stampli SFTP, X3) with their secrets encrypted at rest."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from psycopg2.extensions import cursor as Cursor

from pipeline.config import settings
from pipeline.logs import register_secret
from pipeline.secrets import Vault

STAMPLI = "stampli"
X3 = "x3"


class ConnectionMissing(LookupError):
    pass


@dataclass(frozen=True)
class Connection:
    name: str
    kind: str
    settings: dict[str, Any]
    secret: dict[str, Any] = field(repr=False)

    def __repr__(self) -> str:
        return f"Connection(name={self.name!r}, kind={self.kind!r}, settings={self.settings!r})"


def vault() -> Vault:
    return Vault(settings().secret_keys)


def save(cur: Cursor, name: str, kind: str, conn_settings: dict[str, Any],
         secret: dict[str, Any] | None, *, keys: Vault | None = None) -> None:
    token = (keys or vault()).encrypt(secret) if secret else None
    cur.execute(
        "INSERT INTO connections (name, kind, settings, secret) VALUES (%s, %s, %s, %s)"
        " ON CONFLICT (name) DO UPDATE SET kind = EXCLUDED.kind, settings = EXCLUDED.settings,"
        " secret = EXCLUDED.secret, updated_at = now()",
        (name, kind, json.dumps(conn_settings), token),
    )


def load(cur: Cursor, name: str, *, keys: Vault | None = None) -> Connection:
    cur.execute("SELECT name, kind, settings, secret FROM connections WHERE name = %s", (name,))
    row = cur.fetchone()
    if row is None:
        raise ConnectionMissing(
            f"no connection named {name!r}: run `mlc connection set {name} ...` first"
        )
    secret = (keys or vault()).decrypt(row["secret"]) if row["secret"] is not None else {}
    for value in secret.values():
        if isinstance(value, str):
            register_secret(value)
    return Connection(row["name"], row["kind"], dict(row["settings"]), secret)


def update_secret(cur: Cursor, name: str, secret: dict[str, Any], *,
                  keys: Vault | None = None) -> None:
    """Replace only the secret (a rotated refresh token). updated_at stays: this is not a
    configuration change, so per-process clients built from the row are not rebuilt."""
    for value in secret.values():
        if isinstance(value, str):
            register_secret(value)
    cur.execute("UPDATE connections SET secret = %s WHERE name = %s",
                ((keys or vault()).encrypt(secret), name))
    if cur.rowcount != 1:
        raise ConnectionMissing(f"no connection named {name!r}")


def listing(cur: Cursor) -> list[dict[str, Any]]:
    cur.execute(
        "SELECT name, kind, settings, secret IS NOT NULL AS has_secret, updated_at"
        " FROM connections ORDER BY name"
    )
    return list(cur.fetchall())


def rotate_all(cur: Cursor, *, keys: Vault | None = None) -> int:
    """Re-encrypt every stored secret with the newest key; returns how many."""
    v = keys or vault()
    cur.execute("SELECT name, secret FROM connections WHERE secret IS NOT NULL FOR UPDATE")
    rows = cur.fetchall()
    for row in rows:
        cur.execute("UPDATE connections SET secret = %s, updated_at = now() WHERE name = %s",
                    (v.rotate(row["secret"]), row["name"]))
    return len(rows)
