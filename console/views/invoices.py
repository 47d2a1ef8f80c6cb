"""Invoices: the filtered list, one invoice's whole story, and what an operator does to it."""

from __future__ import annotations

from datetime import date
from typing import Any

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from werkzeug.wrappers import Response

from console import actions, queries
from console.security import require
from ops import reports
from pipeline import db, mapping
from pipeline.config import settings
from pipeline.states import REPLAYABLE, InvoiceStatus
from pipeline.x3 import attempts

bp = Blueprint("invoices", __name__)
STATUSES = tuple(InvoiceStatus)


def _date(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None


def _file_id(value: str) -> int | None:
    """A file by ledger id, or by name as `mlc replay --file` takes it (the newest of that name;
    -1, which matches nothing, when no file has it)."""
    value = value.strip()[:255]
    if not value or value.isdigit():
        return _int(value)
    with db.transaction() as cur:
        found = reports.find_files(cur, value)
    return found[-1]["id"] if found else -1


@bp.get("/invoices")
def index() -> str:
    a = request.args
    f = queries.InvoiceFilter(
        status=a.get("status", "") if a.get("status") in STATUSES else "",
        vendor=a.get("vendor", "").strip()[:100], file_id=_file_id(a.get("file", "")),
        company=a.get("company", "").strip()[:30], since=_date(a.get("since")),
        until=_date(a.get("until")), number=a.get("number", "").strip()[:60])
    company = settings().x3_company
    with db.transaction() as cur:
        rows, next_before = queries.invoices_page(
            cur, f, before=_int(a.get("before")), size=current_app.config["PAGE_SIZE"],
            default_company=company)
        companies = queries.companies(cur, company)
    args = {k: v for k, v in a.items() if k != "before" and v}
    return render_template("invoices.html", rows=rows, f=f, statuses=STATUSES,
                           companies=companies, args=args, next_before=next_before,
                           first_page="before" in a)


def _applied(cur: Any, payload: dict[str, Any]) -> list[dict[str, Any]]:
    """Each line with the mapping that applies to it now (what a replay would send)."""
    lines = payload.get("lines") or []
    accounts = mapping.gl_accounts(cur, {ln["gl_account"] for ln in lines})
    centers = mapping.cost_centers(cur, {ln["cost_center"] for ln in lines
                                         if ln.get("cost_center")})
    out = []
    for ln in lines:
        dims = []
        if ln.get("cost_center"):
            dims.append("=".join(centers[ln["cost_center"]]))
        dims += ["=".join(mapping.dimension(cur, t, v))
                 for t, v in sorted((ln.get("dimensions") or {}).items()) if v]
        try:
            company, site = mapping.route(cur, ln.get("location"))
            route = f"{company}/{site}"
        except mapping.UnknownRoute as exc:
            route = f"no route: {exc}"
        out.append({**ln, "x3_account": accounts[ln["gl_account"]], "x3_dimensions": dims,
                    "route": route})
    return out


@bp.get("/invoices/<int:invoice_id>")
def detail(invoice_id: int) -> str:
    with db.transaction() as cur:
        inv = queries.invoice(cur, invoice_id)
        if inv is None:
            abort(404)
        lines = _applied(cur, inv["payload"])
        trail = sorted(queries.file_events(cur, inv["source_file_id"])
                       + reports.trail(cur, invoice_id=invoice_id),
                       key=lambda e: (e["at"], e["id"]))
        calls = attempts.for_invoice(cur, invoice_id)
        link = queries.vendor_link(cur, inv["stampli_vendor_id"])
        changes = queries.review_changes(cur, invoice_id) if inv["review_reason"] else []
        acks = queries.acknowledgements(cur, invoice_id)
    header = {k: v for k, v in inv["payload"].items() if k != "lines"}
    acked = any(a["review_reason"] == inv["review_reason"] for a in acks)
    replayable = inv["status"] in REPLAYABLE and not inv["review_reason"]
    return render_template("invoice.html", inv=inv, header=header, lines=lines, trail=trail,
                           calls=calls, link=link, changes=changes, acks=acks, acked=acked,
                           replayable=replayable)


@bp.post("/invoices/<int:invoice_id>/replay")
@require("operator")
def replay(invoice_id: int) -> Response:
    try:
        chosen = actions.replay(g.user, invoice_id, request.form.get("reason", "")[:500])
        flash(f"replay queued for {len(chosen)} invoice(s)", "ok")
    except actions.ActionRefused as exc:
        flash(f"replay refused: {exc}", "error")
    return redirect(_back(invoice_id))


@bp.post("/invoices/<int:invoice_id>/acknowledge")
@require("operator")
def acknowledge(invoice_id: int) -> Response:
    try:
        actions.acknowledge(g.user, invoice_id, request.form.get("note", "")[:1000])
        flash("review acknowledged: nothing was sent to X3", "ok")
    except actions.ActionRefused as exc:
        flash(f"acknowledgement refused: {exc}", "error")
    return redirect(_back(invoice_id))


def _back(invoice_id: int) -> str:
    if request.form.get("back") == "review":
        return url_for("review.index")
    return url_for("invoices.detail", invoice_id=invoice_id)
