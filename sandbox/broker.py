"""A private Redis for runs that restart their broker: `redis-server` on a free loopback port,
nothing kept on disk (no RDB, no AOF, like the shared one), so a restart loses every queue and
reservation without disturbing anything else that uses 127.0.0.1:6379."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import IO

import redis

from sandbox.harness import wait_for
from sandbox.sftp import free_port


class PrivateRedis:
    """redis-server on a free loopback port that keeps nothing on disk; restart loses queues."""

    def __init__(self, work: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.work = work
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> PrivateRedis:
        self._log = open(self.work / "redis.log", "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
             "--appendonly", "no", "--dir", str(self.work)],
            stdout=self._log, stderr=self._log, stdin=subprocess.DEVNULL, start_new_session=True)
        wait_for(lambda: redis.Redis.from_url(self.url, socket_timeout=1).ping(), timeout=10,
                 what="private redis to answer", interval=0.05)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log:
            self._log.close()
            self._log = None

    def restart(self, down_for: float = 1.0) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc and self.proc.poll() is None else None
