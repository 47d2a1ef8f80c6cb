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


def _poll() -> str:
    """A poll reached the export without error within the last two intervals (beat polls at
    start, then every MLC_POLL_INTERVAL): otherwise the export is not being read."""
    from datetime import UTC, datetime, timedelta

    from ops.status import poll_health

    interval = settings().poll_interval
    with db.transaction() as cur:
        polls = poll_health(cur)
        cur.execute("SELECT min(started_at) AS at FROM polls")
        first = cur.fetchone()["at"]
    now, limit = datetime.now(UTC), timedelta(seconds=2 * interval)
    ok_at, error = polls["last_successful_poll_at"], polls["last_error"]
    if ok_at is not None and now - ok_at <= limit:
        return f"last successful poll {ok_at:%Y-%m-%d %H:%M:%S} UTC"
    why = f"; last error: {error['error']}" if error else ""
    if ok_at is None and first is not None and now - first <= limit:
        return f"no successful poll yet (first poll {first:%H:%M:%S} UTC){why}"
    if ok_at is None:
        since = "polls have failed since " + f"{first:%Y-%m-%d %H:%M}" if first else \
            "never polled (is beat running?)"
        raise RuntimeError(f"no successful poll: {since}{why}")
    raise RuntimeError(f"no successful poll for {int((now - ok_at).total_seconds())} s "
                       f"(two intervals: {2 * interval} s){why}")


def beat_schedule(path: str) -> Check:
    """Beat is alive: it rewrites its schedule file at least every few minutes (a sync every
    3 min, a tick at least every 5) and whenever the poll entry runs."""
    import glob
    import os
    import time

    limit = 2 * max(settings().poll_interval, 300) + 60
    files = glob.glob(glob.escape(path) + "*")
    if not files:
        return Check("beat", False, f"no schedule file {path}* (is beat running with "
                                    f"--schedule={path}?)")
    age = time.time() - max(os.path.getmtime(f) for f in files)
    if age > limit:
        return Check("beat", False, f"schedule file {path} not written for {age:.0f} s "
                                    f"(limit {limit} s): beat is stuck or stopped")
    return Check("beat", True, f"schedule file written {age:.0f} s ago")


CHECKS: dict[str, Callable[[], str]] = {
    "postgres": _postgres, "migrations": _migrations, "redis": _redis, "sftp": _sftp, "x3": _x3,
    "poll": _poll,
}
LOCAL = ("postgres", "migrations", "redis")


def run(names: tuple[str, ...] = tuple(CHECKS)) -> list[Check]:
    results = []
    for name in names:
        try:
            results.append(Check(name, True, CHECKS[name]()))
        except Exception as exc:  # noqa: BLE001 - every failure is reported, none stops the rest
            from ops.cli.errors import describe

            known = describe(exc)
            detail = known or f"{type(exc).__name__}: {exc}".splitlines()[0]
            results.append(Check(name, False, detail))
    return results
