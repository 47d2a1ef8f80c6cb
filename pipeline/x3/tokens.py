"""Bearer tokens for the X3 GraphQL API: OAuth2 refresh-token flow (cloud) and connected-app
JWTs (on-premise xtrem). See the contract, section 2.

OAuth2: access tokens live minutes, so every worker process shares the current one through a
TokenStore (Postgres in production: token_store.py). A refresh happens with the store's lock
held, so one connection refreshes once however many processes notice the expiry at the same
moment, and the rotated refresh token is committed before the new access token is handed out.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import requests

from pipeline.secrets import forget_secret, register_secret
from pipeline.x3.errors import X3AuthError, X3OutcomeUnknown, X3Unavailable
from pipeline.x3.transport import (
    DEFAULT_MAX_RESPONSE_MB,
    RetryPolicy,
    Transport,
    Unreadable,
    json_object,
    plain_url,
    retry_after_seconds,
    status_text,
)

log = logging.getLogger(__name__)

JWT_LIFETIME = 300  # the contract: exp = iat + 300
JWT_BACKDATE = 5  # iat a few seconds in the past: a server with a slower clock refuses "future"
DEFAULT_MARGIN = 60.0  # refresh this long before expiry ...
MARGIN_SHARE = 0.2  # ... but never more than this share of a (short) token lifetime


class TokenSource(Protocol):
    def token(self) -> str:
        """A bearer token valid for a while yet."""
        ...

    def renew(self, refused: str) -> str:
        """X3 answered 401 to `refused`: a token that is not it (refreshing if need be)."""
        ...


def margin_for(lifetime: float, margin: float = DEFAULT_MARGIN) -> float:
    return min(margin, lifetime * MARGIN_SHARE)


def fingerprint(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class _Masked:
    """Bearer tokens masked in logs while they can still be used, forgotten once expired: a
    long-lived worker sees hundreds a day, and the mask list is scanned for every log line."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._live: list[tuple[str, float]] = []

    def add(self, token: str, expires_at: float) -> None:
        register_secret(token)
        now, keep = self._clock(), []
        for old, old_expiry in self._live:
            if old_expiry < now and old != token:
                forget_secret(old)
            elif old != token:
                keep.append((old, old_expiry))
        self._live = keep + [(token, expires_at)]


# -- connected application: HS256 JWT ----------------------------------------------------------
def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def sign_hs256(claims: dict[str, Any], secret: str) -> str:
    """A compact HS256 JWT (RFC 7519); small enough that PyJWT is not worth a dependency."""
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    payload = _b64url(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{header}.{payload}".encode("ascii")
    signature = hmac.new(secret.encode(), signing_input, hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64url(signature)}"


class ConnectedAppTokens:
    """Signs its own short-lived JWTs: nothing to share between processes, nothing to refresh
    remotely; a 401 only makes it sign afresh."""

    def __init__(self, client_id: str, client_secret: str, x3_user: str, audience: str, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.client_id, self.x3_user, self.audience = client_id, x3_user, audience
        self._secret = client_secret
        self._clock = clock
        self._lock = threading.Lock()
        self._current: tuple[str, float] | None = None
        self._masked = _Masked(clock)
        register_secret(client_secret)

    def __repr__(self) -> str:
        return (f"ConnectedAppTokens(client_id={self.client_id!r}, x3_user={self.x3_user!r}, "
                f"audience={self.audience!r})")

    def token(self) -> str:
        with self._lock:
            now = self._clock()
            if self._current and self._current[1] - margin_for(JWT_LIFETIME) > now:
                return self._current[0]
            return self._sign(now)

    def renew(self, refused: str) -> str:
        with self._lock:
            return self._sign(self._clock())

    def fresh(self) -> str:
        """A token made now (`mlc x3 check`): signed afresh."""
        return self.renew("")

    def _sign(self, now: float) -> str:
        iat = int(now) - JWT_BACKDATE
        claims = {"iss": self.client_id, "sub": self.x3_user, "aud": self.audience,
                  "iat": iat, "exp": iat + JWT_LIFETIME}
        token = sign_hs256(claims, self._secret)
        self._masked.add(token, float(iat + JWT_LIFETIME))
        self._current = (token, float(iat + JWT_LIFETIME))
        return token


# -- OAuth2 refresh-token flow -----------------------------------------------------------------
@dataclass(frozen=True)
class SharedToken:
    access_token: str
    remaining: float  # seconds of validity left, by the store's clock
    lifetime: float

    def usable(self, margin: float = DEFAULT_MARGIN) -> bool:
        return self.remaining > margin_for(self.lifetime, margin)


class LockedTokens(Protocol):
    """The store while this process holds the connection's refresh lock."""

    def current(self) -> SharedToken | None: ...
    def refresh_token(self) -> str: ...
    def is_refused(self, refresh_token: str) -> bool: ...
    def mark_refused(self, refresh_token: str) -> None: ...
    def save(self, access_token: str, expires_in: float, refresh_token: str) -> None: ...


class TokenStore(Protocol):
    def current(self) -> SharedToken | None:
        """The shared access token, read without waiting for the lock."""
        ...

    def locked(self) -> AbstractContextManager[LockedTokens]:
        """Hold the refresh lock; what is saved inside is durable once the block exits."""
        ...


class _Refused(Exception):
    pass


class RefreshTokens:
    """Access tokens from `POST {token_url}` with the stored (rotating) refresh token."""

    def __init__(self, store: TokenStore, token_url: str, client_id: str, client_secret: str,
                 *, margin: float = DEFAULT_MARGIN, timeout: float = 30.0,
                 clock: Callable[[], float] = time.monotonic, verify: bool | str = True,
                 deadline: float | None = None,
                 max_response_mb: float = DEFAULT_MAX_RESPONSE_MB) -> None:
        self.store, self.client_id = store, client_id
        self.token_url = plain_url(token_url, "the token URL")
        self._secret = client_secret
        self._margin = margin
        self._clock = clock
        self._lock = threading.Lock()  # threads of one process queue here, processes on the store
        self._cached: tuple[str, float, float] | None = None  # token, local expiry, lifetime
        self._masked = _Masked(clock)
        # A token endpoint that cannot answer is reported at once: a sleeping retry here would
        # hold the refresh lock every other worker is waiting on.
        # It verifies TLS as the X3 calls do (the connection's CA bundle), with the same bounds.
        self._http = Transport(timeout=timeout, retry=RetryPolicy(attempts=2), verify=verify,
                               deadline=deadline, max_response_mb=max_response_mb)
        register_secret(client_secret)

    def __repr__(self) -> str:
        return f"RefreshTokens(token_url={self.token_url!r}, client_id={self.client_id!r})"

    def token(self) -> str:
        with self._lock:
            now = self._clock()
            if self._cached and self._cached[1] - margin_for(self._cached[2], self._margin) > now:
                return self._cached[0]
            shared = self.store.current()
            if shared and shared.usable(self._margin):
                return self._remember(shared.access_token, shared.remaining, shared.lifetime)
            return self._refresh(refused=None)

    def renew(self, refused: str) -> str:
        with self._lock:
            self._cached = None
            return self._refresh(refused=refused)

    def fresh(self) -> str:
        """A token obtained now from the token endpoint, not the shared one (`mlc x3 check`
        proves the stored refresh token and the endpoint work)."""
        with self._lock:
            self._cached = None
            shared = self.store.current()
            return self._refresh(refused=shared.access_token if shared else None)

    def _remember(self, token: str, remaining: float, lifetime: float) -> str:
        self._cached = (token, self._clock() + remaining, lifetime)
        self._masked.add(token, self._cached[1])
        return token

    def _refresh(self, refused: str | None) -> str:
        with self.store.locked() as locked:
            # Someone may have refreshed while this process waited for the lock.
            shared = locked.current()
            if shared and shared.access_token != refused and shared.usable(self._margin):
                return self._remember(shared.access_token, shared.remaining, shared.lifetime)
            refresh_token = locked.refresh_token()
            if locked.is_refused(refresh_token):
                rejected = True
            else:
                try:
                    answer = self._post(refresh_token)
                except _Refused:
                    locked.mark_refused(refresh_token)  # committed: the others fail fast too
                    rejected = True
                else:
                    rejected = False
                    access, expires_in = answer["access_token"], answer["expires_in"]
                    rotated = answer.get("refresh_token") or refresh_token
                    # Stored (committed when the block exits) before the access token is used.
                    locked.save(access, expires_in, rotated)
        if rejected:
            raise X3AuthError(
                "X3 refused the stored refresh token: a person must re-authorise the connection "
                "and store the new refresh token (`mlc connection set x3 --transport graphql "
                "... --client-secret-stdin --refresh-token-stdin`)")
        if rotated != refresh_token:
            forget_secret(refresh_token)  # committed away and refused by X3 from now on
        log.info("X3 access token refreshed (valid %.0f s)", expires_in)
        return self._remember(access, expires_in, expires_in)

    def _post(self, refresh_token: str) -> dict[str, Any]:
        body = {"grant_type": "refresh_token", "refresh_token": refresh_token,
                "client_id": self.client_id, "client_secret": self._secret}
        try:
            return self._http.write("POST", self.token_url, _token_answer, "token refresh",
                                    json=body)
        except X3OutcomeUnknown as exc:
            # If the endpoint did rotate, the next try is refused and asks for re-authorisation:
            # nothing better exists once the new refresh token is lost in transit.
            raise X3Unavailable(f"token endpoint gave no usable answer to the refresh "
                                f"({exc.reason})") from None


def _token_answer(resp: requests.Response) -> dict[str, Any]:
    code = resp.status_code
    try:
        body: dict[str, Any] = json_object(resp)
    except Unreadable as exc:
        if code < 300:
            # A proxy's page, a truncated answer: the refresh may or may not have rotated.
            raise X3Unavailable(f"token endpoint answered HTTP {status_text(code)} with "
                                f"{exc.shown}, not a token") from None
        body = {}
    if code >= 500 or code == 429:
        raise X3Unavailable(f"token endpoint unavailable (HTTP {status_text(code)})",
                            retry_after=retry_after_seconds(resp.headers.get("Retry-After")))
    error = body.get("error") if isinstance(body.get("error"), str) else ""
    if code in (400, 401) and error == "invalid_grant":
        raise _Refused
    access = body.get("access_token")
    if code >= 300 or not isinstance(access, str) or not access:
        # Wrong client id/secret or a malformed answer: a person must fix the connection.
        # The OAuth error code only: the endpoint's free text may echo what it was sent.
        detail = (error if re.fullmatch(r"[a-z_]{1,40}", error) else "") or \
            f"HTTP {status_text(code)}"
        raise X3AuthError(f"token endpoint refused the client ({detail}): check the client id "
                          "and secret of the x3 connection")
    register_secret(access)
    refresh = body.get("refresh_token")
    if refresh is not None and (not isinstance(refresh, str) or not refresh):
        raise X3AuthError("token endpoint answered a refresh token that is not a string: "
                          "check the token URL of the x3 connection")
    register_secret(refresh)
    try:
        expires_in = float(body.get("expires_in") or 300)
    except (TypeError, ValueError):
        expires_in = 300.0
    # A lifetime out of reason (negative, NaN, centuries) is read as the contract's 5 minutes.
    body["expires_in"] = expires_in if 0 < expires_in <= 86400 * 31 else 300.0
    return body


# -- in-memory store (tests, one-process tools) ------------------------------------------------
class MemoryTokenStore:
    """A TokenStore for one process; the Postgres one shares across processes."""

    def __init__(self, refresh_token: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self.refresh_token = refresh_token
        self.access: tuple[str, float, float] | None = None  # token, expiry, lifetime
        self.refused: set[str] = set()
        self.saves: list[tuple[str, str]] = []  # (access, refresh) in save order

    def current(self) -> SharedToken | None:
        if self.access is None:
            return None
        token, expires, lifetime = self.access
        return SharedToken(token, expires - self._clock(), lifetime)

    @contextmanager
    def locked(self) -> Iterator[LockedTokens]:
        with self._lock:
            yield _MemoryLocked(self)


class _MemoryLocked:
    def __init__(self, store: MemoryTokenStore) -> None:
        self._store = store

    def current(self) -> SharedToken | None:
        return self._store.current()

    def refresh_token(self) -> str:
        return self._store.refresh_token

    def is_refused(self, refresh_token: str) -> bool:
        return fingerprint(refresh_token) in self._store.refused

    def mark_refused(self, refresh_token: str) -> None:
        self._store.refused.add(fingerprint(refresh_token))

    def save(self, access_token: str, expires_in: float, refresh_token: str) -> None:
        s = self._store
        s.refresh_token = refresh_token
        s.access = (access_token, s._clock() + expires_in, expires_in)
        s.saves.append((access_token, refresh_token))
