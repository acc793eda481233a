"""WSGI entry points for gunicorn: `wsgi:web()` (port 8000), `wsgi:gateway()` (port 8080) and
`wsgi:relay()` (the exchange relay, port 9990, one worker).

gevent's monkey patching comes first, before anything else is imported.
"""

from gevent import monkey

monkey.patch_all()

from app import create_app, create_gateway_app, create_relay_app  # noqa: E402


def web():
    """The web app (pages, API, webhook, WebSocket)."""
    return create_app()


def gateway():
    """The gateway in front of every bot."""
    return create_gateway_app()


def relay():
    """The exchange relay of this host (one worker: its cache and budget live in it)."""
    return create_relay_app()
