"""Sessions, CSRF tokens, roles and response headers.

A session is Flask's signed cookie (HttpOnly, SameSite=Strict, Secure on https) holding the
user id, the password generation it was issued under, a CSRF token and when it was last used.
Every request re-reads the user: a disabled user or a changed password ends the session.
"""

from __future__ import annotations

import functools
import hmac
import secrets
import time
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, abort, g, redirect, request, session, url_for
from flask.sessions import SecureCookieSessionInterface
from werkzeug.wrappers import Response

from console import users
from pipeline import db

F = TypeVar("F", bound=Callable[..., Any])
PUBLIC_ENDPOINTS = {"auth.login", "static", "health", "favicon"}

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


class SessionInterface(SecureCookieSessionInterface):
    """Secure cookies whenever the request came over https (ProxyFix reads the proxy's
    X-Forwarded-Proto when MLC_CONSOLE_PROXIES is set), or always with MLC_CONSOLE_HTTPS=1."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(app.config["SESSION_COOKIE_SECURE"] or request.is_secure)


def csrf_token() -> str:
    token = session.get("csrf")
    if not token:
        token = session["csrf"] = secrets.token_urlsafe(32)
    return token


def _check_csrf() -> None:
    sent = request.form.get("csrf_token", "")
    expected = session.get("csrf", "")
    if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        abort(400, "the form's security token is missing or stale: reload the page and retry")


def start_session(user: users.User) -> None:
    session.clear()
    session.permanent = False
    session.update(uid=user.id, gen=user.generation, seen=int(time.time()),
                   csrf=secrets.token_urlsafe(32))


def before_request() -> Response | None:
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        _check_csrf()
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    g.user = None
    uid, gen, seen = session.get("uid"), session.get("gen"), session.get("seen", 0)
    idle = time.time() - seen > _idle_seconds()
    if uid is not None and not idle:
        with db.transaction() as cur:
            g.user = users.current(cur, uid, gen)
    if g.user is None:
        # Keep the CSRF token: a login form open in another tab (or the browser's own
        # favicon request) must not make that form stale.
        for key in ("uid", "gen", "seen"):
            session.pop(key, None)
        target = request.full_path if request.method == "GET" else None
        return redirect(url_for("auth.login", next=target, expired=1 if uid else None))
    session["seen"] = int(time.time())
    return None


def _idle_seconds() -> float:
    from flask import current_app

    return float(current_app.config["IDLE_SECONDS"])


def require(role: str) -> Callable[[F], F]:
    """The view answers 403 to a user below `role` (viewer < operator < admin)."""

    def wrap(view: F) -> F:
        @functools.wraps(view)
        def inner(*args: Any, **kwargs: Any) -> Any:
            if g.get("user") is None or not g.user.may(role):
                abort(403)
            return view(*args, **kwargs)
        return inner  # type: ignore[return-value]
    return wrap


def headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cross-Origin-Opener-Policy"] = "same-origin"
    response.headers["Permissions-Policy"] = "camera=(), microphone=(), geolocation=()"
    if request.endpoint != "static":
        response.headers["Cache-Control"] = "no-store"
    if request.is_secure:
        response.headers["Strict-Transport-Security"] = "max-age=31536000"
    return response
