"""The console's Flask app factory: configuration, security hooks, blueprints, error pages."""

from __future__ import annotations

import hashlib
import os
from typing import Any

from flask import Flask, g, render_template
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from console import security


def _secret_key() -> bytes:
    """MLC_CONSOLE_SECRET, or a key derived from the newest MLC_SECRET_KEYS key (rotating that
    key logs everyone out, nothing else)."""
    own = os.environ.get("MLC_CONSOLE_SECRET")
    if own:
        return own.encode()
    from pipeline.config import settings

    newest = settings().secret_keys[0]
    return hashlib.sha256(b"mlc-console-session\x00" + newest.encode()).digest()


def create_app(overrides: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=_secret_key(),
        SESSION_COOKIE_NAME="mlc_console",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_SECURE=os.environ.get("MLC_CONSOLE_HTTPS") == "1",
        IDLE_SECONDS=float(os.environ.get("MLC_CONSOLE_IDLE_MINUTES", "30")) * 60,
        MAX_CONTENT_LENGTH=2 * 1024 * 1024,  # mapping uploads
        PAGE_SIZE=50,
    )
    app.config.update(overrides or {})
    app.session_interface = security.SessionInterface()
    hops = int(os.environ.get("MLC_CONSOLE_PROXIES") or 0)
    if hops > 0:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)  # type: ignore[method-assign]
    app.before_request(security.before_request)
    app.after_request(security.headers)
    app.jinja_env.globals.update(csrf_token=security.csrf_token)
    # ISO times from ops.status, shown to the second.
    app.jinja_env.filters["when"] = lambda iso: iso[:19].replace("T", " ") if iso else ""

    from console.views import register

    register(app)

    @app.context_processor
    def _user() -> dict[str, Any]:
        return {"user": g.get("user")}

    @app.errorhandler(HTTPException)
    def _error(exc: HTTPException) -> tuple[str, int]:
        return render_template("error.html", code=exc.code, name=exc.name,
                               description=exc.description), exc.code or 500

    @app.get("/favicon.ico")
    def favicon() -> tuple[str, int]:
        return "", 204

    @app.get("/healthz")
    def health() -> dict[str, str]:
        from pipeline import db

        with db.transaction() as cur:
            cur.execute("SELECT 1")
        return {"status": "ok"}

    return app
