"""System alerts (bot crashed, gateway unhealthy, capacity, proxy down, backup failed).

An alert is stored first, then handed to the notifications pipeline through RQ. When Redis is
down the alert stays undispatched and `sweep_alerts()` (a periodic job) hands it on later.
"""

from __future__ import annotations

import logging

from redis.exceptions import RedisError
from rq import Retry
from sqlalchemy import select

from app.clock import utcnow
from app.extensions import db, redis_store
from app.monitoring.models import Alert

log = logging.getLogger(__name__)
SEVERITIES = ("info", "warning", "critical")


def raise_alert(kind: str, message: str, severity: str = "warning",
                strategy_id: int | None = None, source: str = "", dispatch: bool = True) -> Alert:
    """Record an alert and hand it to notifications (later, if Redis is down); with
    dispatch=False the caller delivers it itself (the watchdog, when the worker may be dead)."""
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}")
    alert = Alert(kind=kind, message=message, severity=severity, strategy_id=strategy_id,
                  source=source)
    db.session.add(alert)
    db.session.commit()
    log.warning("alert %s [%s]: %s", kind, severity, message)
    if dispatch:
        dispatch_alert(alert.id)
    return alert


def dispatch_alert(alert_id: int) -> bool:
    """Enqueue the notification job for an alert once; False if Redis is unavailable."""
    try:
        redis_store.queue("notifications").enqueue(
            "app.tasks.notifications.notify_alert", alert_id, job_id=f"alert-{alert_id}",
            job_timeout=120, retry=Retry(max=3, interval=[2, 10, 30]),  # idempotent per alert
        )
    except RedisError as exc:
        log.warning("alert %s not dispatched yet (Redis: %s)", alert_id, exc)
        return False
    db.session.execute(
        db.update(Alert).where(Alert.id == alert_id).values(dispatched_at=utcnow())
    )
    db.session.commit()
    return True


def sweep_alerts(limit: int = 500) -> int:
    """Dispatch alerts a Redis outage left behind; returns how many were handed on."""
    ids = db.session.scalars(
        select(Alert.id).where(Alert.dispatched_at.is_(None)).order_by(Alert.id).limit(limit)
    ).all()
    return sum(1 for alert_id in ids if dispatch_alert(alert_id))


def recent_alerts(limit: int = 20) -> list[Alert]:
    """The newest alerts first."""
    return list(db.session.scalars(select(Alert).order_by(Alert.id.desc()).limit(limit)))
