"""`mlc health`: is every part this connector needs up? One line per check, non-zero if not."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pipeline import connections, db, migrate
from pipeline.config import settings


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def _postgres() -> str:
    with db.transaction() as cur:
        cur.execute("SELECT version() AS v")
        return cur.fetchone()["v"].split(" on ")[0]


def _migrations() -> str:
    missing = sorted({p.name for p in migrate.available()}
                     - set(migrate.applied(settings().database_url)))
    if missing:
        raise RuntimeError(f"not applied: {', '.join(missing)} (run `mlc db upgrade`)")
    return f"{len(migrate.available())} applied"


def _redis() -> str:
    import redis

    client = redis.Redis.from_url(settings().broker_url, socket_timeout=3,
                                  socket_connect_timeout=3)
    client.ping()
    return f"{settings().broker_url.split('@')[-1]} answers"


def _sftp() -> str:
    from pipeline.stampli import sftp

    with db.transaction() as cur:
        conn = connections.load(cur, connections.STAMPLI)
    with sftp.open_sftp(conn, timeout=10) as client:
        client.listdir(conn.settings.get("remote_dir", "."))
    return f"{conn.settings['host']}:{conn.settings.get('port', 22)} lists the export"


def _x3() -> str:
    from pipeline.x3.connect import open_client

    with db.transaction() as cur:
        client = open_client(cur)
    try:
        client.account_exists(settings().x3_coa, "0")
    finally:
        client.close()
    return f"{client!r} answers"


CHECKS: dict[str, Callable[[], str]] = {
    "postgres": _postgres, "migrations": _migrations, "redis": _redis, "sftp": _sftp, "x3": _x3,
}
LOCAL = ("postgres", "migrations", "redis")


def run(names: tuple[str, ...] = tuple(CHECKS)) -> list[Check]:
    results = []
    for name in names:
        try:
            results.append(Check(name, True, CHECKS[name]()))
        except Exception as exc:  # noqa: BLE001 - every failure is reported, none stops the rest
            results.append(Check(name, False, f"{type(exc).__name__}: {exc}".splitlines()[0]))
    return results
