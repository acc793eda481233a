"""Signal pages, JSON API, CSV export, the webhook receiver and the live WebSocket."""

from __future__ import annotations

from urllib.parse import urlencode

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    g,
    jsonify,
    request,
    stream_with_context,
    url_for,
)

from app.auth.guard import bearer_token, public
from app.clock import utcnow
from app.errors import error_response
from app.extensions import db, sock
from app.rendering import render_page
from app.signals import consensus, ingest, outcomes, service
from app.signals import live as live_feed
from app.signals.grading import LEVELS
from app.signals.ingest import ACTIONS, MAX_BODY_BYTES, MESSAGE_TYPES, WebhookError
from app.strategies.models import Strategy
from app.system.settings import current_settings

bp = Blueprint("signals", __name__)
api = Blueprint("signals_api", __name__)
# /api/v1/signals.csv (a sibling of the api prefix) and the /ws/signals WebSocket.
export = Blueprint("signals_export", __name__)
sockets = Blueprint("signals_live", __name__)
# (blueprint, url prefix) pairs that create_app registers.
BLUEPRINTS = [(bp, "/signals"), (api, "/api/v1/signals"), (export, "/api/v1"), (sockets, "")]

LIVE_PATH = "/ws/signals"

# ----------------------------------------------------------------------------- webhook


def _webhook_token() -> str | None:
    return (request.args.get("token") or bearer_token()
            or request.headers.get("X-Webhook-Token") or None)


@api.post("/webhook/<int:strategy_id>")
@public
def webhook(strategy_id: int):
    """A bot's webhook: token-authenticated, validated, stored once, then published."""
    too_large = WebhookError(413, f"body: larger than {MAX_BODY_BYTES // 1024} KiB", "body")
    if (request.content_length or 0) > MAX_BODY_BYTES:
        raise too_large
    auth = ingest.authenticate(strategy_id, _webhook_token())
    body = request.stream.read(MAX_BODY_BYTES + 1)
    if len(body) > MAX_BODY_BYTES:
        raise too_large
    result = ingest.ingest_webhook(auth, body)
    return jsonify(result.as_json())


# ------------------------------------------------------------------------------- pages


def _list_context(filters: service.SignalFilters, before_id: int | None, limit: int,
                  embed: bool) -> dict:
    page = service.list_signals(filters, before_id, limit)
    live_params = filters.params()
    if before_id is not None:
        live_params["before_id"] = str(before_id)
    else:
        live_params["since_id"] = str(page.newest_id or 0)
    return {
        "filters": filters,
        "listing": page,
        "embed": embed,
        "limit": limit,
        # A relative URL: the htmx ws extension picks ws: or wss: from the page's own scheme.
        "live_url": f"{request.script_root}{LIVE_PATH}?{urlencode(live_params)}",
        "levels": LEVELS,
        "actions": ACTIONS,
        "message_types": MESSAGE_TYPES,
    }


@bp.get("/")
def index():
    if request.args.get("view") == "consensus":
        pair = request.args.get("pair") or None
        return render_page("signals/consensus.html", "signals/_consensus.html",
                           rows=[consensus.consensus_json(r) for r in consensus.recent(200, pair)],
                           names=dict(service.strategy_choices()), pair=pair,
                           settings=current_settings().system.signals.consensus)
    embed = request.args.get("embed") == "1"
    try:
        filters = service.parse_filters(request.args)
        before_id, limit = service.parse_page(request.args)
    except service.FilterError as exc:
        if embed:
            raise
        filters, before_id, limit = service.SignalFilters(), None, service.DEFAULT_LIMIT
        context = _list_context(filters, None, limit, embed)
        return render_page("signals/page.html", "signals/_list.html", status=400,
                           strategies=service.strategy_choices(),
                           pairs=service.pair_choices(), filter_error=exc, **context)
    context = _list_context(filters, before_id, limit, embed)
    if embed:
        return render_page("signals/_strategy_signals.html", **context)
    return render_page("signals/page.html", "signals/_list.html",
                       strategies=service.strategy_choices(),
                       pairs=service.pair_choices(), filter_error=None, **context)


@bp.get("/quality")
def quality_page():
    horizon = request.args.get("horizon", "4")
    horizon_value = int(horizon) if horizon in ("1", "4", "24") else 4
    return render_page("signals/quality.html", "signals/_quality.html",
                       **outcomes.quality_overview(horizon_value))


@bp.get("/<int:signal_id>")
def detail(signal_id: int):
    found = service.get_signal(signal_id)
    if found is None:
        abort(404, description=f"No signal with id {signal_id}.")
    signal, strategy_name = found

    strategy = db.session.get(Strategy, signal.strategy_id)
    payload_text, msg_unpacked = service.payload_for_display(signal.payload or {})
    return render_page(
        "signals/detail.html", signal=signal, strategy=strategy, strategy_name=strategy_name,
        payload_text=payload_text, msg_unpacked=msg_unpacked,
        notifications=service.notifications_for(signal.id), pair=service.signal_pair(signal),
    )


# ---------------------------------------------------------------------------- JSON API


def _csv_response(filters: service.SignalFilters) -> Response:
    name = f"signals-{utcnow():%Y%m%d-%H%M%S}.csv"
    return Response(stream_with_context(service.csv_lines(filters)),
                    mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


@api.get("/quality")
def quality_api():
    raw_id, raw_horizon = request.args.get("strategy_id"), request.args.get("horizon", "4")
    if raw_id not in (None, "") and not (raw_id.isdigit() and len(raw_id) < 19):
        return error_response(400, "strategy_id must be a strategy id.", field="strategy_id")
    if not raw_horizon.isdigit() or len(raw_horizon) > 3:
        return error_response(400, "horizon must be 1, 4 or 24.", field="horizon")
    return jsonify(outcomes.quality(int(raw_id) if raw_id else None, int(raw_horizon)))


def _strategy_arg(raw) -> int:
    if not isinstance(raw, (str, int)) or isinstance(raw, bool) or not str(raw).isdigit() \
            or len(str(raw)) > 18:
        raise outcomes.OutcomeError("strategy_id must be a strategy id.", status=400,
                                    field="strategy_id")
    return int(raw)


def _horizon_arg(raw) -> int | None:
    if raw in (None, ""):
        return None
    if not str(raw).isdigit() or len(str(raw)) > 3:
        raise outcomes.OutcomeError("horizon must be 1, 4 or 24.", status=400, field="horizon")
    return int(raw)


@api.get("/chart")
def chart_api():
    raw_candles = request.args.get("candles", "200")
    if not raw_candles.isdigit() or len(raw_candles) > 5:
        return error_response(400, "candles must be a whole number 10..1000.", field="candles")
    raw_signal = request.args.get("signal_id")
    signal_id = _strategy_arg(raw_signal) if raw_signal not in (None, "") else None
    pair = request.args.get("pair") or None
    if pair is not None and (len(pair) > 64 or any(ord(c) < 32 for c in pair)):
        return error_response(400, "pair: at most 64 printable characters.", field="pair")
    return jsonify(outcomes.chart(_strategy_arg(request.args.get("strategy_id")), pair,
                                  int(raw_candles), signal_id))


@api.get("/consensus")
def consensus_api():
    raw = request.args.get("limit", "100")
    if not raw.isdigit() or not 1 <= int(raw) <= 1000:
        return error_response(400, "limit must be 1..1000.", field="limit")
    pair = request.args.get("pair") or None
    return jsonify({"consensus": [consensus.consensus_json(r)
                                  for r in consensus.recent(int(raw), pair)]})


@api.get("/calibration")
def calibration_api():
    return jsonify(outcomes.calibration(_strategy_arg(request.args.get("strategy_id")),
                                        _horizon_arg(request.args.get("horizon"))))


@api.post("/calibration")
def calibration_apply_api():
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return error_response(400, 'Send JSON {"strategy_id": 7, "horizon": 4}.')
    return jsonify(outcomes.apply_calibration(
        _strategy_arg(body.get("strategy_id")), _horizon_arg(body.get("horizon")),
        by=g.current_user.username if getattr(g, "current_user", None) else ""))


@api.get("")
def api_list():
    filters = service.parse_filters(request.args)
    if request.args.get("format", "json") == "csv":
        return _csv_response(filters)
    if request.args.get("format", "json") != "json":
        raise service.FilterError("format", "must be json or csv")
    before_id, limit = service.parse_page(request.args)
    return jsonify(service.list_signals_json(filters, before_id, limit))


@export.get("/signals.csv")
def api_csv():
    filters = service.parse_filters(request.args)
    return _csv_response(filters)


@api.get("/<int:signal_id>")
def api_detail(signal_id: int):
    found = service.get_signal(signal_id)
    if found is None:
        return error_response(404, f"No signal with id {signal_id}.")
    return jsonify(service.signal_json(*found))


# ---------------------------------------------------------------------------- WebSocket


def _render_fragment(name: str, **context) -> str:
    """A template rendered without the app's context processors: a live message must not run
    page-wide queries (the inbox count) or hold a database connection for an open socket."""
    return current_app.jinja_env.get_template(name).render(**context)


def _render_live(rows: list[dict], feed: live_feed.PageFeed) -> str:
    hub = live_feed.hub_for()
    html = [hub.render_once(row, "row", lambda e: _render_fragment("signals/_row.html", s=e,
                                                                   is_new=True))
            for row in rows]
    return _render_fragment("signals/_live.html", rows_html=html, feed=feed,
                            clear_empty=bool(rows) and feed.shown == len(rows),
                            newest_url=url_for("signals.index", **feed.filters.params()),
                            all_url=url_for("signals.index"))


@sock.route(LIVE_PATH, bp=sockets)
def signals_socket(ws):
    """Live rows and badge counts for a signals page; its filters come in the query string."""
    try:
        filters = service.parse_filters(request.args)
        before_id, _ = service.parse_page(request.args)
        since_text = (request.args.get("since_id") or "").strip()
        since_id = int(since_text) if since_text else None
    except (service.FilterError, ValueError) as exc:
        ws.close(reason=1008, message=str(exc)[:120])
        return

    def replay(after_id: int) -> list[dict]:
        items = service.list_signals_after(filters, after_id, live_feed.BATCH)
        db.session.remove()  # do not hold a database connection while the page stays open
        return items

    db.session.remove()
    live_feed.serve_page(ws, filters, before_id is not None, since_id, _render_live, replay)
