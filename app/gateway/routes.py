"""The gateway's own endpoints: all bots' status, gateway health, route reload, liveness."""

from __future__ import annotations

from flask import Blueprint, current_app, g, jsonify, request

from app.errors import error_response
from app.gateway import service, websocket
from app.gateway.auth import AuthFailure

bp = Blueprint("gateway", __name__)
PUBLIC_ENDPOINTS = ("gateway.liveness",)
for _number, _rule in enumerate(websocket.ws_paths()):
    bp.add_url_rule(_rule, endpoint=f"message_ws_{_number}", view_func=websocket.message_ws,
                    websocket=True)


def _proxy():
    return current_app.extensions["btcw_gateway"]


@bp.before_app_request
def _authenticate():
    """Every gateway endpoint needs a BTC Watcher login, except the liveness probe."""
    if request.endpoint in PUBLIC_ENDPOINTS or request.endpoint is None:
        return None
    if request.endpoint.startswith("gateway.message_ws"):
        return None  # the websocket view checks its ?token= itself, before upgrading
    try:
        g.current_user = _proxy().auth.identify(request.environ, request.method)
    except AuthFailure as exc:
        return error_response(exc.status, exc.message, **exc.details)
    return None


@bp.get("/health")
def liveness():
    """The gateway process answers (for compose health checks and the web app's probe)."""
    return jsonify(status="ok", routes_loaded=len(_proxy().routes.routes))


@bp.get("/api/strategies/status")
def strategies_status():
    return jsonify(service.strategies_status(_proxy().routes.all()))


@bp.get("/api/gateway/health")
def gateway_health():
    table = _proxy().routes
    body = service.gateway_health(table.all())
    body["routes_loaded"] = len(table.routable())
    body["routes_version"] = table.version
    return jsonify(body)


@bp.post("/api/gateway/routes/reload")
def reload_routes():
    return jsonify(service.reload_routes(_proxy().routes))
