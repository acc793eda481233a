"""Health, configuration API and the system page."""

from __future__ import annotations

from flask import Blueprint, jsonify, redirect, url_for

from app.auth.guard import public
from app.errors import error_response
from app.monitoring.overview import system_health, system_page_context
from app.rendering import render_page
from app.system import config_service

bp = Blueprint("system", __name__)
api = Blueprint("system_api", __name__)
root = Blueprint("root", __name__)
# (blueprint, url prefix) pairs that create_app registers.
BLUEPRINTS = [(root, ""), (bp, "/system"), (api, "/api/v1/system")]


@root.get("/")
def home():
    return redirect(url_for("strategies.index"))


@root.get("/health")
@public
def health():
    report, ok = system_health()
    return jsonify(report), 200 if ok else 503


@api.get("/config/<name>")
def config_show(name: str):
    try:
        return jsonify(config_service.config_view(name))
    except KeyError:
        return error_response(
            404, f"Unknown config {name!r}; one of: {', '.join(config_service.NAMES)}."
        )


@api.post("/config/reload")
def config_reload():
    ok, message = config_service.reload()
    if not ok:
        return error_response(400, message)
    return jsonify({"status": "reloaded", "message": message})


@bp.get("/")
def index():
    report, _ = system_health()
    return render_page("system/page.html", "system/_health.html", health=report,
                       **system_page_context())
