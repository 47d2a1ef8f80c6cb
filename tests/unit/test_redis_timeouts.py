"""Every Redis client of ours has socket and connect timeouts: a Redis that accepts connections
and then says nothing (failover, a full host, a dead NAT entry) must not hang a worker."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
from cryptography.fernet import Fernet

from pipeline.config import settings
from pipeline.x3 import connect
from pipeline.x3.errors import X3Unavailable


@pytest.fixture
def silent_redis() -> Iterator[str]:
    """A TCP port the kernel accepts connections on and nobody ever answers."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    yield f"redis://127.0.0.1:{server.getsockname()[1]}/0"
    server.close()


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, silent_redis: str) -> Iterator[None]:
    monkeypatch.setenv("DATABASE_URL", "postgresql://127.0.0.1/unused")
    monkeypatch.setenv("MLC_SECRET_KEYS", Fernet.generate_key().decode())
    monkeypatch.setenv("CELERY_BROKER_URL", silent_redis)
    monkeypatch.setenv("MLC_REDIS_SOCKET_TIMEOUT", "0.3")
    monkeypatch.setenv("MLC_REDIS_CONNECT_TIMEOUT", "0.3")
    settings.cache_clear()
    yield
    settings.cache_clear()


def test_limiter_against_a_silent_redis_fails_fast_and_retryably(env):
    limiter = connect.limiter_for("http://x3.example", "SEED")
    outcome: list[BaseException | None] = []

    def take_a_slot() -> None:
        try:
            with limiter.slot():
                outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 (reported to the test thread)
            outcome.append(exc)

    started = time.monotonic()
    # In a thread: without timeouts the call never returns, and the test must still end.
    worker = threading.Thread(target=take_a_slot, daemon=True)
    worker.start()
    worker.join(10)
    assert outcome, "the limiter was still waiting for Redis after 10 s"
    assert isinstance(outcome[0], X3Unavailable) and outcome[0].transient
    assert "limiter" in str(outcome[0]) and "Timeout" in str(outcome[0])
    assert time.monotonic() - started < 5


def test_limiter_client_has_both_timeouts(env):
    limiter = connect.limiter_for("http://x3.example", "OTHER")
    kwargs = limiter._redis.connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] == 0.3
    assert kwargs["socket_connect_timeout"] == 0.3


def test_celery_broker_and_backend_have_both_timeouts(env):
    from workers.settings import celery_config

    c = celery_config(settings())
    for options in (c["broker_transport_options"], c["result_backend_transport_options"]):
        assert options["socket_timeout"] == 0.3
        assert options["socket_connect_timeout"] == 0.3
    assert c["redis_socket_timeout"] == 0.3
    assert c["redis_socket_connect_timeout"] == 0.3
