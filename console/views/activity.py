"""Activity: what people did (logins, replays, acknowledgements, mapping and user changes)."""

from __future__ import annotations

from flask import Blueprint, current_app, render_template, request

from console import queries
from console.views.invoices import _int
from pipeline import db

bp = Blueprint("activity", __name__)


@bp.get("/activity")
def index() -> str:
    with db.transaction() as cur:
        rows, next_before = queries.activity_page(cur, before=_int(request.args.get("before")),
                                                  size=current_app.config["PAGE_SIZE"])
    return render_template("activity.html", rows=rows, next_before=next_before)
