"""Monitoring services shared by the jobs, pages, API and CLI.

- run-time settings kept in the SystemSetting table (they survive restarts);
- `track_level()`: the once-per-crossing memory behind capacity and gateway alerts;
- `publish_live()`: announce a fresh sample to open pages (Redis pub/sub);
- the gateway health check and the detailed `GET /api/v1/system/health`.
"""

from __future__ import annotations

import json
import logging
import time

from redis.exceptions import RedisError
from sqlalchemy import update

from app.clock import isoformat, utcnow
from app.extensions import db, redis_store
from app.monitoring.models import Alert
from app.system.models import SystemSetting
from app.system.settings import current_settings

log = logging.getLogger(__name__)

LIVE_CHANNEL = "btcw:monitoring:live"  # pub/sub: {"type": ..., "data": ...}
GATEWAY_HEALTH_KEY = "btcw:gateway:health"
LEVEL_RANK = {"ok": 0, "warning": 1, "critical": 2}


# ------------------------------------------------------------------------ stored settings


def get_setting(key: str, default=None):
    """A run-time setting from the SystemSetting table, or `default`."""
    row = db.session.get(SystemSetting, key)
    return default if row is None or row.value is None else row.value


def put_setting(key: str, value) -> None:
    """Store a run-time setting (insert or update) and commit."""
    row = db.session.get(SystemSetting, key)
    if row is None:
        db.session.add(SystemSetting(key=key, value=value))
    else:
        row.value = value
        row.updated_at = utcnow()
    db.session.commit()


# ----------------------------------------------------------------------- level crossings


def track_level(key: str, level: str, figure: float | None = None) -> tuple[str, str]:
    """Remember the alert level of `key` ("capacity", "gateway"); (previous, new) levels.

    Stored in the database, so a restart or a Redis flush neither repeats nor loses an alert.
    """
    setting = f"{key}.alert_state"
    previous = (get_setting(setting) or {}).get("level", "ok")
    if previous != level:
        put_setting(setting, {"level": level, "figure": figure,
                              "changed_at": isoformat(utcnow())})
    return previous, level


def rose(previous: str, new: str) -> bool:
    """True when the level went up (ok -> warning -> critical)."""
    return LEVEL_RANK[new] > LEVEL_RANK[previous]


def resolve_alerts(kind: str) -> int:
    """Mark the open alerts of a kind resolved; how many."""
    result = db.session.execute(
        update(Alert).where(Alert.kind == kind, Alert.resolved_at.is_(None))
        .values(resolved_at=utcnow()))
    db.session.commit()
    return result.rowcount or 0


# -------------------------------------------------------------------------------- live


def publish_live(kind: str, data: dict) -> bool:
    """Announce a fresh sample on LIVE_CHANNEL for open pages; False if Redis is down."""
    try:
        redis_store.client.publish(LIVE_CHANNEL, json.dumps({"type": kind, "data": data},
                                                            default=str))
        return True
    except RedisError:
        return False


# ----------------------------------------------------------------------------- gateway


def check_gateway() -> dict:
    """The periodic gateway check: its health, cached; an alert once per crossing below
    system.monitoring.gateway_alert_below (critical when the gateway does not answer)."""
    from app.gateway.service import gateway_health
    from app.monitoring.alerts import raise_alert

    settings = current_settings().system.monitoring
    health = gateway_health(probe_gateway=True)
    reachable = health.get("gateway_reachable", True)
    score = float(health.get("health_score") or 0) if reachable else 0.0
    health["effective_score"] = score
    health["timestamp"] = time.time()
    if not reachable:
        level = "critical"
    elif score < settings.gateway_alert_below:
        level = "warning"
    else:
        level = "ok"
    previous, level = track_level("gateway", level, score)
    health["alert_level"] = level
    if rose(previous, level):
        if not reachable:
            message = (f"The gateway does not answer on port {health.get('gateway_port')}: "
                       "no bot can be reached through it.")
        else:
            message = (f"Gateway health is {score:g} (below {settings.gateway_alert_below}): "
                       f"{health.get('healthy_strategies')} of "
                       f"{health.get('total_strategies')} bots answer.")
        raise_alert("gateway_health", message, "critical" if level == "critical" else "warning",
                    source="monitoring")
    elif level == "ok" and previous != "ok":
        resolve_alerts("gateway_health")
        raise_alert("gateway_recovered", f"Gateway health is back to {score:g}.", "info",
                    source="monitoring")
    try:
        redis_store.client.set(GATEWAY_HEALTH_KEY, json.dumps(health),
                               ex=max(2 * settings.gateway_health_interval, 60))
    except RedisError as exc:
        log.warning("gateway health not cached (Redis: %s)", exc)
    publish_live("gateway_health", health)
    return health


def cached_gateway_health() -> dict | None:
    """The last gateway check, if cached."""
    try:
        raw = redis_store.client.get(GATEWAY_HEALTH_KEY)
    except RedisError:
        return None
    return json.loads(raw) if raw else None


def gateway_health_summary() -> dict:
    """The design's gateway_health block: the cached check, else a live one (no alerting)."""
    health = cached_gateway_health()
    if health is None:
        try:
            from app.gateway.service import gateway_health

            health = gateway_health(probe_gateway=True)
        except Exception as exc:  # noqa: BLE001 - the page must render without a gateway
            log.warning("gateway health unavailable: %s", exc)
            return {"status": "unknown", "health_score": None, "error": str(exc)[:200]}
    keys = ("status", "health_score", "healthy_strategies", "total_strategies", "gateway_port",
            "routes_loaded", "gateway_reachable", "checked_at")
    return {k: health.get(k) for k in keys if k in health}


# ------------------------------------------------------------------------ detailed health


def detailed_health() -> tuple[dict, bool]:
    """`GET /api/v1/system/health`: host, database, Redis, workers, bots, gateway; (body, ok)."""
    from app.monitoring import bot_status, system_status
    from app.monitoring.rq_status import cron_status
    from app.system.health import check_database, check_redis, check_workers

    database, redis_ = check_database(), check_redis()
    workers = (check_workers() if redis_["status"] == "ok"
               else {"status": "error", "error": "unknown: Redis is down"})
    if redis_["status"] == "ok":
        workers["cron"] = cron_status()
    host = system_status.current_status(max_age=120)
    host_problems = [f"{name} {host[key]:.0f}%" for name, key in
                     (("memory", "memory_percent"), ("disk", "disk_percent"))
                     if (host.get(key) or 0) > 90]
    host_block = {"status": "warning" if host_problems else "ok", "problems": host_problems,
                  **{k: host.get(k) for k in ("hostname", "cpu_percent", "cpu_count",
                                              "memory_percent", "memory_available",
                                              "disk_percent", "uptime_seconds", "timestamp")}}
    summary = bot_status.cached_summary()
    if summary is None:
        bots = {"status": "unknown", "message": "no status sweep in the last minute"}
    else:
        trouble = (summary["unreachable_strategies"] + summary["error_strategies"]
                   + summary.get("timeout_strategies", 0) + summary["stalled_strategies"])
        bots = {"status": "ok" if not trouble else "warning", **summary}
    gateway = gateway_health_summary()
    gateway_ok = gateway.get("status") in ("healthy", "unknown") and gateway.get(
        "gateway_reachable", True)
    checks = {"host": host_block, "database": database, "redis": redis_, "workers": workers,
              "bots": bots, "gateway": {**gateway, "status": gateway.get("status", "unknown")}}
    failing = [n for n in ("database", "redis", "workers") if checks[n]["status"] != "ok"]
    warnings = [n for n in ("host", "bots") if checks[n]["status"] == "warning"]
    if not gateway_ok:
        warnings.append("gateway")
    status = "error" if failing else ("degraded" if warnings else "ok")
    body = {"status": status, "failing": failing, "warnings": warnings, "checks": checks,
            "timestamp": time.time()}
    return body, not failing


# ------------------------------------------------------------------------- system page


def _guarded(fn, what: str):
    """Call fn(); on failure an {"error": ...} the page shows instead of failing."""
    try:
        return fn()
    except RedisError as exc:
        return {"error": f"{what} unavailable: Redis does not answer ({exc})"}
    except Exception as exc:  # noqa: BLE001 - one broken panel must not break the page
        log.exception("system page: %s failed", what)
        return {"error": f"{what} unavailable: {type(exc).__name__}: {exc}"[:300]}


PANELS = ("health", "host", "workers", "jobs", "alerts")


def system_panel(name: str) -> dict:
    """The context of one System page panel: host, workers (and queues), jobs or alerts."""
    from app.monitoring import rq_status, system_status
    from app.monitoring.alerts import recent_alerts

    if name == "health":
        from app.system.health import system_health

        return {"health": system_health()[0]}
    if name == "host":
        return {"host": _guarded(lambda: system_status.current_status(max_age=120),
                                 "host status")}
    if name == "workers":
        return {"workers": _guarded(rq_status.workers, "workers"),
                "queues": _guarded(rq_status.queues, "queues")}
    if name == "jobs":
        return {"jobs": _guarded(rq_status.scheduled_jobs, "scheduled jobs"),
                "cron": _guarded(rq_status.cron_status, "cron scheduler")}
    if name == "alerts":
        return {"alerts": _guarded(lambda: recent_alerts(15), "alerts")}
    raise KeyError(name)


def system_page_context() -> dict:
    """Everything the System page shows besides the basic health checks."""
    context: dict = {}
    for name in PANELS[1:]:  # the System page computes "health" itself
        context.update(system_panel(name))
    return context
