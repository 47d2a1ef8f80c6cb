"""Apply migrations/NNNN_name.sql in order, each in its own transaction, recorded once."""

from __future__ import annotations

import re
from pathlib import Path

import psycopg2

from pipeline import locks

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
# A second migrator waits this long for the first (a migration may rewrite a large table).
LOCK_WAIT = 1800.0


def available(directory: Path = MIGRATIONS_DIR) -> list[Path]:
    files = sorted(p for p in directory.glob("*.sql") if _NAME.match(p.name))
    numbers = [p.name[:4] for p in files]
    if len(numbers) != len(set(numbers)):
        raise RuntimeError(f"two migrations share a number in {directory}")
    return files


def upgrade(dsn: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply what is missing; return the names applied. Safe when run twice at once."""
    applied_now: list[str] = []
    conn = psycopg2.connect(dsn, application_name="ml-connector-migrate", connect_timeout=10)
    try:
        # Session lock: a second migrator waits here, then finds nothing left to do.
        with locks.session_lock(conn, locks.migrate(), wait=True, timeout=LOCK_WAIT):
            with conn, conn.cursor() as cur:
                cur.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations ("
                    " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
                )
                cur.execute("SELECT name FROM schema_migrations")
                done = {row[0] for row in cur.fetchall()}
            for path in available(directory):
                if path.name in done:
                    continue
                with conn, conn.cursor() as cur:
                    cur.execute(path.read_text(encoding="utf-8"))
                    cur.execute("INSERT INTO schema_migrations (name) VALUES (%s)",
                                (path.name,))
                applied_now.append(path.name)
    finally:
        conn.close()
    return applied_now


def applied(dsn: str) -> list[str]:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT to_regclass('schema_migrations') IS NOT NULL")
        if not cur.fetchone()[0]:
            return []
        cur.execute("SELECT name FROM schema_migrations ORDER BY name")
        return [row[0] for row in cur.fetchall()]
