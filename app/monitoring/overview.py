"""The overview: the one place that says how the whole system is.

`/health` (`system_health`), the detailed `GET /api/v1/system/health` (`detailed_health`, the
same core checks plus host, bots and gateway), the periodic gateway check and the System page's
panels. It sits on top of the measurements (system_status, bot_status, rq_status, capacity) and
the store below them; nothing in monitoring imports it.
"""

from __future__ import annotations

import logging
import time

from redis.exceptions import RedisError
from sqlalchemy import text

from app.extensions import db, redis_store
from app.monitoring import bot_status, rq_status, system_status
from app.monitoring.alerts import recent_alerts
from app.monitoring.gateway_status import gateway_health_summary
from app.runtime.control import live_hosts, registered_hosts
from app.runtime.hosts import HEARTBEAT_TTL
from app.system.settings import current_settings

log = logging.getLogger(__name__)

# ------------------------------------------------------------------------- core checks


def check_database() -> dict:
    """SELECT 1 on the database."""
    try:
        db.session.execute(text("SELECT 1"))
        return {"status": "ok"}
    except Exception as exc:  # noqa: BLE001 - any failure is the answer
        db.session.rollback()
        return {"status": "error", "error": f"{type(exc).__name__}: {exc}"[:300]}


def check_redis() -> dict:
    """PING Redis."""
    try:
        redis_store.client.ping()
        return {"status": "ok"}
    except Exception as exc:  # noqa: BLE001
        return {"status": "error", "error": f"{type(exc).__name__}: {exc}"[:300]}


def check_workers() -> dict:
    """At least one live RQ worker (a killed one counts as gone at once), and no job waiting in
    a queue longer than system.monitoring.queue_wait_limit (workers alive but not working)."""
    try:
        workers = rq_status.live_workers()
        oldest = rq_status.oldest_queued()
    except Exception as exc:  # noqa: BLE001
        return {"status": "error", "error": f"cannot list workers: {type(exc).__name__}"}
    wait = {"oldest_queued_seconds": oldest["seconds"], "oldest_queued_job": oldest["job"],
            "oldest_queued_queue": oldest["queue"]}
    if not workers:
        return {"status": "error", "error": "no RQ worker is running (start: flask worker)",
                **wait}
    limit = current_settings().system.monitoring.queue_wait_limit
    body = {"count": len(workers), "queues": sorted({q for w in workers for q in w.queue_names()}),
            **wait}
    if oldest["seconds"] > limit:
        return {"status": "error", **body,
                "error": f"job {oldest['job']} has waited {oldest['seconds']:.0f} s in the "
                         f"{oldest['queue']} queue (limit {limit} s): the workers are stuck "
                         f"or too few"}
    return {"status": "ok", **body}


def check_cron() -> dict:
    """The cron scheduler (`flask cron run`) is alive: a fresh heartbeat and its process."""
    status = rq_status.cron_status()
    if status["running"]:
        return {"status": "ok", "last_heartbeat": status.get("last_heartbeat")}
    return {"status": "error",
            "error": status.get("error") or "the cron scheduler's heartbeat is stale"}


def check_supervisors() -> dict:
    """Every registered bot supervisor (`flask supervisor run`, one per host) sent its
    heartbeat lately; a host leaves the register only when its supervisor stops cleanly."""
    live = {h.host for h in live_hosts()}
    registered = registered_hosts() | live
    hosts = {host: "ok" if host in live else "silent" for host in sorted(registered)}
    silent = [host for host, state in hosts.items() if state != "ok"]
    if not live:
        return {"status": "error", "hosts": hosts,
                "error": f"no bot supervisor heartbeat in the last {HEARTBEAT_TTL} s "
                         f"(start: flask supervisor run)"}
    if silent:
        return {"status": "error", "hosts": hosts,
                "error": f"no heartbeat in the last {HEARTBEAT_TTL} s from the supervisor of "
                         f"{', '.join(silent)}"}
    return {"status": "ok", "hosts": hosts}


def core_checks() -> dict:
    """Database, Redis and RQ workers: what every health answer starts from."""
    checks = {"database": check_database(), "redis": check_redis()}
    redis_up = checks["redis"]["status"] == "ok"
    for name, check in (("workers", check_workers), ("cron", check_cron),
                        ("supervisor", check_supervisors)):
        checks[name] = check() if redis_up else {"status": "error",
                                                 "error": "unknown: Redis is down"}
    return checks


def system_health() -> tuple[dict, bool]:
    """`/health`: database, Redis, RQ workers, cron and bot supervisor; (report, healthy)."""
    checks = core_checks()
    failing = [name for name, c in checks.items() if c["status"] != "ok"]
    report = {"status": "ok" if not failing else "error", "failing": failing, "checks": checks}
    return report, not failing


# ------------------------------------------------------------------------ detailed health


def detailed_health() -> tuple[dict, bool]:
    """`GET /api/v1/system/health`: host, database, Redis, workers, bots, gateway; (body, ok)."""
    core = core_checks()
    if core["redis"]["status"] == "ok":
        core["workers"]["cron"] = rq_status.cron_status()
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
    checks = {"host": host_block, **core, "bots": bots,
              "gateway": {**gateway, "status": gateway.get("status", "unknown")}}
    failing = [n for n in core if checks[n]["status"] != "ok"]
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
    if name == "health":
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
