"""Files: each file's invoices, rejected rows and totals; the month-end report as CSV."""

from __future__ import annotations

from datetime import date

from flask import Blueprint, Response, abort, current_app, render_template, request

from console import queries
from console.views.invoices import _int
from ops import reports, tables
from pipeline import db

bp = Blueprint("files", __name__)


@bp.get("/files")
def index() -> str:
    with db.transaction() as cur:
        rows, next_before = queries.files_page(cur, before=_int(request.args.get("before")),
                                               size=current_app.config["PAGE_SIZE"])
    today = date.today()
    return render_template("files.html", rows=rows, next_before=next_before,
                           month_start=today.replace(day=1).isoformat())


@bp.get("/files/<int:file_id>")
def detail(file_id: int) -> str:
    size = current_app.config["PAGE_SIZE"]
    with db.transaction() as cur:
        f = queries.source_file(cur, file_id)
        if f is None:
            abort(404)
        invoices, next_before = queries.invoices_page(
            cur, queries.InvoiceFilter(file_id=file_id), before=_int(request.args.get("before")),
            size=size, default_company="")
        rejections = queries.file_rejections(cur, file_id)
        totals = queries.file_totals(cur, file_id)
    return render_template("file.html", f=f, invoices=invoices, next_before=next_before,
                           rejections=rejections, totals=totals)


@bp.get("/report.csv")
def report() -> Response:
    """`mlc report --since DATE --format csv`, as a download."""
    try:
        since = date.fromisoformat(request.args.get("since", ""))
    except ValueError:
        abort(400, "since must be a date (YYYY-MM-DD)")
    with db.transaction() as cur:
        rows = reports.reconciliation(cur, since)
    return Response(tables.to_csv(rows, reports.REPORT_COLUMNS), mimetype="text/csv",
                    headers={"Content-Disposition":
                             f'attachment; filename="mlc-report-since-{since}.csv"'})
