"""The overall deadline of one HTTP exchange. requests' timeouts are per socket read, so a
server that drips a byte a second (headers or body, or a TLS handshake) never trips them: a
watchdog thread shuts the exchange's sockets down when its deadline passes, whatever phase it is
in. The sessions of the X3 transport mount `WatchedAdapter`, whose pools hand their connections
to the watchdog armed in the calling thread."""

from __future__ import annotations

import socket
import threading
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool


class Overrun(Exception):
    """The answer took longer than the deadline or grew past the cap; `sent` when the request
    may have reached the server."""

    def __init__(self, kind: str, sent: bool = True) -> None:
        super().__init__(kind)
        self.kind, self.sent = kind, sent


_watched = threading.local()


class Watchdog:
    """Shuts down the sockets of one HTTP exchange when its deadline passes. The connections
    are those the pool hands out while it is armed (in this thread), reused ones included."""

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._done = threading.Event()
        self._conns: list[Any] = []
        self.fired = False

    def __enter__(self) -> Watchdog:
        _watched.current = self
        threading.Thread(target=self._watch, name="x3-deadline", daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        _watched.current = None

    def attach(self, conn: Any) -> None:
        self._conns.append(conn)

    def _watch(self) -> None:
        if self._done.wait(self._seconds):
            return
        self.fired = True
        # Again until the exchange gives up: a connection still connecting has no socket yet.
        while not self._done.is_set():
            for conn in list(self._conns):
                sock = getattr(conn, "sock", None)
                if sock is not None:
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
            self._done.wait(0.05)


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
