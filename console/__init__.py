"""The finance console: a Flask app beside the pipeline, reading what Postgres holds and acting
only through the pipeline's own functions (replay, mapping import, audit)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask


def create_app(overrides: dict[str, Any] | None = None) -> Flask:
    """The app (console.app.create_app), imported only when wanted: `mlc` builds its parser
    with the console's commands and must not pay for Flask on every command."""
    from console.app import create_app as factory

    return factory(overrides)
