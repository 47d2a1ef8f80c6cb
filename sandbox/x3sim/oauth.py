"""OAuth2 for the simulator: the onboarding authorisation (one-time codes issued at the consent
page), the token endpoint (authorization-code and refresh-token grants, rotating refresh tokens),
bearer access tokens with a lifetime, and connected-app HS256 JWTs accepted as bearers.

Tokens are regional, as Sage's are: a token issued by a region's token endpoint (`/eu/oauth/token`)
works on that region's API only, so a client that ignores the regional endpoint it was told about
gets 401. Tokens of the home endpoint (no region) work on the home endpoint only.

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
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode, urlsplit

JWT_MAX_LIFETIME = 300
CODE_LIFETIME = 120  # seconds an authorisation code may wait for its exchange
REGIONS = ("eu", "us")  # path prefixes the simulator also serves as regional endpoints
CALLBACK_MODES = ("post", "json", "redirect")


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
            # refresh token -> the region whose token endpoint issued it (None: home endpoint)
            self._refresh_tokens: dict[str, str | None] = {self._initial_refresh: None}
            # access token -> (expiry in epoch seconds, region)
            self._access: dict[str, tuple[float, str | None]] = {}
            # authorisation code -> (redirect_uri, expiry, region); deleted when exchanged
            self._codes: dict[str, tuple[str, float, str | None]] = {}

    def authorize(self) -> str:
        """A new refresh token, as a person re-authorising at the consent screen would get."""
        token = "rt-" + secrets.token_urlsafe(24)
        with self._lock:
            self._refresh_tokens[token] = None
        return token

    def issue_code(self, redirect_uri: str, region: str | None) -> str:
        """A one-time authorisation code, as the consent page hands out when the user accepts."""
        code = "ac-" + secrets.token_urlsafe(18)
        with self._lock:
            self._codes[code] = (redirect_uri, self._clock() + CODE_LIFETIME, region)
        return code

    def known_client(self, client_id: Any) -> bool:
        return client_id == self.client_id

    def tokens(self) -> dict[str, list[str]]:
        """Every refresh and access token valid now (a test looks for leaks of them)."""
        now = self._clock()
        with self._lock:
            return {"refresh_tokens": sorted(self._refresh_tokens),
                    "access_tokens": sorted(t for t, (exp, _) in self._access.items()
                                            if exp > now)}

    def grant(self, body: Any, *, lifetime: float, rotate: bool,
              region: str | None = None) -> tuple[int, dict[str, Any]]:
        """Answer `POST [/{region}]/oauth/token`: (HTTP status, JSON body)."""
        kind = body.get("grant_type") if isinstance(body, dict) else None
        if kind not in ("refresh_token", "authorization_code"):
            return 400, {"error": "unsupported_grant_type",
                         "error_description": "grant_type must be refresh_token or "
                                              "authorization_code"}
        if body.get("client_id") != self.client_id or not _same(
                body.get("client_secret"), self._client_secret):
            return 401, {"error": "invalid_client", "error_description": "unknown client"}
        if kind == "authorization_code":
            return self._exchange(body, lifetime=lifetime, region=region)
        given = body.get("refresh_token")
        with self._lock:
            if not isinstance(given, str) or given not in self._refresh_tokens:
                return 400, {"error": "invalid_grant",
                             "error_description": "refresh token invalid, expired or used"}
            if self._refresh_tokens[given] != region:
                return 400, {"error": "invalid_grant",
                             "error_description": "refresh token of another region's endpoint"}
            refresh = given
            if rotate:
                del self._refresh_tokens[given]
                refresh = self._new_refresh(region)
            return 200, self._issue(refresh, lifetime, region)

    def _exchange(self, body: dict[str, Any], *, lifetime: float,
                  region: str | None) -> tuple[int, dict[str, Any]]:
        code = body.get("code")
        with self._lock:
            # One-time: popped whether or not the rest checks out (RFC 6749 4.1.2).
            issued = self._codes.pop(code, None) if isinstance(code, str) else None
            if issued is None or issued[1] <= self._clock():
                return 400, {"error": "invalid_grant",
                             "error_description": "authorization code invalid, expired or used"}
            redirect_uri, _, code_region = issued
            if body.get("redirect_uri") not in (None, redirect_uri):
                return 400, {"error": "invalid_grant",
                             "error_description": "redirect_uri differs from the authorisation's"}
            if code_region != region:
                return 400, {"error": "invalid_grant",
                             "error_description": "exchange the code at the regional endpoint "
                                                  "named in the callback"}
            return 200, self._issue(self._new_refresh(region), lifetime, region)

    def _new_refresh(self, region: str | None) -> str:
        token = "rt-" + secrets.token_urlsafe(24)
        self._refresh_tokens[token] = region
        return token

    def _issue(self, refresh: str, lifetime: float, region: str | None) -> dict[str, Any]:
        """An access token for `region`; the caller holds the lock."""
        now = self._clock()
        access = "at-" + secrets.token_urlsafe(24)
        self._access = {t: v for t, v in self._access.items() if v[0] > now}
        self._access[access] = (now + lifetime, region)
        return {"access_token": access, "refresh_token": refresh, "token_type": "Bearer",
                "expires_in": lifetime}

    def check_bearer(self, header: str | None, region: str | None = None) -> str | None:
        """None when `Authorization: Bearer <token>` is valid now on `region`'s API, else why
        not."""
        scheme, _, token = (header or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return "missing bearer token"
        now = self._clock()
        with self._lock:
            issued = self._access.get(token)
        if issued is not None:
            expiry, token_region = issued
            if token_region != region:
                return (f"access token of {_where(token_region)} used on {_where(region)}: "
                        "call the endpoint the authorisation named")
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


def _where(region: str | None) -> str:
    return f"region {region!r}" if region else "the home endpoint"


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


# -- the consent page ---------------------------------------------------------------------------
def consent(oauth: OAuthState, params: dict[str, str],
            base_url: str) -> tuple[int, dict[str, str], str]:
    """`GET /oauth/authorize`: the user consents at once and the application is called back.

    Answers (HTTP status, headers, plain-text page) for the browser that opened the page.
    """
    client_id, redirect_uri = params.get("client_id"), params.get("redirect_uri", "")
    if not oauth.known_client(client_id):
        return 400, {}, f"unknown client_id {client_id!r}"
    if urlsplit(redirect_uri).scheme not in ("http", "https"):
        return 400, {}, "redirect_uri must be an http(s) URL"
    if not params.get("state"):
        return 400, {}, "state is required"
    mode = params.get("sim_callback") or "post"
    if mode not in CALLBACK_MODES:
        return 400, {}, f"sim_callback must be one of {', '.join(CALLBACK_MODES)}"
    region = params.get("sim_region", "eu") or None
    if region is not None and region not in REGIONS:
        return 400, {}, f"sim_region must be one of {', '.join(REGIONS)} or empty"
    answer: dict[str, str] = {"state": params["state"]}
    if params.get("sim_consent") == "deny":
        answer.update(error="access_denied", error_description="the user refused the request")
    else:
        answer["authorizationCode"] = oauth.issue_code(redirect_uri, region)
        if region:
            answer["endpoint"] = f"{base_url}/{region}"
    if mode == "redirect":
        joiner = "&" if urlsplit(redirect_uri).query else "?"
        return 302, {"Location": redirect_uri + joiner + urlencode(answer)}, "redirecting"
    if mode == "json":
        data, content_type = json.dumps(answer).encode(), "application/json"
    else:
        data, content_type = urlencode(answer).encode(), "application/x-www-form-urlencoded"
    # redirect_uri was checked to be http(s) above
    request = urllib.request.Request(redirect_uri, data=data, method="POST",  # noqa: S310
                                     headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            status, text = response.status, response.read(2000).decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        status, text = exc.code, exc.read(2000).decode("utf-8", "replace")
    except (urllib.error.URLError, OSError) as exc:
        return 502, {}, f"the application could not be called back at {redirect_uri}: {exc}"
    outcome = "refused" if "error" in answer else "accepted"
    return 200, {}, f"consent {outcome}; the application answered HTTP {status}: {text}"
