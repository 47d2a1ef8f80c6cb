"""Secrets at rest (MultiFernet, keys newest first), redaction by key for structured data, and
the one masking function every sink uses (logs, audit rows, stored errors, task retries).

Masking has two halves: a process-wide registry of the secret values this process holds (each
connection registers its decrypted secrets when it is loaded, token sources their tokens), and
patterns for credentials that were never registered (an `Authorization: Basic ...` header echoed
back by a proxy, a URL with a password in it)."""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, quote_plus

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

REDACTED = "***"
_SECRET_KEYS = re.compile(
    r"pass(word|phrase)?|secret|token|private[_-]?key|authorization|api[_-]?key|credential",
    re.IGNORECASE,
)


MIN_SECRET = 4  # shorter values would mask ordinary words; such a secret is weak anyway

_registered: set[str] = set()
_registry_lock = threading.Lock()
_registry_pattern: re.Pattern[str] | None = None

_BASIC = re.compile(r"(?i)\b(Basic)(\s+)([A-Za-z0-9+/_-]{4,}={0,2})")
_BEARER = re.compile(r"(?i)\b(Bearer)(\s+)([A-Za-z0-9._~+/-]+=*)")
_HEADER = re.compile(r"(?i)\b((?:proxy-)?authorization|cookie|x-api-key)(\s*[:=]\s*)"
                     r"(?!(?:Basic|Bearer)\s+\*\*\*)([^\s\"'<>&,;][^\r\n\"'<>&,;]*)")
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@?#]*@")
_QUERY = re.compile(r"(?i)([?&;](?:password|passwd|pwd|secret|client_secret|token|access_token|"
                    r"refresh_token|code|api_key|apikey)=)[^&#\s\"'<>]+")
_JSON_FIELD = re.compile(r"(?i)(\"(?:password|passwd|secret|client_secret|access_token|"
                         r"refresh_token|authorization)\"\s*:\s*\")(?:[^\"\\]|\\.)*")


def _variants(value: str) -> set[str]:
    """The forms a secret takes on the way out: as is, URL-encoded, JSON-escaped."""
    forms = {value, quote(value, safe=""), quote_plus(value), json.dumps(value)[1:-1]}
    return {f for f in forms if len(f) >= MIN_SECRET}


def _rebuild() -> None:
    global _registry_pattern
    values = sorted(_registered, key=len, reverse=True)  # the longest form wins an overlap
    _registry_pattern = re.compile("|".join(map(re.escape, values))) if values else None


def register_secret(value: str | None) -> None:
    """Remember a secret value (and its encoded forms) so every sink masks it."""
    if not value or len(value) < MIN_SECRET:
        return
    forms = _variants(value)
    with _registry_lock:
        if forms - _registered:
            _registered.update(forms)
            _rebuild()


def forget_secret(value: str | None) -> None:
    """A credential that can no longer be used (rotated refresh token, expired access token)
    needs no masking; forgetting it keeps the registry short."""
    if not value:
        return
    with _registry_lock:
        forms = _variants(value) & _registered
        if forms:
            _registered.difference_update(forms)
            _rebuild()


def registered() -> frozenset[str]:
    """The registered secret values (all their forms): for tests and diagnostics."""
    return frozenset(_registered)


def basic_credentials(username: str, password: str) -> list[str]:
    """What `Authorization: Basic` carries for this login, in the encodings a server may echo."""
    raw = f"{username}:{password}".encode()
    standard = base64.b64encode(raw).decode("ascii")
    urlsafe = base64.urlsafe_b64encode(raw).decode("ascii")
    return list(dict.fromkeys([standard, standard.rstrip("="), urlsafe, urlsafe.rstrip("=")]))


def register_login(username: str, password: str | None) -> None:
    """The password, and the base64 `user:password` of a Basic header built from it."""
    if not password:
        return
    register_secret(password)
    for encoded in basic_credentials(username, password):
        register_secret(encoded)


def _basic(match: re.Match[str]) -> str:
    value = match.group(3)
    try:
        decoded = base64.b64decode(value + "=" * (-len(value) % 4), altchars=b"-_"
                                   if "-" in value or "_" in value else None, validate=True)
    except (binascii.Error, ValueError):
        return match.group(0)
    # Only a real credential (user:password) is masked: "basic settings" stays readable.
    return f"{match.group(1)}{match.group(2)}***" if b":" in decoded else match.group(0)


def _bearer(match: re.Match[str]) -> str:
    value = match.group(3)
    # A b64token (RFC 6750); "Bearer token expired" keeps its words.
    if len(value) >= 16 or (len(value) >= 8 and re.search(r"[0-9._~+/-]", value)):
        return f"{match.group(1)}{match.group(2)}***"
    return match.group(0)


def mask(text: str) -> str:
    """Text with every registered secret and every credential-looking value replaced by ***."""
    if not text:
        return text
    pattern = _registry_pattern
    if pattern is not None:
        text = pattern.sub(REDACTED, text)
    if not text.isascii():
        return _credentials(text, None)
    # ASCII text (nearly every log line): a pattern runs only where the word it starts with
    # is present (case-insensitive matching of ASCII words has no other spellings in ASCII).
    return _credentials(text, text.lower())


def _credentials(text: str, low: str | None) -> str:
    """The credential patterns; `low` (the text lower-cased, ASCII) lets absent ones be
    skipped; None runs them all. Replacements only shorten to ***: they add no trigger."""
    if low is None or "basic" in low:
        text = _BASIC.sub(_basic, text)
    if low is None or "bearer" in low:
        text = _BEARER.sub(_bearer, text)
    if low is None or "authorization" in low or "cookie" in low or "x-api-key" in low:
        text = _HEADER.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    if low is None or "://" in low:
        text = _USERINFO.sub(lambda m: f"{m.group(1)}{REDACTED}@", text)
    if low is None or "=" in low:
        text = _QUERY.sub(lambda m: f"{m.group(1)}{REDACTED}", text)
    if low is None or '"' in low:
        text = _JSON_FIELD.sub(lambda m: f"{m.group(1)}{REDACTED}", text)
    return text


def mask_all(value: Any) -> Any:
    """A copy of a JSON-like value with every string (keys too) masked."""
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, Mapping):
        return {mask(str(k)): mask_all(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [mask_all(v) for v in value]
    return value


class MaskedError(Exception):
    """Stands in for an exception whose text held a secret (the text, masked, is kept)."""


def masked_exception(exc: BaseException) -> BaseException:
    """The exception itself when its text is clean, else a MaskedError carrying the masked text:
    what is handed to Celery's retry ends up in events, Flower and the result backend."""
    text, shown = str(exc), repr(exc)
    if mask(text) == text and mask(shown) == shown:
        return exc
    return MaskedError(f"{type(exc).__name__}: {mask(text)}")


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
