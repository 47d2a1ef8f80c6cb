"""Mappings: the GL, cost-center, dimension and route tables; CSV upload with an X3-checked
preview before saving (admin)."""

from __future__ import annotations

from flask import Blueprint, flash, g, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from console import queries, uploads
from console.security import require
from pipeline import db

bp = Blueprint("mappings", __name__)


@bp.get("/mappings")
def index() -> str:
    with db.transaction() as cur:
        tables = queries.mappings(cur)
    return render_template("mappings.html", tables=tables, labels=uploads.LABELS,
                           columns=uploads.COLUMNS)


@bp.post("/mappings/preview")
@require("admin")
def preview() -> Response | str | tuple[str, int]:
    upload = request.files.get("file")
    kind = request.form.get("kind", "")
    if upload is None or not upload.filename:
        flash("choose a CSV file to upload", "error")
        return redirect(url_for("mappings.index"))
    try:
        text = upload.read().decode("utf-8-sig")
        result = uploads.preview(g.user, kind, text, request.form.get("dimension_type"))
    except UnicodeDecodeError:
        flash("the file is not UTF-8 text", "error")
        return redirect(url_for("mappings.index"))
    except uploads.UploadError as exc:
        flash(f"upload refused: {exc}", "error")
        return redirect(url_for("mappings.index"))
    return render_template("mapping_preview.html", p=result, labels=uploads.LABELS,
                           columns=uploads.COLUMNS[result.kind])


@bp.post("/mappings/save")
@require("admin")
def save() -> Response:
    try:
        upload_id = int(request.form.get("upload_id", ""))
        done = uploads.save(g.user, upload_id)
        flash(f"{uploads.LABELS[done['kind']]}: {done['rows']} row(s) saved", "ok")
    except (ValueError, uploads.UploadError) as exc:
        flash(f"not saved: {exc}", "error")
    return redirect(url_for("mappings.index"))
