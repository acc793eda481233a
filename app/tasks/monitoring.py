"""Monitoring jobs (RQ entry points)."""

from __future__ import annotations


def sweep_alerts() -> int:
    """Hand on alerts that a Redis outage left undispatched."""
    from app.monitoring.alerts import sweep_alerts as sweep

    return sweep()
