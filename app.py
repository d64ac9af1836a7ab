"""WSGI entry point: `gunicorn app:app`, and what `flask` finds."""

from chatman import create_app

app = create_app()
