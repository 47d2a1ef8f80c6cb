"""Overview: counts by status, polls and waiting files (ops.status.summary), the oldest
unsettled invoice, 30-day charts."""

from __future__ import annotations

from flask import Blueprint, render_template, request

from console import charts, queries
from ops import status
from pipeline import db
from pipeline.config import settings

bp = Blueprint("overview", __name__)


@bp.get("/")
def index() -> str:
    by = "company" if request.args.get("by") == "company" else "currency"
    s = settings()
    with db.transaction() as cur:
        summary = status.summary(cur, poll_interval=s.poll_interval, broker_url=s.broker_url)
        posted = queries.posted_per_day(cur, by=by, default_company=s.x3_company)
        failures = queries.failures_by_reason(cur)
    return render_template("overview.html", summary=summary, by=by,
                           posted=charts.stacked_per_day(posted),
                           failures=charts.horizontal(failures, width=300))
