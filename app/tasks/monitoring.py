"""Monitoring jobs (RQ entry points): thin wrappers over app/monitoring services.

Each returns a small JSON-able summary, which RQ keeps as the job result (the System page shows
the status of the newest run of each periodic job).
"""

from __future__ import annotations

from app.monitoring import alerts, bot_status, capacity, gateway_status, system_status


def sweep_alerts() -> int:
    """Hand on alerts that a Redis outage left undispatched."""
    return alerts.sweep_alerts()


def sample_system() -> dict:
    """Host status: measure, cache, push to live pages, keep the downsampled history."""
    status = system_status.sample_system()
    return {k: status[k] for k in ("cpu_percent", "memory_percent", "disk_percent")}


def sweep_strategies() -> dict:
    """Probe every running bot: health scores, stall detection, cached statuses."""
    return bot_status.sweep_strategies()


def check_gateway() -> dict:
    """Gateway health; an alert when it drops below system.monitoring.gateway_alert_below."""
    health = gateway_status.check_gateway()
    return {k: health.get(k) for k in ("status", "health_score", "effective_score",
                                       "alert_level")}


def record_capacity() -> dict:
    """A capacity sample into the 7-day history; an alert once per threshold crossing."""
    return capacity.record_capacity()
