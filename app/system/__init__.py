"""System: health, configuration, versions, the system page."""

from flask import Blueprint

bp = Blueprint("system", __name__)
api = Blueprint("system_api", __name__)
root = Blueprint("root", __name__)

from app.system import routes  # noqa: E402,F401

BLUEPRINTS = [(root, ""), (bp, "/system"), (api, "/api/v1/system")]
