"""Password hashing with scrypt (memory-hard, stdlib): `scrypt$n$r$p$salt$hash`, base64."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import os

# 2**15 * 8 * 128 bytes = 32 MiB per hash: memory-hard, ~0.1 s on this machine.
N, R, P, DKLEN = 2**15, 8, 1, 32
MAXMEM = 64 * 1024 * 1024
MIN_LENGTH = 10


class WeakPassword(ValueError):
    """The password is refused before it is hashed."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def check_strength(password: str) -> None:
    if len(password) < MIN_LENGTH:
        raise WeakPassword(f"a password needs at least {MIN_LENGTH} characters")


def hash_password(password: str, *, n: int = N) -> str:
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=R, p=P, maxmem=MAXMEM,
                            dklen=DKLEN)
    return f"scrypt${n}${R}${P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n),
                             r=int(r), p=int(p), maxmem=MAXMEM, dklen=len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


@functools.cache
def dummy_hash() -> str:
    """Checked against when the user does not exist, so that the answer takes as long."""
    return hash_password("not a real password, only for timing")
