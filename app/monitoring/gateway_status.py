"""The gateway as monitoring sees it: the periodic check (alerting once per crossing) and its
cached result, which the overview and the capacity figures show."""

from __future__ import annotations

import json
import logging
import time

from redis.exceptions import RedisError

from app.extensions import redis_store
from app.gateway.service import gateway_health
from app.monitoring.alerts import raise_alert
from app.monitoring.store import publish_live, resolve_alerts, rose, track_level
from app.system.settings import current_settings

log = logging.getLogger(__name__)

GATEWAY_HEALTH_KEY = "btcw:gateway:health"


def check_gateway() -> dict:
    """The periodic gateway check: its health, cached; an alert once per crossing below
    system.monitoring.gateway_alert_below (critical when the gateway does not answer)."""
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
    """The design's gateway_health block from the last gateway check (the monitoring job, every
    gateway_health_interval): a page never calls every bot; before the first check it says so."""
    health = cached_gateway_health()
    if health is None:
        return {"status": "unknown", "health_score": None,
                "error": "no gateway check yet (the monitoring job runs it every "
                         f"{current_settings().system.monitoring.gateway_health_interval} s)"}
    keys = ("status", "health_score", "healthy_strategies", "total_strategies", "gateway_port",
            "routes_loaded", "gateway_reachable", "checked_at")
    return {k: health.get(k) for k in keys if k in health}
