"""Signals: webhook ingestion, grading, storage and live pages."""

from flask import Blueprint

bp = Blueprint("signals", __name__)
api = Blueprint("signals_api", __name__)

from app.signals import routes  # noqa: E402,F401

BLUEPRINTS = [(bp, "/signals"), (api, "/api/v1/signals")]
