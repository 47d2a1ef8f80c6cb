"""OAuth2 for the simulator: the token endpoint (refresh-token grant, rotating refresh tokens),
bearer access tokens with a lifetime, and connected-app HS256 JWTs accepted as bearers.

The JWT check is written apart from the connector's signer on purpose: one shared bug must not
make both sides agree on a wrong token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

JWT_MAX_LIFETIME = 300


class OAuthState:
    """One OAuth client (id + secret), the refresh tokens it holds, the access tokens issued."""

    def __init__(self, client_id: str, client_secret: str, refresh_token: str, *,
                 audience: str | None = None, clock: Callable[[], float] = time.time) -> None:
        self.client_id, self._client_secret = client_id, client_secret
        self._initial_refresh = refresh_token
        self.audience = audience
        self._clock = clock
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._refresh_tokens = {self._initial_refresh}
            self._access: dict[str, float] = {}  # token -> expiry (epoch seconds)

    def authorize(self) -> str:
        """A new refresh token, as a person re-authorising at the consent screen would get."""
        token = "rt-" + secrets.token_urlsafe(24)
        with self._lock:
            self._refresh_tokens.add(token)
        return token

    def grant(self, body: Any, *, lifetime: float, rotate: bool) -> tuple[int, dict[str, Any]]:
        """Answer `POST /oauth/token`: (HTTP status, JSON body)."""
        if not isinstance(body, dict) or body.get("grant_type") != "refresh_token":
            return 400, {"error": "unsupported_grant_type",
                         "error_description": "only grant_type=refresh_token is supported"}
        if body.get("client_id") != self.client_id or not _same(
                body.get("client_secret"), self._client_secret):
            return 401, {"error": "invalid_client", "error_description": "unknown client"}
        given = body.get("refresh_token")
        now = self._clock()
        with self._lock:
            if not isinstance(given, str) or given not in self._refresh_tokens:
                return 400, {"error": "invalid_grant",
                             "error_description": "refresh token invalid, expired or used"}
            refresh = given
            if rotate:
                self._refresh_tokens.discard(given)
                refresh = "rt-" + secrets.token_urlsafe(24)
                self._refresh_tokens.add(refresh)
            access = "at-" + secrets.token_urlsafe(24)
            self._access = {t: exp for t, exp in self._access.items() if exp > now}
            self._access[access] = now + lifetime
        return 200, {"access_token": access, "refresh_token": refresh, "token_type": "Bearer",
                     "expires_in": lifetime}

    def check_bearer(self, header: str | None) -> str | None:
        """None when `Authorization: Bearer <token>` is valid now, else why not."""
        scheme, _, token = (header or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return "missing bearer token"
        now = self._clock()
        with self._lock:
            expiry = self._access.get(token)
        if expiry is not None:
            return None if expiry > now else "access token expired"
        if token.count(".") == 2:
            return self._check_jwt(token, now)
        return "unknown access token"

    def _check_jwt(self, token: str, now: float) -> str | None:
        head, body, signature = token.split(".")
        try:
            header, claims = _json_segment(head), _json_segment(body)
            given = _unb64(signature)
        except ValueError:
            return "malformed JWT"
        if header.get("alg") != "HS256":
            return "JWT must be signed with HS256"
        if claims.get("iss") != self.client_id:
            return "JWT issuer is not a known connected application"
        expected = hmac.new(self._client_secret.encode(), f"{head}.{body}".encode(),
                            hashlib.sha256).digest()
        if not hmac.compare_digest(expected, given):
            return "JWT signature does not verify"
        iat, exp = claims.get("iat"), claims.get("exp")
        if not isinstance(iat, int | float) or not isinstance(exp, int | float):
            return "JWT needs numeric iat and exp"
        if iat > now:
            return "JWT iat is in the future (clock skew)"
        if exp > iat + JWT_MAX_LIFETIME:
            return f"JWT exp must be at most iat + {JWT_MAX_LIFETIME}"
        if exp <= now:
            return "JWT expired"
        if not isinstance(claims.get("sub"), str) or not claims["sub"]:
            return "JWT sub (X3 user) missing"
        aud = claims.get("aud")
        if not isinstance(aud, str) or not aud or (self.audience and aud != self.audience):
            return "JWT audience refused"
        return None


def _same(given: Any, expected: str) -> bool:
    return isinstance(given, str) and hmac.compare_digest(given.encode(), expected.encode())


def _unb64(part: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except (ValueError, TypeError) as exc:
        raise ValueError(str(exc)) from None


def _json_segment(part: str) -> dict[str, Any]:
    value = json.loads(_unb64(part))
    if not isinstance(value, dict):
        raise ValueError("not an object")
    return value
