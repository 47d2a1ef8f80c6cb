"""Progress on a terminal: one line on stderr, rewritten in place ("file 1/2 ...: invoice
3/10"), cleared at the end. Silent when stderr is not a terminal (logs, cron, pipes), so
scripts and log files see only the final summary on stdout."""

from __future__ import annotations

import os
import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, label: str, *, stream: TextIO | None = None,
                 enabled: bool | None = None, every: float = 0.1) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        if enabled is None:
            enabled = self.stream.isatty() and os.environ.get("TERM") != "dumb"
        self.enabled = enabled
        self._every = every
        self._last = 0.0
        self._shown = False

    def update(self, text: str, *, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < self._every:
            return
        self._last = now
        width = _columns() - 1
        line = f"{self.label}: {text}"
        if len(line) > width:
            line = line[: width - 1] + "…"
        self.stream.write("\r\033[K" + line)
        self.stream.flush()
        self._shown = True

    def count(self, done: int, total: int, what: str = "") -> None:
        """`done of total` (the last one always shown, whatever the throttle)."""
        self.update(f"{done}/{total}{' ' + what if what else ''}", force=done >= total)

    def close(self) -> None:
        if self.enabled and self._shown:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self._shown = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _columns() -> int:
    import shutil

    return shutil.get_terminal_size((80, 24)).columns
