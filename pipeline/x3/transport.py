"""HTTP plumbing both X3 transports share: one session, timeouts, retries, the call cap.

Reads are repeated on connection errors, timeouts and transient answers, with exponential backoff
and jitter, or after the Retry-After X3 asked for. A create is sent once: if it may have reached
X3 and no answer came, the outcome is unknown and only a lookup can tell (X3OutcomeUnknown).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import requests
from urllib3.exceptions import NewConnectionError

from pipeline.x3 import attempts
from pipeline.x3.errors import X3OutcomeUnknown, X3Unavailable
from pipeline.x3.limits import Limiter, NoLimit

log = logging.getLogger(__name__)
T = TypeVar("T")


def created_key(record: dict[str, Any], field: str, what: str) -> str:
    """The key X3 gave a created record; without one the outcome is unknown, not "None"."""
    key = record.get(field) or record.get("$key")
    if not key:
        raise X3OutcomeUnknown(f"{what} answered without {field}: the record may exist")
    return str(key)


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4  # tries of one read, the first included
    base_delay: float = 0.2  # seconds before the first retry, doubled each time
    max_delay: float = 5.0
    # Longer waits are not slept through inside a worker (it holds a task slot): the error goes
    # to the task layer, which retries later with its own countdown.
    max_retry_after: float = 10.0
    max_total_wait: float = 20.0


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds: either delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)


def backoff_delay(attempt: int, retry_after: float | None, policy: RetryPolicy) -> float | None:
    """Seconds to wait before try `attempt + 1`, or None when it is not worth waiting here."""
    if retry_after is not None:
        if retry_after > policy.max_retry_after:
            return None
        return retry_after * random.uniform(1.0, 1.2)  # never earlier than asked
    ceiling = min(policy.max_delay, policy.base_delay * 2 ** (attempt - 1))
    return random.uniform(ceiling / 2, ceiling)


def never_connected(exc: requests.RequestException) -> bool:
    """True when the request cannot have reached the server (nothing was sent)."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, NewConnectionError)


class Transport:
    """One requests.Session per client; every HTTP attempt holds one slot of the call cap."""

    def __init__(self, *, timeout: float = 30.0, connect_timeout: float = 5.0,
                 verify: bool | str = True, limiter: Limiter | None = None,
                 retry: RetryPolicy | None = None) -> None:
        self.timeout = (connect_timeout, timeout)
        self.session = requests.Session()
        self.session.verify = verify
        self.session.headers.update({"Accept": "application/json"})
        self.limiter = limiter or NoLimit()
        self.retry = retry or RetryPolicy()

    def close(self) -> None:
        self.session.close()

    def read(self, method: str, url: str, answer: Callable[[requests.Response], T],
             **kwargs: Any) -> T:
        """A call safe to repeat: retried on transient failures, then X3Unavailable."""
        attempt, waited = 1, 0.0
        while True:
            try:
                return answer(self._send(method, url, **kwargs))
            except requests.RequestException as exc:
                error = X3Unavailable(f"X3 unreachable: {type(exc).__name__}")
            except X3Unavailable as exc:
                error = exc
            delay = backoff_delay(attempt, error.retry_after, self.retry)
            if (attempt >= self.retry.attempts or delay is None
                    or waited + delay > self.retry.max_total_wait):
                raise error
            log.info("X3 read failed (%s), try %d in %.2f s", error, attempt + 1, delay)
            time.sleep(delay)
            attempt, waited = attempt + 1, waited + delay

    def write(self, method: str, url: str, answer: Callable[[requests.Response], T],
              what: str, **kwargs: Any) -> T:
        """A create: never re-sent once it may have reached X3."""
        attempt = 1
        # requests would follow a 301/302 on a POST as a GET: an "answer" with nothing created.
        kwargs.setdefault("allow_redirects", False)
        while True:
            try:
                resp = self._send(method, url, write=True, **kwargs)
                break
            except requests.RequestException as exc:
                if not never_connected(exc):
                    if isinstance(exc, requests.Timeout):
                        raise X3OutcomeUnknown(
                            f"{what} sent, no answer within the timeout") from None
                    raise X3OutcomeUnknown(
                        f"{what} sent, connection lost before the answer") from None
                # Nothing left this host: trying again cannot create anything twice.
                delay = backoff_delay(attempt, None, self.retry)
                if attempt >= self.retry.attempts or delay is None:
                    raise X3Unavailable(f"X3 unreachable: {type(exc).__name__}") from None
                time.sleep(delay)
                attempt += 1
        if resp.status_code in (502, 504):
            # A gateway gave up on X3, which may still be working on the create.
            raise X3OutcomeUnknown(f"{what} sent, a gateway answered HTTP {resp.status_code}:"
                                   " the record may exist")
        if 300 <= resp.status_code < 400:
            raise X3OutcomeUnknown(f"{what} answered with a redirect (HTTP {resp.status_code}"
                                   f" to {resp.headers.get('Location', '?')}): check the X3 URL")
        try:
            return answer(resp)
        except (ValueError, KeyError, TypeError) as exc:
            # A success whose body we cannot read: the record may exist. Look it up, never
            # assume either way.
            raise X3OutcomeUnknown(f"{what} answered HTTP {resp.status_code} with a body that"
                                   f" cannot be read ({type(exc).__name__})") from None

    def _send(self, method: str, url: str, *, write: bool = False,
              **kwargs: Any) -> requests.Response:
        with self.limiter.slot():
            attempt = attempts.Try(method)
            try:
                resp = self.session.request(method, url, timeout=self.timeout, **kwargs)
            except requests.RequestException as exc:
                sent = write and not never_connected(exc)
                attempt.done("unknown" if sent else "error", error=type(exc).__name__)
                raise
            attempt.done("ok" if resp.status_code < 300 else "error", resp.status_code,
                         None if resp.status_code < 300 else f"HTTP {resp.status_code}")
            return resp
