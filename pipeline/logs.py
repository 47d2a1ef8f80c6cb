"""Logging: one JSON object per line for machines (plain text on a terminal), the context of the
work in hand on every line (task id, file, vendor id, invoice number), and a last line of
defence: known secret values never reach a handler."""

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

_secrets: set[str] = set()
_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("mlc_log",
                                                                                default=None)


def register_secret(value: str | None) -> None:
    """Remember a secret value so any log line holding it is masked."""
    if value and len(value) >= 4:
        _secrets.add(value)


def forget_secret(value: str | None) -> None:
    """A credential that can no longer be used (rotated refresh token, expired access token)
    needs no masking; forgetting it keeps the list scanned for every log line short."""
    _secrets.discard(value or "")


def mask(text: str) -> str:
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, "***")
    return text


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


class ContextFilter(logging.Filter):
    """Masks secrets and attaches the bound context to the record."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask(message) if _secrets else message
        if masked != message or record.args:
            record.msg, record.args = masked, None
        record.mlc = _context.get() or {}
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "at": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname, "logger": record.name, "process": record.processName,
            "message": record.getMessage(), **getattr(record, "mlc", {}),
        }
        if record.exc_info:
            line["exception"] = mask(self.formatException(record.exc_info))
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        ctx = getattr(record, "mlc", {})
        if ctx:
            text += " [" + " ".join(f"{k}={v}" for k, v in ctx.items()) + "]"
        return mask(text) if record.exc_info else text


def configure(level: str = "INFO", fmt: str | None = None) -> None:
    """fmt: json or text; by default text on a terminal, JSON otherwise (containers)."""
    fmt = fmt or os.environ.get("MLC_LOG_FORMAT") or ("text" if sys.stderr.isatty() else "json")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter(
        "%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s"))
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("paramiko.transport",):
        logging.getLogger(noisy).setLevel(logging.WARNING)
