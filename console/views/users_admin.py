"""Users (admin): list, add, disable. `mlc console user ...` does the same from a shell."""

from __future__ import annotations

from flask import Blueprint, flash, g, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from console import users
from console.passwords import WeakPassword
from console.security import require
from pipeline import db

bp = Blueprint("users", __name__)


@bp.get("/users")
@require("admin")
def index() -> str:
    with db.transaction() as cur:
        rows = users.listing(cur)
    return render_template("users.html", rows=rows, roles=users.ROLES)


@bp.post("/users")
@require("admin")
def add() -> Response:
    f = request.form
    try:
        with db.transaction() as cur:
            users.add(cur, f.get("name", ""), f.get("role", ""), f.get("password", ""),
                      by=g.user.name)
        flash(f"user {f.get('name', '').strip()} added", "ok")
    except (users.UserError, WeakPassword) as exc:
        flash(f"not added: {exc}", "error")
    return redirect(url_for("users.index"))


@bp.post("/users/<name>/disable")
@require("admin")
def disable(name: str) -> Response:
    try:
        with db.transaction() as cur:
            users.disable(cur, name, by=g.user.name)
        flash(f"user {name} disabled; their sessions end now", "ok")
    except users.UserError as exc:
        flash(f"not disabled: {exc}", "error")
    return redirect(url_for("users.index"))
