"""Gateway services: every bot's status at once, gateway health, route reload, drift repair.

They take routes (or load them from the database) and settings, never a request, so the
gateway's own endpoints, the web app's `GET /api/v1/strategies/gateway/status`, the monitoring
job and the CLI all call the same functions. Bots are asked concurrently with a per-bot timeout
(`fetch_all`), so one dead bot costs a connect timeout, not the sweep.
"""

from __future__ import annotations

import json
import logging

import requests

from app.clock import isoformat, utcnow
from app.extensions import db, redis_store
from app.gateway.routes_cache import (
    FINGERPRINT_PREFIX,
    Route,
    fingerprint,
    load_routes,
    publish_route_change,
)
from app.runtime.bot_client import BotError, fetch_all, http_status, pooled_client
from app.strategies.models import StrategyEvent
from app.system.settings import current_settings

log = logging.getLogger(__name__)

SWEEP_TIMEOUT_MAX = 5.0
DRIFT_KEY = "btcw:gateway:drift"


def _routes(routes: dict[int, Route] | None) -> dict[int, Route]:
    return load_routes() if routes is None else routes


def _client(route: Route, timeout: float):
    gw = current_settings().system.gateway
    return pooled_client(route.host or "127.0.0.1", route.port, route.username, route.password,
                         timeout=timeout, connect_timeout=min(gw.connect_timeout, timeout),
                         name=route.label)


def _sweep_timeout(timeout: float | None) -> float:
    gw = current_settings().system.gateway
    return float(timeout if timeout is not None else min(gw.timeout, SWEEP_TIMEOUT_MAX))


def strategies_status(routes: dict[int, Route] | None = None,
                      timeout: float | None = None) -> dict:
    """`GET /api/strategies/status`: every running bot's /status, fetched concurrently.

    Each strategy gets status healthy (with the bot's open trades as `data`), error (the bot
    answered with an error), unreachable or timeout, plus its upstream address.
    """
    table = _routes(routes)
    live = [r for _, r in sorted(table.items()) if r.routable]
    per_bot = _sweep_timeout(timeout)
    results = fetch_all([(r.strategy_id, _client(r, per_bot)) for r in live], "status",
                        timeout=per_bot)
    strategies: dict[str, dict] = {}
    for route, result in zip(live, results, strict=True):
        entry = {"name": route.name, "upstream": f"http://{route.upstream}",
                 "response_time_ms": round(result.elapsed * 1000, 1)}
        if result.ok:
            entry.update(status="healthy", data=result.data)
        else:
            entry.update(status=_state(result.error), error=result.error.message,
                         http_status=http_status(result.error))
        strategies[str(route.strategy_id)] = entry
    for sid, route in sorted(table.items()):
        if not route.routable:
            strategies[str(sid)] = {"name": route.name, "status": "not_running",
                                    "runtime_status": route.status, "upstream": None}
    return {
        "gateway_status": "running",
        "total_strategies": len(live),
        "strategies": strategies,
        "timestamp": isoformat(utcnow()),
    }


def _state(error: BotError | None) -> str:
    code = http_status(error) if error else 502
    if code == 504:
        return "timeout"
    if error is not None and error.status_code is not None:
        return "error"
    return "unreachable"


def gateway_health(routes: dict[int, Route] | None = None, timeout: float | None = None,
                   probe_gateway: bool = False) -> dict:
    """`GET /api/gateway/health`: how many routed bots answer ping, as a 0–100 score.

    With probe_gateway=True (callers outside the gateway process) it also checks that the
    gateway itself answers on its port.
    """
    settings = current_settings().system
    table = _routes(routes)
    live = [r for _, r in sorted(table.items()) if r.routable]
    per_bot = min(_sweep_timeout(timeout), settings.gateway.connect_timeout + 1.0)
    results = fetch_all([(r.strategy_id, _client(r, per_bot)) for r in live], "ping",
                        timeout=per_bot)
    healthy = sum(1 for r in results if r.ok and isinstance(r.data, dict)
                  and r.data.get("status") == "pong")
    total = len(live)
    score = round(healthy * 100 / total, 1) if total else 100.0
    body = {
        "status": "healthy" if score >= settings.monitoring.gateway_alert_below else "degraded",
        "health_score": score,
        "healthy_strategies": healthy,
        "total_strategies": total,
        "unhealthy": [{"strategy_id": r.key, "error": r.error.message} for r in results
                      if not r.ok],
        "gateway_port": settings.gateway.port,
        "routes_loaded": total,
        "checked_at": isoformat(utcnow()),
    }
    if probe_gateway:
        body["gateway_reachable"] = _gateway_answers(settings.gateway.port)
        if not body["gateway_reachable"]:
            body["status"] = "down"
    return body


def _gateway_answers(port: int) -> bool:
    """True when this host's gateway answers /health on its port."""
    try:
        return requests.get(f"http://127.0.0.1:{port}/health", timeout=1.0).status_code == 200
    except requests.RequestException:
        return False


def gateway_status() -> dict:
    """The web app's `GET /api/v1/strategies/gateway/status` (the design's shape)."""
    routes = load_routes()
    health = gateway_health(routes, probe_gateway=True)
    statuses = strategies_status(routes)
    return {
        "gateway": health,
        "strategies": statuses,
        "summary": {
            "total_strategies": health["total_strategies"],
            "healthy_strategies": health["healthy_strategies"],
            "health_percentage": health["health_score"],
        },
    }


def reload_routes(table=None) -> dict:
    """Reload this process's route table (if given) and tell every gateway process to reload."""
    count = table.reload() if table is not None else len(load_routes())
    routable = len(table.routable()) if table is not None else None
    published = publish_route_change()
    return {
        "status": "success",
        "routes_count": count,
        "routable": routable,
        "published": published,
        "message": f"Routes reloaded ({count} strategies)"
                   + ("" if published else "; other gateway workers will follow within "
                      f"{current_settings().system.gateway.route_cache_seconds:g} s"),
    }


def check_drift(redis_client=None) -> dict:
    """Compare the routes with the live bots and the gateway workers; repair and log drift.

    Drift found:
    - a route whose bot does not answer ping (dead bot still marked running), or answers but
      rejects the route's credentials (another process took the port);
    - a strategy marked stopped whose port still answers (an orphan bot);
    - a gateway worker whose route table differs from the database.
    Repair: every gateway worker is told to reload (stale tables), and each problem is logged
    and recorded as a strategy event so the supervisor's reconcile pass and the owner see it.
    """
    client = redis_client or redis_store.client
    routes = load_routes()
    live = [r for _, r in sorted(routes.items()) if r.routable]
    per_bot = min(_sweep_timeout(None), current_settings().system.gateway.connect_timeout + 1)
    pings = fetch_all([(r.strategy_id, _client(r, per_bot)) for r in live], "show_config",
                      timeout=per_bot)
    problems: list[dict] = []
    for route, result in zip(live, pings, strict=True):
        if result.ok:
            continue
        err = result.error
        kind = "credentials_rejected" if err.status_code in (401, 403) else "bot_not_answering"
        problems.append({"strategy_id": route.strategy_id, "kind": kind,
                         "upstream": route.upstream, "error": err.message})
    orphans = [r for _, r in sorted(routes.items())
               if not r.routable and r.port and r.status == "stopped"]
    orphan_pings = fetch_all([(r.strategy_id, _client(r, per_bot)) for r in orphans], "ping",
                             timeout=per_bot)
    for route, result in zip(orphans, orphan_pings, strict=True):
        if result.ok:
            problems.append({"strategy_id": route.strategy_id, "kind": "orphan_bot",
                             "upstream": route.upstream,
                             "error": f"{route.label} is stopped but its port still answers"})
    expected = fingerprint(routes)
    stale = []
    try:
        for key in client.scan_iter(match=FINGERPRINT_PREFIX + "*", count=200):
            value = client.get(key)
            worker = key.decode() if isinstance(key, bytes) else key
            value = value.decode() if isinstance(value, bytes) else value
            if value and value != expected:
                stale.append(worker[len(FINGERPRINT_PREFIX):])
    except Exception as exc:  # noqa: BLE001 - Redis down: the bot checks still count
        log.warning("drift check: cannot read gateway fingerprints: %s", exc)
    repaired = False
    if stale or problems:
        repaired = publish_route_change(redis_client=client)
    known = _previous_problems(client)
    for problem in problems:
        log.warning("gateway drift: strategy %s %s at %s: %s", problem["strategy_id"],
                    problem["kind"], problem["upstream"], problem["error"])
        if (problem["strategy_id"], problem["kind"]) not in known:
            _record(problem)  # one event when a problem appears, not one per check
    if stale:
        log.warning("gateway drift: %d worker(s) had stale routes (%s); reload published",
                    len(stale), ", ".join(stale))
    report = {"checked_at": isoformat(utcnow()), "routes": len(live),
              "problems": problems, "stale_workers": stale, "reload_published": repaired}
    try:
        client.set(DRIFT_KEY, json.dumps(report), ex=3600)
    except Exception:  # noqa: BLE001, S110 - the report is also returned and logged
        pass
    return report


def _previous_problems(client) -> set[tuple[int, str]]:
    """(strategy id, kind) of the problems the last drift check found."""
    try:
        raw = client.get(DRIFT_KEY)
        problems = json.loads(raw)["problems"] if raw else []
        return {(p["strategy_id"], p["kind"]) for p in problems}
    except Exception:  # noqa: BLE001 - no previous report: every problem is new
        return set()


def _record(problem: dict) -> None:
    """A StrategyEvent for a drift problem (kind 'route_drift')."""
    try:
        db.session.add(StrategyEvent(strategy_id=problem["strategy_id"], kind="route_drift",
                                     message=f"{problem['kind']}: {problem['error']}"[:2000]))
        db.session.commit()
    except Exception as exc:  # noqa: BLE001 - logging the drift matters more than the event
        db.session.rollback()
        log.warning("drift check: could not record event: %s", exc)
