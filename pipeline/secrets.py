"""Secrets at rest (MultiFernet, keys newest first) and redaction for logs and audit rows."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

REDACTED = "***"
_SECRET_KEYS = re.compile(
    r"pass(word|phrase)?|secret|token|private[_-]?key|authorization|api[_-]?key|credential",
    re.IGNORECASE,
)


class SecretError(Exception):
    """A stored secret could not be decrypted (wrong or rotated-away key)."""


class Vault:
    """Encrypts with the newest key; decrypts with any key still listed."""

    def __init__(self, keys: Iterable[str]) -> None:
        self._fernet = MultiFernet([Fernet(k) for k in keys])

    def __repr__(self) -> str:
        return "Vault(<keys hidden>)"

    def encrypt(self, secret: Mapping[str, Any]) -> bytes:
        return self._fernet.encrypt(json.dumps(dict(secret), sort_keys=True).encode())

    def decrypt(self, token: bytes) -> dict[str, Any]:
        try:
            return json.loads(self._fernet.decrypt(bytes(token)))
        except InvalidToken:
            raise SecretError(
                "a stored secret cannot be decrypted with MLC_SECRET_KEYS "
                "(was a key removed before `mlc secrets rotate`?)"
            ) from None

    def rotate(self, token: bytes) -> bytes:
        return self._fernet.rotate(bytes(token))


def redact(value: Any) -> Any:
    """A copy of value with every secret-looking key's value replaced by ***."""
    if isinstance(value, Mapping):
        return {
            k: (REDACTED if _SECRET_KEYS.search(str(k)) and v not in (None, "") else redact(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


class Secret(str):
    """A str that never shows itself in repr/format-with-!r, for values passed around in memory."""

    def __repr__(self) -> str:
        return "Secret('***')"
