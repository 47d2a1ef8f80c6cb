"""A Postgres that accepts the TCP connection and never answers: connecting gives up after
MLC_PG_CONNECT_TIMEOUT with a retryable error that says so."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from cryptography.fernet import Fernet

from pipeline import db
from pipeline.config import settings
from tasks.base import MlcTask


@pytest.fixture
def silent_postgres(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    monkeypatch.setenv("DATABASE_URL",
                       f"postgresql://postgres@127.0.0.1:{server.getsockname()[1]}/none")
    monkeypatch.setenv("MLC_SECRET_KEYS", Fernet.generate_key().decode())
    monkeypatch.setenv("MLC_PG_CONNECT_TIMEOUT", "2")  # libpq's smallest
    settings.cache_clear()
    yield
    settings.cache_clear()
    db.close_pools()
    server.close()


def test_connect_timeout_is_a_retryable_error_naming_its_setting(silent_postgres):
    started = time.monotonic()
    with pytest.raises(db.DatabaseTimeout) as caught:
        with db.transaction():
            pass
    assert time.monotonic() - started < 8
    assert isinstance(caught.value, MlcTask.autoretry_for)
    assert "MLC_PG_CONNECT_TIMEOUT" in str(caught.value)
