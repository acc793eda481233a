"""Notification jobs (RQ entry points on the `notifications` queue): thin wrappers over
app.notifications.service and dispatcher.

Each job first picks up a configuration saved meanwhile (the settings page bumps a version in
Redis), so channel and rule changes reach a long-running worker without a restart.
"""

from __future__ import annotations

import logging
import time

from app.clock import utcnow
from app.extensions import db
from app.notifications import dispatcher, service
from app.notifications.models import NotificationDelivery
from app.system.settings import refresh_if_changed

log = logging.getLogger(__name__)
QUEUE = "notifications"
EARLY_TOLERANCE_SECONDS = 5.0


def _current_config() -> None:
    refresh_if_changed()


def notify_signal(signal_id: int) -> int | None:
    """Decide and store the notification of a graded signal; the notification id or None."""
    _current_config()

    notification = service.notify_signal(signal_id)
    return notification.id if notification else None


def notify_alert(alert_id: int) -> int:
    """Decide and store the notification of a system alert; the notification id."""
    _current_config()

    return service.notify_alert(alert_id).id


def deliver(delivery_id: int) -> str:
    """Send one delivery once; schedule the next attempt when it is to be retried."""
    _current_config()

    result = dispatcher.deliver(delivery_id)
    if result.outcome == "skipped" and result.retry_at is not None:
        wait = (result.retry_at - utcnow()).total_seconds()
        if wait <= EARLY_TOLERANCE_SECONDS:  # picked up a moment early: wait, then send
            time.sleep(max(wait, 0))
            result = dispatcher.deliver(delivery_id)
    if result.outcome == "retry" and result.retry_at is not None:
        attempts = db.session.get(NotificationDelivery, delivery_id).attempts
        dispatcher.enqueue_delivery(delivery_id, attempts, at=result.retry_at)
    return f"{result.outcome}: {result.detail}" if result.detail else result.outcome


def send_digests() -> int:
    """Send one digest per channel of what was batched; how many digests."""
    _current_config()

    return len(service.send_digests())


def deliver_due() -> int:
    """Hand on queued deliveries that no job holds (P1 deadline, retries, interruptions)."""
    _current_config()

    return service.deliver_due()
