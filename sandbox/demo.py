"""`mlc demo`: the whole pipeline once, on the sample export, with real parts.

Local SFTP export (sshd) -> real Celery worker and beat over Redis -> Postgres ledger -> the X3
simulator. Prints the summary table and the web console's URL with a demo login; exit 0 only
when every sample invoice is posted. `--console` leaves the stack and the console running until
Ctrl-C.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import psycopg2
import redis
import requests
from cryptography.fernet import Fernet

from sandbox.harness import (
    DATA,
    Process,
    configure_connections,
    fresh_database,
    start_beat,
    start_worker,
    start_x3sim,
    wait_for,
)
from sandbox.sftp import LocalSftp, free_port

SAMPLES = ("vendors_20261103101500.csv", "invoices_20261103101500.csv")
ADMIN_DSN = os.environ.get("MLC_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
DEMO_DB = "mlc_demo"


def _first_line(exc: BaseException) -> str:
    return next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)


def _check_services(broker: str) -> None:
    try:
        psycopg2.connect(ADMIN_DSN, connect_timeout=3).close()
    except psycopg2.OperationalError as exc:
        raise SystemExit(f"demo: PostgreSQL is not reachable at {ADMIN_DSN} ({_first_line(exc)}; "
                         "MLC_ADMIN_DSN names the server). "
                         "Install the Debian package postgresql (make services).") from None
    try:
        redis.Redis.from_url(broker, socket_timeout=3, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        raise SystemExit(f"demo: Redis is not reachable at {broker} ({_first_line(exc)}; "
                         "MLC_DEMO_BROKER names it). "
                         "Install the Debian package redis-server (make services).") from None


def _start_console(env: dict[str, str], work: Path) -> tuple[Process, str, str]:
    """The web console on port 8000 (or a free one), with an admin `demo` and a fresh password."""
    import secrets

    from console import users
    from pipeline import db

    password = secrets.token_urlsafe(12)
    with db.transaction() as cur:
        users.add(cur, "demo", "admin", password, by="mlc demo")
    wanted = int(os.environ.get("MLC_DEMO_CONSOLE_PORT", "8000"))
    port = wanted if _port_free(wanted) else free_port()
    proc = Process("console", [sys.executable, "-m", "ops.cli", "console", "--port",
                               str(port)], env, work)
    url = f"http://127.0.0.1:{port}/"
    wait_for(lambda: proc.alive() and requests.get(f"{url}healthz", timeout=1).ok,
             timeout=20, what="the console to answer")
    return proc, url, password


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def main(keep: bool = False, console: bool = False) -> int:
    broker = os.environ.get("MLC_DEMO_BROKER", "redis://127.0.0.1:6379/14")
    _check_services(broker)
    # A queue left by an earlier demo must not replay.
    redis.Redis.from_url(broker, socket_timeout=3, socket_connect_timeout=3).flushdb()
    work = Path(tempfile.mkdtemp(prefix="mlc-demo-"))
    env = dict(os.environ, DATABASE_URL=fresh_database(ADMIN_DSN, DEMO_DB),
               CELERY_BROKER_URL=broker,
               MLC_SECRET_KEYS=Fernet.generate_key().decode(), MLC_POLL_INTERVAL="30",
               MLC_STABILITY_RECHECK="2", MLC_AFTER_DOWNLOAD="move")
    os.environ.update(env)  # this process talks to the same database through pipeline.*
    from ops import status
    from pipeline import db, migrate
    from pipeline.config import settings
    from pipeline.states import InvoiceStatus

    settings.cache_clear()
    started = []
    try:
        print(f"demo: database {DEMO_DB}, broker {broker}, work dir {work}", flush=True)
        migrate.upgrade(env["DATABASE_URL"])
        x3, x3_url = start_x3sim(env, work)
        started.append(x3)
        export = work / "export"
        sftp = LocalSftp(export, state_dir=work / "sshd").start()
        started.append(sftp)
        configure_connections(sftp, x3_url)
        started.append(start_worker(env, work))
        started.append(start_beat(env, work))  # beat's first tick polls at once
        for name in SAMPLES:
            shutil.copy(DATA / name, export / name)
        from workers import app

        app.send_task("mlc.fetch_exports")

        def settled() -> dict | None:
            with db.transaction() as cur:
                summary = status.summary(cur)
            total = sum(summary["invoices"].values())
            return summary if total >= 3 and status.settled(summary) else None

        summary = wait_for(settled, timeout=120, what="every sample invoice to settle")
        print(status.render(summary))
        state = requests.get(f"{x3_url}/_sim/state", timeout=5).json()
        print("\nX3 simulator now holds:")
        for inv in state["invoices"]:
            print(f"  {inv['NUM']}  supplier {inv['BPR']:<8} document {inv['BPRVCR']:<10}"
                  f" {inv['CUR']} {inv['AMTATI']:>9}  lines {len(inv['BPSINVLIG'])}")
        posted = summary["invoices"].get(InvoiceStatus.POSTED, 0)
        ok = posted == 3 and len(state["invoices"]) == 3
        print(f"\ndemo: {'OK' if ok else 'FAILED'}: {posted} of 3 sample invoices posted")
        proc, url, password = _start_console(env, work)
        started.append(proc)
        print(f"\nconsole: {url}  login: demo / {password}")
        if console:
            print("demo: the stack and the console keep running; Ctrl-C stops them", flush=True)
            try:
                while all(p.alive() for p in started if isinstance(p, Process)):
                    time.sleep(1)
            except KeyboardInterrupt:
                pass
        else:
            print("demo: stopping (mlc demo --console, or make demo DEMO_FLAGS=--console,"
                  " keeps it running)")
        return 0 if ok else 1
    finally:
        for part in reversed(started):
            part.stop()
        time.sleep(0.2)
        from pipeline import db as _db

        _db.close_pools()
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
