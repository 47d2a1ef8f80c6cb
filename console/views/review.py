"""The review and failed queue: reasons grouped, replay or acknowledge from the list."""

from __future__ import annotations

from itertools import groupby

from flask import Blueprint, render_template

from console import queries
from pipeline import db
from pipeline.states import REPLAYABLE

bp = Blueprint("review", __name__)


@bp.get("/review")
def index() -> str:
    with db.transaction() as cur:
        counts = queries.review_groups(cur)
        rows = queries.review_queue(cur)
    ordered = sorted(rows, key=lambda r: (r["status"], r["reason_group"] or ""))
    shown = {key: list(items) for key, items in
             groupby(ordered, key=lambda r: (r["status"], r["reason_group"] or ""))}
    # Every group is named with its full count, the largest first; its oldest rows listed.
    groups = [(key, n, shown.get(key, [])) for key, n in
              sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
    return render_template("review.html", groups=groups, total=sum(counts.values()),
                           listed=len(rows), replayable=REPLAYABLE)
