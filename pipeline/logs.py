"""Logging: one JSON object per line for machines (plain text on a terminal), the context of the
work in hand on every line (task id, file, vendor id, invoice number), and a last line of
defence: secrets (pipeline.secrets.mask) never reach a handler. The masking happens when a
record is made, so every handler sees it (pytest's caplog, Celery's, Sentry's alike), and once
more on the formatted line, for tracebacks."""

from __future__ import annotations

import contextvars
import json
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from pipeline.secrets import forget_secret, mask, mask_all, register_login, register_secret

__all__ = ["bind", "configure", "context", "forget_secret", "install_masking", "mask",
           "register_login", "register_secret"]

_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("mlc_log",
                                                                                default=None)


@contextmanager
def bind(**fields: Any) -> Iterator[None]:
    """Add fields (task_id, file_id, vendor_id, invoice_number ...) to every line logged inside."""
    token = _context.set({**(_context.get() or {}),
                          **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


def context() -> dict[str, Any]:
    return dict(_context.get() or {})


def _mask_record(record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001  a bad format string: logging reports it later
        return
    masked = mask(message)
    if masked != message:
        record.msg, record.args = masked, None


_base_factory = logging.getLogRecordFactory()


def _masking_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
    record = _base_factory(*args, **kwargs)
    _mask_record(record)
    return record


def install_masking() -> None:
    """Mask every log record as it is made, whichever handler gets it. Idempotent."""
    global _base_factory
    current = logging.getLogRecordFactory()
    if current is not _masking_factory:
        _base_factory = current
        logging.setLogRecordFactory(_masking_factory)


class ContextFilter(logging.Filter):
    """Masks secrets and attaches the bound context to the record."""

    def filter(self, record: logging.LogRecord) -> bool:
        _mask_record(record)
        record.mlc = _context.get() or {}
        return True


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "at": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname, "logger": record.name, "process": record.processName,
            "message": record.getMessage(), **getattr(record, "mlc", {}),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        # Each value masked before it is encoded: masking the encoded line could cut a JSON
        # escape in two.
        return json.dumps(mask_all(_plain(line)), default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        ctx = getattr(record, "mlc", {})
        if ctx:
            text += " [" + " ".join(f"{k}={v}" for k, v in ctx.items()) + "]"
        return mask(text)


def configure(level: str = "INFO", fmt: str | None = None, *,
              keep_handlers: bool = False) -> None:
    """fmt: json or text; by default text on a terminal, JSON otherwise (containers). The same
    for workers and the CLI: one handler on stderr, masked."""
    install_masking()
    fmt = fmt or os.environ.get("MLC_LOG_FORMAT") or ("text" if sys.stderr.isatty() else "json")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter(
        "%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s"))
    handler.addFilter(ContextFilter())
    handler.mlc = True  # type: ignore[attr-defined]
    root = logging.getLogger()
    # keep_handlers (the CLI): others' handlers stay (a test's log capture), ours is replaced.
    kept = [h for h in root.handlers if not getattr(h, "mlc", False)] if keep_handlers else []
    root.handlers[:] = [*kept, handler]
    if keep_handlers:
        # Our handler filters; the root level is only ever lowered, for the handlers kept.
        handler.setLevel(level)
        root.setLevel(min(root.level or logging.WARNING, logging.getLevelName(level)))
    else:
        root.setLevel(level)
    for noisy in ("paramiko.transport",):
        logging.getLogger(noisy).setLevel(logging.WARNING)
