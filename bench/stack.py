"""A whole connector stack for the benchmarks: fresh database, private Redis, sshd export, the X3
simulator and W Celery worker processes, plus CPU accounting of the processes it started.

Redis is a private `redis-server` on a free port (no RDB, no AOF, like the shared one), so a
chaos restart loses its queues without disturbing anything else that uses 127.0.0.1:6379.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2
import requests
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sandbox.broker import PrivateRedis  # noqa: E402
from sandbox.harness import (  # noqa: E402
    Process,
    fresh_database,
    start_beat,
    start_worker,
    start_x3sim,
    wait_for,
)
from sandbox.sftp import LocalSftp  # noqa: E402

ADMIN_DSN = os.environ.get("MLC_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
CC_MAP = ROOT / "sandbox" / "data" / "cost_center_map.csv"
TICK = os.sysconf("SC_CLK_TCK")


# -- CPU accounting ----------------------------------------------------------------------------
def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # comm may hold spaces: fields after the closing parenthesis start with state (field 3).
    return raw[raw.rindex(")") + 2:].split()


def group_cpu(pgid: int) -> float:
    """CPU seconds of every live process in a process group, plus the reaped children of its
    leader (Celery replaces pool children after worker_max_tasks_per_child tasks)."""
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        f = _stat(int(entry))
        if f is None or int(f[2]) != pgid:  # f[2] is field 5, pgrp
            continue
        total += (int(f[11]) + int(f[12])) / TICK  # utime, stime
        if int(entry) == pgid:
            total += (int(f[13]) + int(f[14])) / TICK  # cutime, cstime
    return total


def postgres_cpu() -> float:
    """CPU seconds of every postgres process on the machine (other users' work included)."""
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            comm = Path(f"/proc/{entry}/comm").read_text().strip()
        except OSError:
            continue
        if comm.startswith("postgres"):
            f = _stat(int(entry))
            if f:  # the postmaster's cutime holds the backends that have exited
                total += sum(int(x) for x in f[11:15]) / TICK
    return total


def pg_transactions(db_name: str) -> int:
    """Transactions committed or rolled back in one database so far, as Postgres counts them
    (a backend reports its counts when idle a while or when it exits: stop the workers first)."""
    import psycopg2

    with psycopg2.connect(ADMIN_DSN) as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_stat_clear_snapshot()")
        cur.execute("SELECT xact_commit + xact_rollback FROM pg_stat_database"
                    " WHERE datname = %s", (db_name,))
        row = cur.fetchone()
    conn.close()
    return int(row[0]) if row else 0


# -- the stack ---------------------------------------------------------------------------------
@dataclass
class Stack:
    work: Path
    db_name: str
    env: dict[str, str]
    sim: Process
    url: str
    sftp: LocalSftp
    redis: PrivateRedis
    workers: list[Process] = field(default_factory=list)
    retired_cpu: float = 0.0  # CPU of workers stopped or killed during the run
    concurrency: int = 2
    beat: Process | None = None
    started: int = 0

    @property
    def export_dir(self) -> Path:
        return self.sftp.export_dir

    def start_worker(self, concurrency: int | None = None) -> Process:
        # A fresh name (and log) each time: start_worker waits for "ready." in that log.
        self.started += 1
        w = start_worker(self.env, self.work, name=f"worker{self.started}",
                         concurrency=concurrency or self.concurrency)
        self.workers.append(w)
        return w

    def kill_worker(self, w: Process) -> None:
        self.retired_cpu += group_cpu(w.proc.pid)
        w.kill()
        self.workers.remove(w)

    def worker_cpu(self) -> float:
        return self.retired_cpu + sum(group_cpu(w.proc.pid) for w in self.workers if w.alive())

    def start_beat(self) -> Process:
        self.beat = start_beat(self.env, self.work)
        return self.beat

    def terminate_postgres(self) -> int:
        """pg_terminate_backend for every session on this database; returns how many."""
        return terminate_backends(self.db_name)

    def poll(self) -> None:
        from workers import app

        app.send_task("mlc.fetch_exports")

    def sim_state(self) -> dict:
        return requests.get(f"{self.url}/_sim/state", timeout=30).json()

    def faults(self, **faults: object) -> None:
        requests.post(f"{self.url}/_sim/faults", json=faults, timeout=10).raise_for_status()

    def reset_sim(self) -> None:
        requests.post(f"{self.url}/_sim/reset", timeout=10).raise_for_status()

    def stop_workers(self) -> None:
        for w in self.workers:
            w.stop()
        self.workers.clear()

    def stop(self) -> None:
        if self.beat:
            self.beat.stop()
        for w in self.workers:
            w.stop()
        self.sim.stop()
        self.sftp.stop()
        self.redis.stop()
        from pipeline import db

        db.close_pools()


def terminate_backends(db_name: str) -> int:
    conn = psycopg2.connect(ADMIN_DSN)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE datname = %s AND pid <> pg_backend_pid()", (db_name,))
        n = cur.fetchone()[0]
    conn.close()
    return n


def drop_database(name: str) -> None:
    conn = psycopg2.connect(ADMIN_DSN)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    conn.close()


def x3_connection(transport: str, url: str) -> tuple[str, dict, dict]:
    """(kind, settings, secret) of the X3 connection against the simulator: api1 with basic
    auth, or GraphQL with OAuth (the simulator's demo client and initial refresh token)."""
    if transport == "rest":
        return "x3_rest", {"url": url, "folder": "SEED", "username": "admin"}, {"password": "admin"}
    if transport == "graphql":
        return ("x3_graphql", {"url": url, "folder": "SEED", "auth": "oauth", "client_id": "demo",
                               "token_url": f"{url}/oauth/token"},
                {"client_secret": "demo-secret", "refresh_token": "initial-rt"})
    raise ValueError(f"unknown transport {transport!r}")


def build(db_name: str, *, concurrency: int, extra_env: dict[str, str] | None = None,
          work: Path | None = None, transport: str = "rest") -> Stack:
    """Everything but the workers: the caller starts them with stack.start_worker().
    transport: the X3 connection stored, rest (x3_rest) or graphql (x3_graphql, OAuth)."""
    work = work or Path(tempfile.mkdtemp(prefix=f"{db_name}-"))
    r = PrivateRedis(work).start()
    env = dict(os.environ, DATABASE_URL=fresh_database(ADMIN_DSN, db_name), CELERY_BROKER_URL=r.url,
               MLC_SECRET_KEYS=Fernet.generate_key().decode(), MLC_STABILITY="done_marker",
               MLC_AFTER_DOWNLOAD="leave", MLC_STABILITY_RECHECK="1",
               PYTHONPATH=str(ROOT), **(extra_env or {}))
    os.environ.update(env)  # this process reads the same database through pipeline.*
    from pipeline import connections, db, mapping, migrate
    from pipeline.config import settings

    settings.cache_clear()
    migrate.upgrade(env["DATABASE_URL"])
    sim, url = start_x3sim(env, work)
    sftp = LocalSftp(work / "export", state_dir=work / "sshd").start()
    with db.transaction() as cur:
        connections.save(cur, "stampli", "stampli_sftp", sftp.connection_settings(),
                         {"private_key": sftp.client_key_pem})
        connections.save(cur, "x3", *x3_connection(transport, url))
        mapping.import_csv(cur, "cost_centers", CC_MAP)
    return Stack(work, db_name, env, sim, url, sftp, r, concurrency=concurrency)


def mark_done(export_dir: Path) -> None:
    """`.done` markers for every export file (MLC_STABILITY=done_marker): no listing delay."""
    for p in export_dir.glob("*.csv"):
        (export_dir / f"{p.name}.done").touch()


def summary() -> dict:
    from ops import status
    from pipeline import db

    with db.transaction() as cur:
        return status.summary(cur)


def wait_settled(n: int, timeout: float, interval: float = 0.5) -> dict:
    from ops import status

    def probe() -> dict | None:
        s = summary()
        return s if sum(s["invoices"].values()) >= n and status.settled(s) else None

    return wait_for(probe, timeout=timeout, interval=interval, what=f"{n} invoices settled")


def cleanup(stack: Stack | None, keep: bool) -> None:
    if stack is None:
        return
    stack.stop()
    if not keep:
        drop_database(stack.db_name)
        shutil.rmtree(stack.work, ignore_errors=True)
