"""WSGI entry points for gunicorn: `wsgi:web()` (port 8000) and `wsgi:gateway()` (port 8080).

gevent's monkey patching comes first, before anything else is imported.
"""

from gevent import monkey

monkey.patch_all()

from app import create_app, create_gateway_app  # noqa: E402


def web():
    """The web app (pages, API, webhook, WebSocket)."""
    return create_app()


def gateway():
    """The gateway in front of every bot."""
    return create_gateway_app()
