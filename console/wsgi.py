"""The WSGI entry point for gunicorn: `gunicorn console.wsgi:app`."""

from console import create_app

app = create_app()
