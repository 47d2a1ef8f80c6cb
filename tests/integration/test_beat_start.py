"""Beat polls at start, not one whole interval later (15 min after a deploy)."""

from __future__ import annotations

import json
import os

import pytest
import redis

from sandbox.harness import start_beat, wait_for

pytestmark = pytest.mark.integration


def queued_tasks(client: redis.Redis) -> list[str]:
    return [json.loads(m)["headers"]["task"] for m in client.lrange("celery", 0, -1)]


def test_beat_queues_a_poll_at_start(db_env, tmp_path):
    env = {**os.environ, **db_env, "MLC_POLL_INTERVAL": "900"}
    client = redis.Redis.from_url(env["CELERY_BROKER_URL"])
    client.delete("celery")
    beat = start_beat(env, tmp_path)
    try:
        wait_for(lambda: "mlc.fetch_exports" in queued_tasks(client), timeout=20,
                 what=f"beat to queue a poll; log:\n{beat.log()[-2000:] if beat else ''}")
        assert queued_tasks(client).count("mlc.fetch_exports") == 1
    finally:
        beat.stop()
        client.delete("celery")
