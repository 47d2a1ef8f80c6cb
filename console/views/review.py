"""The review and failed queue: reasons grouped, replay or acknowledge from the list."""

from __future__ import annotations

from itertools import groupby

from flask import Blueprint, render_template

from console import queries
from pipeline import db
from pipeline.replay import REPLAYABLE

bp = Blueprint("review", __name__)


@bp.get("/review")
def index() -> str:
    with db.transaction() as cur:
        rows = queries.review_queue(cur)
    ordered = sorted(rows, key=lambda r: (r["status"], r["reason_group"] or ""))
    groups = [(key, list(items)) for key, items in
              groupby(ordered, key=lambda r: (r["status"], r["reason_group"] or ""))]
    groups.sort(key=lambda g: -len(g[1]))
    return render_template("review.html", groups=groups, total=len(rows),
                           replayable=REPLAYABLE)
