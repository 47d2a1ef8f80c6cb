"""The overall deadline of one HTTP exchange. requests' timeouts are per socket read, so a
server that drips a byte a second (headers or body, or a TLS handshake) never trips them: a
watchdog shuts the exchange's sockets down when its deadline passes, whatever phase it is
in. The sessions of the X3 transport mount `WatchedAdapter`, whose pools hand their connections
to the watchdog armed in the calling thread. One keeper thread per process watches them all."""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import socket
import threading
import time
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool


class Overrun(Exception):
    """The answer took longer than the deadline or grew past the cap; `sent` when the request
    may have reached the server."""

    def __init__(self, kind: str, sent: bool = True) -> None:
        super().__init__(kind)
        self.kind, self.sent = kind, sent


log = logging.getLogger(__name__)
_watched = threading.local()
RESHUT_EVERY = 0.05  # a fired exchange's sockets are shut again until it gives up


class Watchdog:
    """Shuts down the sockets of one HTTP exchange when its deadline passes. The connections
    are those the pool hands out while it is armed (in this thread), reused ones included.
    One keeper thread per process watches every armed exchange (a thread per exchange cost a
    thread start and a wake-up on every X3 call)."""

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self.deadline = 0.0
        self._conns: list[Any] = []
        self.fired = False
        self.done = False

    def __enter__(self) -> Watchdog:
        _watched.current = self
        self.deadline = time.monotonic() + self._seconds
        _keeper.arm(self)
        return self

    def __exit__(self, *exc: object) -> None:
        _watched.current = None
        _keeper.disarm(self)

    def attach(self, conn: Any) -> None:
        self._conns.append(conn)

    def shut(self) -> None:
        """The deadline passed: shut every socket of the exchange down (it then fails)."""
        self.fired = True
        for conn in list(self._conns):
            sock = getattr(conn, "sock", None)
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


class _Keeper:
    """The one thread of a process that fires the deadlines of armed watchdogs, earliest
    first. Started on first use in each process (a forked child has no threads)."""

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Watchdog]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def arm(self, dog: Watchdog) -> None:
        with self._cond:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="x3-deadlines",
                                                daemon=True)
                self._thread.start()
            heapq.heappush(self._heap, (dog.deadline, next(self._order), dog))
            if self._heap[0][2] is dog:
                self._cond.notify()  # an earlier deadline than the one the keeper waits for

    def disarm(self, dog: Watchdog) -> None:
        # Under the keeper's lock: once this returns, the keeper never touches the exchange's
        # sockets (they go back to the pool), and `fired` says whether it did before.
        with self._cond:
            dog.done = True
            dog._conns.clear()

    def _run(self) -> None:
        with self._cond:
            while True:
                try:
                    self._turn()
                except Exception:  # noqa: BLE001 - a keeper that died would fire no deadline
                    log.exception("X3 deadline keeper: unexpected error; going on")
                    self._cond.wait(RESHUT_EVERY)

    def _turn(self) -> None:
        """One wait and what is due after it (called with the lock held)."""
        cond, heap = self._cond, self._heap
        while heap and heap[0][2].done:
            heapq.heappop(heap)
        if not heap:
            cond.wait()
            return
        deadline, _, dog = heap[0]
        left = deadline - time.monotonic()
        if left > 0:
            cond.wait(left)
            return
        heapq.heappop(heap)
        dog.shut()
        # Again until the exchange gives up: a connection still connecting has no socket yet.
        heapq.heappush(heap, (time.monotonic() + RESHUT_EVERY, next(self._order), dog))


_keeper = _Keeper()


def _watch_conn(conn: Any) -> Any:
    watchdog = getattr(_watched, "current", None)
    if watchdog is not None:
        watchdog.attach(conn)
    return conn


class _WatchedHTTPPool(HTTPConnectionPool):
    def _get_conn(self, timeout: float | None = None) -> Any:
        return _watch_conn(super()._get_conn(timeout))


class _WatchedHTTPSPool(HTTPSConnectionPool):
    def _get_conn(self, timeout: float | None = None) -> Any:
        return _watch_conn(super()._get_conn(timeout))


_WATCHED = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


class WatchedAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _WATCHED

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **kwargs)
        if hasattr(manager, "pool_classes_by_scheme"):
            manager.pool_classes_by_scheme = _WATCHED
        return manager
