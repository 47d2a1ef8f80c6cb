"""The reliability settings DESIGN.md asks for, derived from our Settings."""

from cryptography.fernet import Fernet

from pipeline.config import load_settings
from workers.settings import celery_config


def config(**env):
    return celery_config(load_settings({"DATABASE_URL": "postgresql://h/db",
                                        "MLC_SECRET_KEYS": Fernet.generate_key().decode(),
                                        **env}))


def test_reliability_settings():
    c = config()
    assert c["task_acks_late"] and c["task_reject_on_worker_lost"]
    assert c["worker_prefetch_multiplier"] == 1 and not c["worker_hijack_root_logger"]
    assert c["task_time_limit"] == 600 and c["task_soft_time_limit"] < 600
    assert c["worker_max_tasks_per_child"] > 0


def test_visibility_timeout_set_everywhere_celery_reads_it():
    c = config(MLC_VISIBILITY_TIMEOUT="7200")
    assert c["broker_transport_options"]["visibility_timeout"] == 7200
    assert c["result_backend_transport_options"]["visibility_timeout"] == 7200
    assert c["visibility_timeout"] == 7200


def test_abandoned_messages_are_swept_at_a_tenth_of_the_timeout():
    for vt, period in (("7200", 100), ("600", 60), ("10", 1)):
        opts = config(MLC_VISIBILITY_TIMEOUT=vt, MLC_TASK_TIME_LIMIT="5",
                      MLC_RETRY_BACKOFF_MAX="3")["broker_transport_options"]
        assert opts["unacked_restore_interval"] * opts["unacked_restore_throttle"] == period


def test_beat_polls_every_interval():
    entry = config(MLC_POLL_INTERVAL="60")["beat_schedule"]["poll-stampli-exports"]
    assert entry["task"] == "mlc.fetch_exports" and entry["schedule"] == 60.0
