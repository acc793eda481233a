"""Signals: webhook ingestion, grading, storage and live pages."""

from flask import Blueprint

bp = Blueprint("signals", __name__)
api = Blueprint("signals_api", __name__)
# /api/v1/signals.csv (a sibling of the api prefix) and the /ws/signals WebSocket.
export = Blueprint("signals_export", __name__)
sockets = Blueprint("signals_live", __name__)

from app.signals import routes  # noqa: E402,F401

BLUEPRINTS = [(bp, "/signals"), (api, "/api/v1/signals"), (export, "/api/v1"), (sockets, "")]
