"""What goes wrong, and when: the fault settings `/_sim/faults` holds, the dice that apply them,
and the counters of requests, calls in flight and faults served.

Every API request (api1 or GraphQL) runs inside `Faults.request()`, which hands it a
`RequestTicket`; a create asks `wait_before_commit` before it commits and `should_drop` after.
"""

from __future__ import annotations

import copy
import random
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

FAULT_DEFAULTS: dict[str, Any] = {
    "latency_ms": 0,
    "error_rate_500": 0.0,
    "error_rate_503": 0.0,
    "error_rate_429": 0.0,
    "retry_after": 1,
    "drop_after_commit_rate": 0.0,
    # A share of creates (invoices and suppliers) commits only after slow_commit_ms: X3 goes
    # on working on a request whose client gave up, so a look-up made meanwhile finds nothing.
    "slow_commit_rate": 0.0,
    "slow_commit_ms": 0,
    "max_concurrency": 0,  # > 0: more concurrent API calls than this answer 503 (licence cap)
    "token_lifetime": 300,  # seconds an OAuth access token lives
    "rotate_refresh_tokens": True,  # a used refresh token is refused afterwards
}
# One-shot settings, consumed one request or commit at a time; reset() empties them.
_QUEUED_DEFAULTS: dict[str, Any] = {"next_errors": [], "drop_next_commits": 0,
                                    "slow_next_commits": 0}
FAULT_STATUSES = (500, 503, 429)


@dataclass(frozen=True)
class RequestTicket:
    """What `begin_request` decided: a fault to answer with, if any."""

    fault: int | None  # HTTP status to answer instead of serving the request
    latency: float  # seconds to wait first
    retry_after: int
    counted: bool  # holds an in-flight slot until end_request
    started: float = 0.0  # time.monotonic() when the slot was taken


class Faults:
    """Fault settings and request counters, safe across threads (they share the state's lock,
    so a snapshot of data and counters is consistent)."""

    def __init__(self, lock: threading.RLock, rng_seed: int | None = None) -> None:
        self._lock = lock
        self._random = random.Random(rng_seed)
        self._in_flight = 0
        self.reset()

    def reset(self) -> None:
        """No faults, zeroed counters; requests being served keep their in-flight slot so
        end_request stays balanced."""
        with self._lock:
            self._settings: dict[str, Any] = {**FAULT_DEFAULTS, **copy.deepcopy(_QUEUED_DEFAULTS)}
            self._requests = 0
            self._max_in_flight = 0
            self._busy_seconds = 0.0  # sum over counted requests of the time a slot was held
            self._served: dict[str, int] = {}  # fault kind -> times served

    def settings(self) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._settings)

    def update(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Merge `changes` into the settings; ValueError names a bad key or value."""
        checked = {name: check_fault(name, value) for name, value in changes.items()}
        with self._lock:
            self._settings.update(checked)
            return copy.deepcopy(self._settings)

    def token_settings(self) -> tuple[float, bool]:
        """(token_lifetime, rotate_refresh_tokens) for the OAuth token endpoint."""
        with self._lock:
            return self._settings["token_lifetime"], self._settings["rotate_refresh_tokens"]

    def counters(self) -> dict[str, Any]:
        """requests, faults (by kind) and max_in_flight, as /_sim/state reports them."""
        with self._lock:
            return {"requests": self._requests, "faults": dict(self._served),
                    "max_in_flight": self._max_in_flight,
                    "busy_seconds": round(self._busy_seconds, 3)}

    def begin_request(self) -> RequestTicket:
        """Count an API request (api1 or GraphQL) and decide whether it is faulted."""
        with self._lock:
            settings = self._settings
            self._requests += 1
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
            latency = settings["latency_ms"] / 1000
            retry_after = settings["retry_after"]
            limit = settings["max_concurrency"]
            if limit and self._in_flight > limit:
                self._in_flight -= 1  # a refused call must not hold a session slot
                self._count("busy")
                return RequestTicket(503, latency, retry_after, counted=False)
            fault = self._pick_fault()
            return RequestTicket(fault, latency, retry_after, counted=True,
                                 started=time.monotonic())

    def _pick_fault(self) -> int | None:
        queued = self._settings["next_errors"]
        if queued:
            fault = queued.pop(0)
        else:
            roll, fault, threshold = self._random.random(), None, 0.0
            for status in FAULT_STATUSES:
                threshold += self._settings[f"error_rate_{status}"]
                if roll < threshold:
                    fault = status
                    break
        if fault is not None:
            self._count(str(fault))
        return fault

    @contextmanager
    def request(self) -> Iterator[RequestTicket]:
        """One API request: counted, held back by the latency fault, its in-flight slot given
        back on every path. The ticket says which fault, if any, to answer with."""
        ticket = self.begin_request()
        try:
            if ticket.latency:
                time.sleep(ticket.latency)
            yield ticket
        finally:
            self.end_request(ticket)

    def end_request(self, ticket: RequestTicket) -> None:
        if ticket.counted:
            held = time.monotonic() - ticket.started
            with self._lock:
                self._in_flight -= 1
                self._busy_seconds += held

    def wait_before_commit(self) -> float:
        """Before a create commits: sleep slow_commit_ms for a share of creates (or the next
        slow_next_commits), outside the lock. Returns the seconds slept."""
        with self._lock:
            settings = self._settings
            if settings["slow_next_commits"] > 0:
                settings["slow_next_commits"] -= 1
                slow = True
            else:
                slow = self._random.random() < settings["slow_commit_rate"]
            delay = settings["slow_commit_ms"] / 1000 if slow else 0.0
            if delay:
                self._count("slow_commit")
        if delay:
            time.sleep(delay)
        return delay

    def should_drop(self) -> bool:
        """After a commit: hang up instead of answering?"""
        with self._lock:
            if self._settings["drop_next_commits"] > 0:
                self._settings["drop_next_commits"] -= 1
                drop = True
            else:
                drop = self._random.random() < self._settings["drop_after_commit_rate"]
            if drop:
                self._count("drop")
            return drop

    def _count(self, kind: str) -> None:
        self._served[kind] = self._served.get(kind, 0) + 1


def check_fault(name: str, value: Any) -> Any:
    """The validated value for one fault setting."""
    if name == "rotate_refresh_tokens":
        if not isinstance(value, bool):
            raise ValueError(f"fault {name}: must be true or false, got {value!r}")
        return value
    if isinstance(value, bool):
        raise ValueError(f"fault {name}: {value!r} is not a number")
    if name in ("error_rate_500", "error_rate_503", "error_rate_429", "drop_after_commit_rate",
                "slow_commit_rate"):
        if not isinstance(value, int | float) or not 0 <= value <= 1:
            raise ValueError(f"fault {name}: rate must be between 0 and 1, got {value!r}")
        return float(value)
    if name in ("latency_ms", "retry_after", "max_concurrency", "drop_next_commits",
                "slow_commit_ms", "slow_next_commits"):
        if not isinstance(value, int) or value < 0:
            raise ValueError(f"fault {name}: must be a non-negative integer, got {value!r}")
        return value
    if name == "token_lifetime":
        if not isinstance(value, int | float) or value <= 0:
            raise ValueError(f"fault {name}: must be a positive number of seconds, got {value!r}")
        return value
    if name == "next_errors":
        if not isinstance(value, list) or any(v not in FAULT_STATUSES for v in value):
            raise ValueError(f"fault next_errors: must be a list of {list(FAULT_STATUSES)}")
        return list(value)
    raise ValueError(f"unknown fault {name!r}")
