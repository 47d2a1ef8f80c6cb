"""Retry arithmetic shared by both X3 transports."""

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

from pipeline.x3.transport import RetryPolicy, backoff_delay, retry_after_seconds


def test_retry_after_as_seconds_or_http_date():
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds("1.5") == 1.5
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("soon") is None
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 <= retry_after_seconds(later) <= 31
    earlier = format_datetime(datetime.now(UTC) - timedelta(seconds=30), usegmt=True)
    assert retry_after_seconds(earlier) == 0.0


def test_backoff_grows_with_jitter_and_is_capped():
    policy = RetryPolicy(base_delay=0.2, max_delay=1.0)
    for attempt, ceiling in ((1, 0.2), (2, 0.4), (3, 0.8), (6, 1.0)):
        delays = {backoff_delay(attempt, None, policy) for _ in range(50)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(delays) > 1  # jittered: workers do not retry in lock step


def test_retry_after_is_honoured_never_early_and_long_ones_are_not_waited():
    policy = RetryPolicy(max_retry_after=10)
    assert all(3 <= backoff_delay(1, 3, policy) <= 3.6 for _ in range(20))
    assert backoff_delay(1, 11, policy) is None
