"""The console's blueprints, one module per page family."""

from __future__ import annotations

from flask import Flask


def register(app: Flask) -> None:
    from console.views import (
        activity,
        auth,
        files,
        invoices,
        mappings,
        overview,
        review,
        users_admin,
    )

    for module in (auth, overview, invoices, review, files, mappings, activity, users_admin):
        app.register_blueprint(module.bp)
