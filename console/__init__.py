"""The finance console: a Flask app beside the pipeline, reading what Postgres holds and acting
only through the pipeline's own functions (replay, mapping import, audit)."""

from console.app import create_app

__all__ = ["create_app"]
