"""Monitoring jobs (RQ entry points): thin wrappers over app/monitoring services.

Each returns a small JSON-able summary, which RQ keeps as the job result (the System page shows
the status of the newest run of each periodic job).
"""

from __future__ import annotations


def sweep_alerts() -> int:
    """Hand on alerts that a Redis outage left undispatched."""
    from app.monitoring.alerts import sweep_alerts as sweep

    return sweep()


def sample_system() -> dict:
    """Host status: measure, cache, push to live pages, keep the downsampled history."""
    from app.monitoring.system_status import sample_system as sample

    status = sample()
    return {k: status[k] for k in ("cpu_percent", "memory_percent", "disk_percent")}


def sweep_strategies() -> dict:
    """Probe every running bot: health scores, stall detection, cached statuses."""
    from app.monitoring.bot_status import sweep_strategies as sweep

    return sweep()


def check_gateway() -> dict:
    """Gateway health; an alert when it drops below system.monitoring.gateway_alert_below."""
    from app.monitoring.gateway_status import check_gateway as check

    health = check()
    return {k: health.get(k) for k in ("status", "health_score", "effective_score",
                                       "alert_level")}


def record_capacity() -> dict:
    """A capacity sample into the 7-day history; an alert once per threshold crossing."""
    from app.monitoring.capacity import record_capacity as record

    return record()
