"""Celery settings derived from our validated Settings (see DESIGN.md, Celery facts)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipeline.config import Settings


def celery_config(s: Settings) -> dict[str, Any]:
    # The visibility timeout must outlive the longest task and retry countdown, and must be set
    # in every place Celery reads it or it silently stays at 1 h (celery/celery#7651).
    vt = s.visibility_timeout
    # kombu sweeps for abandoned (unacked, past the timeout) messages every
    # unacked_restore_interval * unacked_restore_throttle seconds (10 * 10 by default): keep
    # that sweep to about a tenth of the timeout so a killed worker's work comes back promptly.
    interval = max(1, min(10, vt // 10))
    throttle = max(1, min(10, vt // (10 * interval)))
    # Socket timeouts: a broker that stops answering without closing the connection would
    # otherwise hang a publish (or a result write) for ever (kombu's redis transport docs).
    transport = {"visibility_timeout": vt, "unacked_restore_interval": interval,
                 "unacked_restore_throttle": throttle,
                 "socket_timeout": s.redis_socket_timeout,
                 "socket_connect_timeout": s.redis_connect_timeout}
    return {
        "broker_url": s.broker_url,
        "result_backend": s.result_backend,
        "broker_transport_options": transport,
        "result_backend_transport_options": transport,
        "visibility_timeout": s.visibility_timeout,
        "redis_socket_timeout": s.redis_socket_timeout,
        "redis_socket_connect_timeout": s.redis_connect_timeout,
        "broker_connection_retry_on_startup": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "task_ignore_result": True,
        "task_time_limit": s.task_time_limit,
        "task_soft_time_limit": max(s.task_time_limit - 30, int(s.task_time_limit * 0.8)),
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_expires": 86400,
        "worker_prefetch_multiplier": 1,
        # Recycles children against slow leaks; high enough that per-process caches (X3 session,
        # validated codes) stay warm.
        "worker_max_tasks_per_child": 2000,
        "worker_hijack_root_logger": False,
        "worker_send_task_events": s.task_events,
        "task_send_sent_event": s.task_events,
        "timezone": "UTC",
        "beat_schedule": {
            "poll-stampli-exports": {
                "task": "mlc.fetch_exports",
                "schedule": float(s.poll_interval),
                # A poll that waited longer than one interval is stale: the next one replaces it.
                "options": {"expires": float(s.poll_interval)},
            },
        },
    }


def monitor_config(environ: Mapping[str, str]) -> dict[str, Any]:
    """Flower only watches: the broker is all it needs. It reads neither the database nor the
    Fernet keys (the UI container must not hold them), so it is configured from the broker
    settings alone, without the full validated Settings."""
    broker = environ.get("CELERY_BROKER_URL") or "redis://127.0.0.1:6379/0"
    vt = int(environ.get("MLC_VISIBILITY_TIMEOUT") or 7200)
    transport = {"visibility_timeout": vt}
    return {
        "broker_url": broker,
        "result_backend": environ.get("CELERY_RESULT_BACKEND") or broker,
        "broker_transport_options": transport,
        "result_backend_transport_options": transport,
        "visibility_timeout": vt,
        "broker_connection_retry_on_startup": True,
        "task_ignore_result": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        "worker_hijack_root_logger": False,
        "timezone": "UTC",
    }
