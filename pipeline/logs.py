"""Logging with a last line of defence: known secret values never reach a handler."""

from __future__ import annotations

import logging
import sys

_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Remember a secret value so any log line holding it is masked."""
    if value and len(value) >= 4:
        _secrets.add(value)


def forget_secret(value: str | None) -> None:
    """A credential that can no longer be used (rotated refresh token, expired access token)
    needs no masking; forgetting it keeps the list scanned for every log line short."""
    _secrets.discard(value or "")


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if _secrets:
            message = record.getMessage()
            masked = message
            for secret in _secrets:
                masked = masked.replace(secret, "***")
            if masked != message:
                record.msg, record.args = masked, None
        return True


def configure(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(
        "%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("paramiko.transport",):
        logging.getLogger(noisy).setLevel(logging.WARNING)
