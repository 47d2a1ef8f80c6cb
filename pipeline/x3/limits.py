"""A cap on concurrent X3 calls per X3 connection, shared by every worker process.

X3 licences a number of concurrent web-service sessions; going over makes X3 refuse calls. The
slots live in Redis as a sorted set of lease ids scored by their expiry time (Redis server time,
so workers on hosts with skewed clocks agree). A process killed while holding a slot does not leak
it: its lease simply expires. Acquire and release are single Lua scripts, so they are atomic.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol

import redis

from pipeline.x3.errors import X3Unavailable

# KEYS[1] the slot set; ARGV: lease id, cap, lease length in ms. Expired leases go first.
# TIME before writes needs effect replication: Redis >= 5 (compose runs 7).
_ACQUIRE = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]) * 2)
  return 1
end
return 0
"""


# KEYS[1] the slot set, KEYS[2] its wake list; ARGV: lease id, cap. A slot given back wakes one
# waiter at once (a token in the list; at most `cap` kept, gone after a second unclaimed).
_RELEASE = """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 then
  redis.call('RPUSH', KEYS[2], 1)
  redis.call('LTRIM', KEYS[2], -tonumber(ARGV[2]), -1)
  redis.call('PEXPIRE', KEYS[2], 1000)
end
return 1
"""
# A waiter looks again at least this often: a lease that expired (its holder died) frees a slot
# without a wake token.
WAKE_AT_LEAST_EVERY = 0.5


class Limiter(Protocol):
    def slot(self) -> AbstractContextManager[None]: ...


class NoLimit:
    """For unit tests and tools that talk to X3 alone."""

    @contextmanager
    def slot(self) -> Iterator[None]:
        yield


class RedisLimiter:
    """At most `cap` holders of `key` at once, across processes and hosts."""

    def __init__(self, client: redis.Redis, key: str, cap: int, *, lease_seconds: float,
                 wait_seconds: float = 30.0) -> None:
        if cap < 1:
            raise ValueError("cap must be at least 1")
        self._redis = client
        self.key = key
        self.cap = cap
        # A lease must outlive the longest call it guards (the HTTP timeouts bound that).
        self._lease_ms = max(int(lease_seconds * 1000), 1)
        self._wait = wait_seconds
        self.wake_key = f"{key}:wake"
        # A wait for a wake-up stays shorter than the client's socket timeout
        # (MLC_REDIS_SOCKET_TIMEOUT may be small), or every wait would end as a Redis timeout.
        socket_timeout = client.connection_pool.connection_kwargs.get("socket_timeout")
        self._longest_wait = socket_timeout * 0.8 if socket_timeout else WAKE_AT_LEAST_EVERY
        self._acquire = client.register_script(_ACQUIRE)
        self._release = client.register_script(_RELEASE)

    def __repr__(self) -> str:
        return f"RedisLimiter(key={self.key!r}, cap={self.cap})"

    def try_acquire(self) -> str | None:
        """A lease id if a slot was free now, else None."""
        lease = uuid.uuid4().hex
        try:
            ok = self._acquire(keys=[self.key], args=[lease, self.cap, self._lease_ms])
        except redis.RedisError as exc:
            # The script may have run and only its answer been lost: give the lease back
            # rather than hold a slot until it expires.
            self.release(lease)
            raise X3Unavailable(f"X3 call limiter unavailable: {type(exc).__name__}") from None
        return lease if ok == 1 else None

    def release(self, lease: str) -> None:
        try:
            self._release(keys=[self.key, self.wake_key], args=[lease, self.cap])
        except redis.RedisError:
            pass  # the lease expires on its own

    def in_use(self) -> int:
        seconds, micros = self._redis.time()
        return int(self._redis.zcount(self.key, seconds * 1000 + micros // 1000, "+inf"))

    @contextmanager
    def slot(self) -> Iterator[None]:
        deadline = time.monotonic() + self._wait
        while True:
            lease = self.try_acquire()
            if lease is not None:
                break
            left = deadline - time.monotonic()
            if left <= 0:
                raise X3Unavailable(
                    f"no free X3 call slot (cap {self.cap}) within {self._wait:.0f} s",
                    retry_after=self._wait)
            # Asleep until a holder gives a slot back (no polling gap while X3 sessions idle).
            self._sleep_until_woken(min(left, WAKE_AT_LEAST_EVERY))
        try:
            yield
        finally:
            self.release(lease)

    def _sleep_until_woken(self, seconds: float) -> None:
        try:
            self._redis.blpop([self.wake_key],
                              timeout=max(min(seconds, self._longest_wait), 0.01))
        except redis.TimeoutError:
            return  # the wait itself ran out: look again (the slot's own deadline bounds it)
        except redis.RedisError as exc:
            raise X3Unavailable(f"X3 call limiter unavailable: {type(exc).__name__}") from None
