"""OAuth2 onboarding of an X3 cloud connection: the authorisation-code grant, done once.

`mlc x3 authorize` prints the authorisation URL (client_id, scope, customer, redirect_uri and a
random `state`), listens on the loopback redirect URI for Sage's callback (`authorizationCode`,
`state` and, when the customer lives in another region, `endpoint`: as a form or JSON POST, or
as a GET query), refuses a callback whose state is not ours, exchanges the code at the token URL
and stores a complete graphql connection: refresh token encrypted in the connection's secret,
access token encrypted in x3_tokens. A regional endpoint becomes the base URL of every later call;
a token URL under the X3 URL moves to the region with it (Sage's token API is regional too).

A headless server skips the listener: `--code` takes the code the callback carried (and
`--endpoint` its regional endpoint). Nothing is stored unless the exchange succeeded.
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from ipaddress import ip_address
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import requests
from psycopg2.extensions import cursor as Cursor

from pipeline import connections
from pipeline.logs import mask, register_secret
from pipeline.x3 import token_store
from pipeline.x3.errors import X3AuthError, X3ConfigError, X3OutcomeUnknown, X3Unavailable
from pipeline.x3.transport import (
    RetryPolicy,
    Transport,
    json_or_none,
    plain_url,
    retry_after_seconds,
)

log = logging.getLogger(__name__)

DEFAULT_SCOPE = "api.graphQL"
DEFAULT_TIMEOUT = 300.0  # seconds the listener waits for the person to consent
LOOPBACK_NAMES = ("localhost",)


class AuthorizeError(X3AuthError):
    """The onboarding cannot go on; nothing was stored."""


@dataclass(frozen=True)
class Callback:
    code: str = field(repr=False)
    state: str
    endpoint: str | None = None


@dataclass(frozen=True)
class Grant:
    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_in: float = 300.0


@dataclass(frozen=True)
class Onboarding:
    """What a complete graphql (oauth) connection needs, as `connection set` stores it."""

    url: str
    folder: str
    client_id: str
    token_url: str
    redirect_uri: str
    authorize_url: str | None = None
    scope: str = DEFAULT_SCOPE
    customer: str | None = None
    ca_bundle: str | None = None
    name: str = connections.X3

    def settings(self, base_url: str, token_url: str) -> dict[str, Any]:
        s: dict[str, Any] = {"url": self.url, "folder": self.folder, "auth": "oauth",
                             "client_id": self.client_id, "token_url": token_url,
                             "redirect_uri": self.redirect_uri}
        if self.authorize_url:
            s["authorize_url"] = self.authorize_url
        if base_url != self.url:
            s["endpoint"] = base_url  # the regional API: every later call goes there
        if self.ca_bundle:
            s["ca_bundle"] = self.ca_bundle
        return s


# -- the authorisation request -------------------------------------------------------------------
def new_state() -> str:
    return secrets.token_urlsafe(24)


def authorization_url(onb: Onboarding, state: str) -> str:
    if not onb.authorize_url:
        raise AuthorizeError("an authorisation needs --authorize-url (or --code)")
    params = {"client_id": onb.client_id, "scope": onb.scope,
              "customer": onb.customer or onb.url, "redirect_uri": onb.redirect_uri,
              "state": state}
    joiner = "&" if urlsplit(onb.authorize_url).query else "?"
    return onb.authorize_url + joiner + urlencode(params)


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


def loopback_address(redirect_uri: str) -> tuple[str, int, str]:
    """(host, port, path) the listener binds: an http loopback URI with an explicit port."""
    parts = urlsplit(redirect_uri)
    host = parts.hostname or ""
    if parts.scheme != "http" or not is_loopback(host) or not parts.port:
        raise AuthorizeError(
            f"--redirect-uri {redirect_uri!r}: the listener needs http://127.0.0.1:PORT/PATH "
            "(loopback, explicit port); on a headless server use --code instead")
    return ("127.0.0.1" if host.lower() == "localhost" else host), parts.port, parts.path or "/"


# -- the loopback listener -----------------------------------------------------------------------
class _Server(HTTPServer):
    outcome: Callback | AuthorizeError | None = None
    expected_state: str = ""
    path: str = "/"


class _CallbackHandler(BaseHTTPRequestHandler):
    server: _Server
    timeout = 10  # a client that connects and says nothing does not hold the listener

    def do_GET(self) -> None:
        self._handle(parse_qs(urlsplit(self.path).query))

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(min(length, 64 * 1024)).decode("utf-8", "replace")
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if content_type == "application/json":
            try:
                body = json.loads(raw or "{}")
            except ValueError:
                body = None
            if not isinstance(body, dict):
                self._reply(400, "expected a JSON object")
                return
            self._handle({k: [str(v)] for k, v in body.items() if v is not None})
        else:
            self._handle(parse_qs(raw))

    def _handle(self, fields: dict[str, list[str]]) -> None:
        if urlsplit(self.path).path != self.server.path:
            self._reply(404, "not the callback path")
            return
        value = {k: v[-1] for k, v in fields.items() if v}
        state = value.get("state", "")
        code = value.get("authorizationCode") or value.get("code")
        if code:
            register_secret(code)
        if not code and not value.get("error"):
            self._reply(400, "expected authorizationCode and state")  # a stray request
            return
        if not hmac.compare_digest(state.encode(), self.server.expected_state.encode()):
            self.server.outcome = AuthorizeError(
                "the callback's state does not match this authorisation request (a stale or "
                "forged callback): refused, nothing stored; run `mlc x3 authorize` again")
            self._reply(400, "state mismatch: refused")
        elif value.get("error"):
            detail = value.get("error_description") or ""
            self.server.outcome = AuthorizeError(
                f"X3 did not authorise the connection ({value['error']}"
                f"{': ' + detail if detail else ''}); nothing stored")
            self._reply(200, "authorisation refused; you may close this window")
        else:
            self.server.outcome = Callback(code or "", state, value.get("endpoint") or None)
            self._reply(200, "authorised: ml-connector got the code; you may close this window")

    def _reply(self, status: int, text: str) -> None:
        data = (text + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("callback listener: " + format, *args)  # the query holds the code: masked


class CallbackListener:
    """Bound at construction (so the URL is printed only once the callback can land)."""

    def __init__(self, redirect_uri: str) -> None:
        host, port, path = loopback_address(redirect_uri)
        try:
            self._server = _Server((host, port), _CallbackHandler)
        except OSError as exc:
            raise AuthorizeError(f"cannot listen on {host}:{port} for the callback: "
                                 f"{exc.strerror or exc}") from None
        self._server.path = path
        self.redirect_uri = redirect_uri

    def __enter__(self) -> CallbackListener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._server.server_close()

    def wait(self, state: str, timeout: float) -> Callback:
        self._server.expected_state = state
        deadline = time.monotonic() + timeout
        while self._server.outcome is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AuthorizeError(
                    f"no callback on {self.redirect_uri} within {timeout:g} s: nothing stored; "
                    "run `mlc x3 authorize` again (or pass the code with --code)")
            self._server.timeout = remaining
            self._server.handle_request()
        if isinstance(self._server.outcome, AuthorizeError):
            raise self._server.outcome
        return self._server.outcome


# -- the regional endpoint and the code exchange -------------------------------------------------
def regional(url: str, token_url: str, endpoint: str | None) -> tuple[str, str]:
    """(base URL of every later call, token URL) once the callback named `endpoint`."""
    if not endpoint:
        return url, token_url
    parts = urlsplit(endpoint)
    if "@" in parts.netloc:
        raise AuthorizeError("the callback named a regional endpoint holding a user name or "
                             "password: refused, nothing stored")
    if not parts.hostname or parts.scheme not in ("https", "http") or (
            parts.scheme == "http" and not is_loopback(parts.hostname)):
        raise AuthorizeError(f"the callback named a regional endpoint that is not an https URL "
                             f"({endpoint!r}): refused, nothing stored")
    base = endpoint.rstrip("/")
    root = url.rstrip("/")
    if token_url.startswith(root + "/"):
        token_url = base + token_url[len(root):]
    return base, token_url


def exchange_code(token_url: str, client_id: str, client_secret: str, code: str,
                  redirect_uri: str, *, timeout: float = 30.0,
                  verify: bool | str = True) -> Grant:
    """`grant_type=authorization_code` at the token URL: the code is single-use, so a request
    that may have reached the endpoint is never sent again."""
    register_secret(code)
    register_secret(client_secret)
    body = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
            "client_id": client_id, "client_secret": client_secret}
    http = Transport(timeout=timeout, verify=verify, retry=RetryPolicy(attempts=2))
    try:
        return http.write("POST", token_url, _grant_answer, "code exchange", json=body)
    except X3OutcomeUnknown as exc:
        raise AuthorizeError(f"{exc} from {token_url}: the code may be spent; nothing stored, "
                             "authorise again") from None
    finally:
        http.close()


def _grant_answer(resp: requests.Response) -> Grant:
    body = json_or_none(resp)
    body = body if isinstance(body, dict) else {}
    if resp.status_code >= 500 or resp.status_code == 429:
        raise X3Unavailable(f"token endpoint unavailable (HTTP {resp.status_code})",
                            retry_after=retry_after_seconds(resp.headers.get("Retry-After")))
    error = str(body.get("error") or "")
    detail = mask(str(body.get("error_description") or ""))[:200]
    why = f"{error or f'HTTP {resp.status_code}'}{': ' + detail if detail else ''}"
    if error == "invalid_grant":
        raise AuthorizeError(f"X3 refused the authorisation code ({why}): codes are single-use "
                             "and short-lived; nothing stored, authorise again")
    if resp.status_code >= 300 or error:
        raise AuthorizeError(f"the token endpoint refused the exchange ({why}): check the "
                             "client id and secret; nothing stored")
    access, refresh = body.get("access_token"), body.get("refresh_token")
    if not isinstance(access, str) or not isinstance(refresh, str) or not access or not refresh:
        raise AuthorizeError("the token endpoint answered without an access and a refresh "
                             "token; nothing stored")
    register_secret(access)
    register_secret(refresh)
    try:
        expires_in = float(body.get("expires_in") or 300)
    except (TypeError, ValueError):
        expires_in = 300.0
    return Grant(access, refresh, expires_in)


# -- storing, and the whole flow -----------------------------------------------------------------
def store(cur: Cursor, onb: Onboarding, client_secret: str, grant: Grant, base_url: str,
          token_url: str) -> None:
    """The complete connection, its refresh token encrypted in the secret, and the access token
    shared through x3_tokens so the first call needs no refresh."""
    connections.save(cur, onb.name, "x3_graphql", onb.settings(base_url, token_url),
                     {"client_secret": client_secret, "refresh_token": grant.refresh_token})
    token_store.forget(cur, onb.name)
    token_store.seed(cur, onb.name, grant.access_token, grant.expires_in)


@dataclass(frozen=True)
class Authorized:
    base_url: str
    token_url: str
    regional: bool
    expires_in: float


def authorize(onb: Onboarding, client_secret: str, *, transaction: Callable[[], Any],
              announce: Callable[[str], None], code: str | None = None,
              endpoint: str | None = None, timeout: float = DEFAULT_TIMEOUT,
              http_timeout: float = 30.0) -> Authorized:
    """The onboarding: listen (unless `code` is given), exchange, store in one transaction."""
    register_secret(client_secret)
    for what, url in (("the X3 URL", onb.url), ("the token URL", onb.token_url),
                      ("the authorisation URL", onb.authorize_url)):
        if url:
            try:
                plain_url(url, what)
            except X3ConfigError as exc:
                raise AuthorizeError(f"{exc}; nothing stored") from None
    if code is None:
        with CallbackListener(onb.redirect_uri) as listener:
            state = new_state()
            announce(authorization_url(onb, state))
            callback = listener.wait(state, timeout)
        code, endpoint = callback.code, callback.endpoint
    base_url, token_url = regional(onb.url, onb.token_url, endpoint)
    grant = exchange_code(token_url, onb.client_id, client_secret, code, onb.redirect_uri,
                          timeout=http_timeout, verify=onb.ca_bundle or True)
    with transaction() as cur:
        store(cur, onb, client_secret, grant, base_url, token_url)
    log.info("x3 connection %s authorised (base URL %s)", onb.name, base_url)
    return Authorized(base_url, token_url, bool(endpoint), grant.expires_in)
