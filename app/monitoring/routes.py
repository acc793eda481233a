"""Capacity dashboard and the system/capacity JSON API (SPEC §8)."""

from __future__ import annotations

from flask import Blueprint, flash, jsonify, redirect, render_template, url_for
from htmx_flask import make_response, request

from app.errors import error_response
from app.extensions import db, sock
from app.monitoring import bot_status, capacity, live, overview, system_status
from app.rendering import render_page
from app.strategies.models import Strategy

bp = Blueprint("monitoring", __name__)
api = Blueprint("monitoring_api", __name__)
# (blueprint, url prefix) pairs that create_app registers.
BLUEPRINTS = [(bp, ""), (api, "/api/v1/system")]

TREND_HOURS = (24, 72, 168)


def _hours(default: int = 24) -> int | None:
    """?hours=N as a whole number 1..168, else None."""
    raw = request.args.get("hours", str(default)).strip()
    if not raw.isdigit() or not 1 <= int(raw) <= 168:
        return None
    return int(raw)


# ----------------------------------------------------------------------------------- pages


def _capacity_context() -> dict:
    return {"detail": capacity.detailed(), "trend_hours": TREND_HOURS}


@bp.get("/capacity", endpoint="capacity")
def capacity_page():
    return render_page("monitoring/capacity.html", "monitoring/_capacity_summary.html",
                       **_capacity_context())


@bp.post("/capacity/threshold")
def save_threshold():
    raw = request.form.get("threshold")
    try:
        result = capacity.set_alert_threshold(raw)
    except capacity.ThresholdError as exc:
        if not request.htmx:
            flash(str(exc), "error")
            return redirect(url_for("monitoring.capacity"))
        return render_page("monitoring/_threshold.html", threshold=raw, error=str(exc),
                           status=422)
    if not request.htmx:
        flash(result["message"], "success")
        return redirect(url_for("monitoring.capacity"))
    html = render_template("monitoring/_threshold.html", threshold=result["threshold"],
                           saved=result["message"])
    return make_response(html, 200, trigger="capacity-changed")  # the summary refreshes


# ------------------------------------------------------------------------------------- API


@api.get("/capacity")
def capacity_api():
    return jsonify(capacity.capacity_info())


@api.get("/port-pool")
def port_pool_api():
    return jsonify(capacity.port_pool_status())


@api.get("/capacity/detailed")
def capacity_detailed_api():
    return jsonify(capacity.detailed())


@api.get("/capacity/utilization-trend")
def utilization_trend_api():
    hours = _hours()
    if hours is None:
        return error_response(400, f"hours must be a whole number from 1 to 168, got "
                                   f"{request.args.get('hours')!r}.")
    return jsonify(capacity.utilization_trend(hours))


@api.post("/capacity/alert-threshold")
def alert_threshold_api():
    body = request.get_json(silent=True)
    if request.is_json and not isinstance(body, dict) and request.get_data():
        return error_response(400, 'body: send a JSON object such as {"threshold": 80}.')
    if isinstance(body, dict):
        raw = body.get("threshold", body.get("threshold_percent"))
    elif request.form:
        raw = request.form.get("threshold")
    else:
        raw = request.args.get("threshold_percent", request.args.get("threshold"))
    return jsonify(capacity.set_alert_threshold(raw))


@api.get("/capacity/alert-threshold")
def alert_threshold_show():
    return jsonify({"threshold": capacity.alert_threshold()})


@api.get("/statistics")
def statistics_api():
    return jsonify(capacity.statistics())


@api.get("/health")
def health_api():
    body, ok = overview.detailed_health()
    return jsonify(body), 200 if ok else 503


@api.get("/status")
def status_api():
    """The host's latest status sample (cached by the periodic job)."""
    return jsonify(system_status.current_status())


@api.get("/status/history")
def status_history_api():
    """Host samples for charts: ?minutes=N (1..120) from the recent ring, or ?hours=N from
    the 5-minute history."""
    if "hours" in request.args:
        hours = _hours()
        if hours is None:
            return error_response(400, "hours must be a whole number from 1 to 168.")
        return jsonify({"resolution_seconds": system_status.HISTORY_BUCKET,
                        "points": system_status.history(hours)})
    raw = request.args.get("minutes", "60")
    if not raw.isdigit() or not 1 <= int(raw) <= 120:
        return error_response(400, f"minutes must be a whole number from 1 to 120, got {raw!r}.")
    return jsonify({"resolution_seconds": None, "points": system_status.recent(int(raw))})


@api.get("/strategies/health")
def strategies_health_api():
    """The last status sweep: summary and one entry per bot (cached, up to 30 s old)."""
    ids = db.session.scalars(db.select(Strategy.id).where(
        Strategy.deleted_at.is_(None), Strategy.status.in_(bot_status.SWEPT_STATUSES))).all()
    cached = bot_status.cached_statuses(list(ids))  # one Redis round trip for the fleet
    return jsonify({"summary": bot_status.cached_summary(),
                    "strategies": {str(i): cached.get(i) for i in ids}})


@bp.get("/system/panels/<name>")
def system_panel(name: str):
    """One self-refreshing panel of the System page (an htmx fragment)."""
    if name not in overview.PANELS:
        return error_response(404, f"No system panel {name!r}.")
    return render_page(f"system/_{name}.html", **overview.system_panel(name))


@bp.app_template_global("bot_health")
def bot_health(strategy_id: int) -> dict | None:
    """The last status sweep's view of one bot (deductions, candle age) for any template."""
    return bot_status.cached_status(strategy_id)


@sock.route(live.WS_PATH, bp=bp)
def monitoring_socket(ws):
    """Live host samples and capacity updates for the System and Capacity pages."""
    db.session.remove()  # do not hold a database connection while the page stays open
    live.serve(ws)
