"""Monitoring and capacity: periodic status, health scores, capacity."""

from flask import Blueprint

bp = Blueprint("monitoring", __name__)
api = Blueprint("monitoring_api", __name__)

from app.monitoring import routes  # noqa: E402,F401

BLUEPRINTS = [(bp, ""), (api, "/api/v1/system")]
