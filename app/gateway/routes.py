"""The gateway's own endpoints: all bots' status, gateway health, route reload, liveness."""

from __future__ import annotations

from flask import (
    Blueprint,
    Response,
    current_app,
    g,
    jsonify,
    redirect,
    request,
    send_from_directory,
)

from app.errors import error_response
from app.gateway import frequi, service, websocket
from app.gateway.auth import AuthFailure, Caller
from app.system.settings import current_settings

bp = Blueprint("gateway", __name__)
# FreqUI's page checks its own cookie (and sends the browser to log in); its assets are public.
PUBLIC_ENDPOINTS = ("gateway.liveness", "gateway.frequi_login", "gateway.frequi_page",
                    "gateway.frequi_asset")
NOT_FREQUI = ("api/", "frequi/", "static/")  # unknown paths under these are plain 404s
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


# ------------------------------------------------------------------------------ FreqUI


def _frequi_refusal(exc: frequi.FrequiError):
    """An HTML answer (a browser is asking) that says what to do."""
    return Response(f"<!doctype html><title>FreqUI</title><p>{_escape(exc.message)}</p>",
                    exc.status, content_type="text/html; charset=utf-8")


def _escape(text: str) -> str:
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


@bp.post(frequi.LOGIN_PATH)
def frequi_login():
    """The web app's one-time ticket (a form post, never in a URL) → the gateway's FreqUI
    cookie → FreqUI."""
    try:
        frequi.index_file()
        _user, cookie = frequi.redeem_ticket(current_app.config["SECRET_KEY"],
                                             request.form.get("ticket", ""))
    except frequi.FrequiError as exc:
        return _frequi_refusal(exc)
    bot = request.form.get("bot", "")
    response = redirect("/" + (f"?btcw_bot={int(bot)}" if bot.isdigit() and len(bot) < 19
                               else ""), 303)
    response.set_cookie(frequi.COOKIE, cookie, max_age=frequi.cookie_max_age(), httponly=True,
                        samesite="Lax", secure=request.is_secure, path="/")
    return response


@bp.get("/")
@bp.get("/<path:path>")
def frequi_page(path: str = ""):
    """FreqUI's page (any of its routes), with the running bots written into its bot list."""
    if path.startswith(NOT_FREQUI) or path in ("api", "frequi", "health"):
        return error_response(404, f"No gateway endpoint at /{path}.")
    try:
        index = frequi.index_file()
    except frequi.FrequiError as exc:
        return _frequi_refusal(exc)
    try:
        user = frequi.user_of_cookie(current_app.config["SECRET_KEY"],
                                     request.cookies.get(frequi.COOKIE))
    except frequi.FrequiError:
        web = current_settings().system.web.public_url.rstrip("/")
        bot = request.args.get("btcw_bot", "")
        return redirect(f"{web}/strategies/frequi" + (f"?bot={bot}" if bot.isdigit() else ""))
    proxy = _proxy()
    tokens = proxy.auth.issue_tokens(Caller(user.user_id, user.username, "frequi"))
    bots = frequi.bot_list(proxy.routes.routable(), request.host_url.rstrip("/"),
                           user.username, tokens)
    wanted = request.args.get("btcw_bot", "")
    selected = f"{frequi.BOT_PREFIX}{wanted}" if wanted.isdigit() else None
    response = Response(frequi.page(index, bots, selected), content_type="text/html; "
                                                                          "charset=utf-8")
    response.headers["Cache-Control"] = "no-store"  # it holds fresh tokens
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@bp.get("/assets/<path:filename>")
@bp.get("/<any('favicon.ico'):filename>")
def frequi_asset(filename: str):
    """FreqUI's scripts, styles and icons (content-hashed names: cached for long)."""
    folder = frequi.build_dir()
    if folder is None:
        return error_response(404, "FreqUI is not set up (system.gateway.frequi_dir).")
    base = folder if filename == "favicon.ico" else folder / "assets"
    return send_from_directory(base, filename, max_age=365 * 86400)
