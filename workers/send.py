"""Enqueue from the command line: fail within seconds, in one line, when Redis is down.

Results are ignored (task_ignore_result), so nothing here touches the result backend; the
broker is asked once with a short timeout instead of Celery's patient publish retries.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.5,
                "interval_max": 0.5}


def broker_ping(url: str, timeout: float = 3.0) -> None:
    """Raise redis.ConnectionError (one clear line via ops.cli.errors) if the broker does
    not answer within timeout seconds."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        client.ping()
    finally:
        client.close()


def send(name: str, args: list[Any] | None = None, kwargs: dict[str, Any] | None = None
         ) -> str:
    from pipeline.config import settings
    from workers import app

    broker_ping(settings().broker_url)
    result = app.send_task(name, args=args, kwargs=kwargs, ignore_result=True,
                           retry_policy=RETRY_POLICY)
    return str(result.id)


def send_many(name: str, args_list: Sequence[list[Any]],
              on_sent: Callable[[int], None] | None = None) -> int:
    """One broker check, then one message per args; on_sent(count) after each."""
    from pipeline.config import settings
    from workers import app

    broker_ping(settings().broker_url)
    with app.producer_or_acquire() as producer:
        for done, args in enumerate(args_list, start=1):
            app.send_task(name, args=args, ignore_result=True, retry_policy=RETRY_POLICY,
                          producer=producer)
            if on_sent:
                on_sent(done)
    return len(args_list)
