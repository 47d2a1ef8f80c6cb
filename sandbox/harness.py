"""Start and stop the real parts (simulator, worker, beat) as subprocesses; wait on states.

Shared by `mlc demo` and the end-to-end tests so both exercise the same set-up.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, TypeVar

import requests

from sandbox.sftp import LocalSftp, free_port

DATA = Path(__file__).resolve().parent / "data"

T = TypeVar("T")


class TimedOut(AssertionError):
    pass


def wait_for(probe: Callable[[], T], *, timeout: float, what: str, interval: float = 0.2) -> T:
    """Poll probe until it returns something truthy; on timeout say what was last seen."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            last = probe()
        except Exception as exc:  # noqa: BLE001 - the last error is part of the report
            last = exc
        else:
            if last:
                return last  # type: ignore[return-value]
        if time.monotonic() > deadline:
            raise TimedOut(f"timed out after {timeout}s waiting for {what}; last seen: {last!r}")
        time.sleep(interval)


class Process:
    """A child process whose output goes to a log file, stopped gently then firmly."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log: IO[bytes] = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(args, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 20.0) -> None:
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()

    def kill(self) -> None:
        """SIGKILL the whole process group: the worker and its pool children."""
        try:
            os.killpg(self.proc.pid, 9)
        except ProcessLookupError:
            pass
        self.proc.wait()


def start_x3sim(env: dict[str, str], log_dir: Path, port: int | None = None,
                user: str = "admin", password: str = "admin",  # noqa: S107 - simulator
                ) -> tuple[Process, str]:
    port = port or free_port()
    proc = Process("x3sim", [sys.executable, "-m", "sandbox.x3sim", "--port", str(port),
                             "--user", user, "--password", password], env, log_dir)
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: proc.alive() and requests.get(f"{url}/_sim/state", timeout=1).ok,
             timeout=15, what="the X3 simulator to answer")
    return proc, url


def fresh_database(admin_dsn: str, name: str) -> str:
    """Drop and create database `name` on the server of admin_dsn; returns its DSN."""
    import psycopg2

    conn = psycopg2.connect(admin_dsn)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            cur.execute(f"CREATE DATABASE {name}")
    finally:
        conn.close()
    return admin_dsn.rsplit("/", 1)[0] + f"/{name}"


def configure_connections(sftp: LocalSftp, x3_url: str,
                          x3_password: str = "admin") -> None:  # noqa: S107 - simulator
    """Store the sandbox's connections (key auth with the pinned host key; REST X3) and the
    sample cost-center mapping, as an operator would with `mlc connection set`."""
    from pipeline import connections, db, mapping

    with db.transaction() as cur:
        connections.save(cur, "stampli", "stampli_sftp", sftp.connection_settings(),
                         {"private_key": sftp.client_key_pem})
        connections.save(cur, "x3", "x3_rest",
                         {"url": x3_url, "folder": "SEED", "username": "admin"},
                         {"password": x3_password})
        mapping.import_csv(cur, "cost_centers", DATA / "cost_center_map.csv")


def start_worker(env: dict[str, str], log_dir: Path, name: str = "worker",
                 concurrency: int = 2) -> Process:
    args = [sys.executable, "-m", "celery", "-A", "workers", "worker", "--loglevel=INFO",
            f"--concurrency={concurrency}", "-n", f"{name}@%h", "--without-gossip",
            "--without-mingle"]
    proc = Process(name, args, env, log_dir)
    wait_for(lambda: "ready." in proc.log() or not proc.alive(), timeout=30,
             what=f"celery {name} to be ready")
    if not proc.alive():
        raise RuntimeError(f"{name} exited:\n{proc.log()[-3000:]}")
    return proc


def start_beat(env: dict[str, str], log_dir: Path) -> Process:
    schedule = log_dir / "celerybeat-schedule"
    args = [sys.executable, "-m", "celery", "-A", "workers", "beat", "--loglevel=INFO",
            f"--schedule={schedule}"]
    return Process("beat", args, env, log_dir)
