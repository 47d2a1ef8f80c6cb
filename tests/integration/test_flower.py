"""Flower runs with the broker alone: no DATABASE_URL, no Fernet keys in the UI container."""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from sandbox.harness import Process, wait_for
from sandbox.sftp import free_port

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def test_flower_starts_without_database_url_or_secret_keys(redis_url, tmp_path):
    pytest.importorskip("flower")
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "MLC_SECRET_KEYS")}
    env.update(CELERY_BROKER_URL=redis_url, FLOWER_BASIC_AUTH="ops:pw", PYTHONPATH=str(ROOT))
    flower = Process("flower", [sys.executable, "-m", "celery", "-A", "workers", "flower",
                                "--address=127.0.0.1", f"--port={port}",
                                f"--db={tmp_path / 'flower.db'}"], env, tmp_path)
    try:
        def healthy() -> bool:
            assert flower.alive(), flower.log()[-3000:]
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthcheck",
                                        timeout=2) as r:
                return r.read() == b"OK"

        wait_for(healthy, timeout=30, what="Flower's /healthcheck")
        with pytest.raises(urllib.error.HTTPError) as denied:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5)
        assert denied.value.code == 401
        assert "ConfigError" not in flower.log()
    finally:
        flower.stop()
