"""What waits in the broker: read from kombu's Redis keys, which only the workers' side knows.

kombu keeps a queue as a Redis list named after it and the messages taken but not yet
acknowledged in the `unacked` hash (the visibility timeout restores them from there).
"""

from __future__ import annotations

QUEUE = "celery"  # the default queue: every mlc task is routed to it
UNACKED = "unacked"


def queue_depth(broker_url: str) -> dict[str, int] | None:
    """Messages waiting and messages taken but not yet acknowledged, or None if unreachable."""
    import redis

    try:
        client = redis.Redis.from_url(broker_url, socket_timeout=2, socket_connect_timeout=2)
        return {"waiting": int(client.llen(QUEUE)), "unacked": int(client.hlen(UNACKED))}
    except redis.RedisError:
        return None
