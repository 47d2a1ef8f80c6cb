"""Log in and out."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, redirect, render_template, request, session, url_for
from werkzeug.wrappers import Response

from console import security, users
from pipeline import db

bp = Blueprint("auth", __name__)


def _safe_next(target: str | None) -> str:
    """Only a path on this site (no scheme, no host, no //evil.example)."""
    if not target:
        return url_for("overview.index")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return url_for("overview.index")
    return target


@bp.route("/login", methods=["GET", "POST"])
def login() -> str | Response | tuple[str, int]:
    error = ""
    if request.args.get("expired"):
        error = "your session ended: log in again"
    if request.method == "POST":
        name = request.form.get("name", "")
        password = request.form.get("password", "")
        with db.transaction() as cur:
            user, error = users.authenticate(cur, name, password, request.remote_addr or "?")
        if user is not None:
            security.start_session(user)
            return redirect(_safe_next(request.args.get("next")))
        return render_template("login.html", error=error), 401
    return render_template("login.html", error=error)


@bp.post("/logout")
def logout() -> Response:
    from flask import g

    if g.get("user") is not None:
        with db.transaction() as cur:
            users.record(cur, "logout", g.user.name)
    session.clear()
    return redirect(url_for("auth.login"))
