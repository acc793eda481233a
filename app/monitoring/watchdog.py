"""The control plane watches itself: a dead worker, cron, supervisor or Redis raises a P0 alert.

The alert cannot go the usual way (an RQ job for the worker) when the worker is what died, so the
watchdog runs inside two other long-lived processes — the cron scheduler and each bot
supervisor — and delivers its alerts itself: it decides the notification in-process (the in-app
inbox has it at once) and sends the immediate deliveries directly. Each watcher judges every part
but its own. A part counts as down after `system.monitoring.part_down_alert_after` seconds of
failing checks (a process that supervisord brings back in a second raises nothing); its return
is alerted too, on the same channels, with how long it was gone, and resolves the outage's
alert.

Several watchers see the same death: the `system_parts` row changes state with a conditional
UPDATE, and only the watcher whose UPDATE matched raises the alert. Notifications are decided once
per alert and each delivery is claimed before it is sent, so a worker that comes back and picks
up the same deliveries sends nothing twice. Jobs the dead worker was running are handed back to
RQ's recovery on every pass (`rq_status.recover_abandoned_jobs`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import timedelta

from redis.exceptions import RedisError
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from app.clock import utcnow
from app.extensions import db
from app.monitoring import rq_status
from app.monitoring.alerts import raise_alert
from app.monitoring.models import Alert, SystemPart
from app.monitoring.overview import core_checks
from app.notifications import dispatcher
from app.notifications import service as notifications
from app.notifications.models import Notification
from app.runtime import placement
from app.system.settings import current_settings

log = logging.getLogger(__name__)

PARTS = {"redis": "Redis", "workers": "The RQ workers", "cron": "The cron scheduler",
         "supervisor": "The bot supervisor"}
KIND_DOWN = "part_down"
KIND_BACK = "part_back"
INTERVAL = 5.0  # seconds between passes
PENDING_WINDOW = timedelta(hours=6)  # alerts older than this are left to the usual sweep


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


class Watchdog:
    """Judges the parts of the control plane from inside one of them (`watcher`)."""

    def __init__(self, watcher: str, clock: Callable[[], float] = time.monotonic):
        if watcher not in PARTS:
            raise ValueError(f"watcher must be one of {tuple(PARTS)}")
        self.watcher = watcher
        self.clock = clock
        self.failing_since: dict[str, float] = {}
        self._last_pass: float | None = None

    def maybe_run(self) -> None:
        """Run a pass when INTERVAL has gone by since the last one."""
        now = self.clock()
        if self._last_pass is None or now - self._last_pass >= INTERVAL:
            self._last_pass = now
            self.run()

    def run(self) -> list[Alert]:
        """One pass: judge each part, raise the alerts of changed states, deliver them, and hand
        back the jobs of dead workers. Returns the alerts this pass raised."""
        checks = core_checks()
        if checks["database"]["status"] != "ok":
            return []  # nowhere to record anything; /health names the database
        after = current_settings().system.monitoring.part_down_alert_after
        now = self.clock()
        raised = []
        for part in PARTS:
            if part == self.watcher:
                continue
            check = checks[part]
            if part != "redis" and checks["redis"]["status"] != "ok":
                continue  # unknown while Redis is down; Redis is the one to blame
            if check["status"] == "ok":
                self.failing_since.pop(part, None)
                alert = self._change(part, "up", "")
            else:
                first = self.failing_since.setdefault(part, now)
                if now - first < after:
                    continue
                alert = self._change(part, "down", check.get("error") or "failing")
            if alert is not None:
                raised.append(alert)
        if checks["redis"]["status"] == "ok":
            try:
                placement.mark_lost()  # bots of hosts without a heartbeat (see placement)
            except Exception:  # noqa: BLE001 - the rest of the pass still runs
                db.session.rollback()
                log.exception("lost hosts not checked")
        self.deliver_pending()
        if checks["redis"]["status"] == "ok":
            try:
                rq_status.recover_abandoned_jobs()
            except RedisError as exc:
                log.warning("abandoned jobs not checked (Redis: %s)", exc)
        return raised

    # ------------------------------------------------------------------ state changes

    def _row(self, part: str) -> SystemPart:
        row = db.session.get(SystemPart, part, populate_existing=True)
        if row is not None:
            return row
        db.session.add(SystemPart(name=part, status="up", since=utcnow(), detail=""))
        try:
            db.session.commit()
        except IntegrityError:  # another watcher created it meanwhile
            db.session.rollback()
        return db.session.get(SystemPart, part, populate_existing=True)

    def _change(self, part: str, status: str, detail: str) -> Alert | None:
        """Move the part to `status`; the alert when this watcher made the change."""
        row = self._row(part)
        if row.status == status:
            return None
        before, since, now = row.status, row.since, utcnow()
        result = db.session.execute(
            update(SystemPart).where(SystemPart.name == part, SystemPart.status == before)
            .values(status=status, since=now, detail=detail[:500])
            .execution_options(synchronize_session=False)
        )
        db.session.commit()
        if result.rowcount != 1:
            return None  # another watcher saw it first and raised the alert
        label = PARTS[part]
        if status == "down":
            return raise_alert(KIND_DOWN, f"{label} {'is' if part != 'workers' else 'are'} not "
                               f"working: {detail}", "critical", source=part, dispatch=False)
        db.session.execute(update(Alert).where(Alert.kind == KIND_DOWN, Alert.source == part,
                                               Alert.resolved_at.is_(None))
                           .values(resolved_at=now))
        db.session.commit()
        gone = _duration((now - since).total_seconds())
        # As urgent as the outage: whoever was woken by it learns on the same channels that
        # it is over.
        return raise_alert(KIND_BACK, f"{label} {'is' if part != 'workers' else 'are'} working "
                           f"again after {gone}.", "critical", source=part, dispatch=False)

    # ------------------------------------------------------------------ delivery

    def deliver_pending(self) -> int:
        """Decide and send the watchdog's alerts that have no notification yet; how many."""
        pending = db.session.scalars(
            select(Alert.id).outerjoin(Notification, Notification.alert_id == Alert.id)
            .where(Alert.kind.in_((KIND_DOWN, KIND_BACK)), Notification.id.is_(None),
                   Alert.created_at > utcnow() - PENDING_WINDOW)
            .order_by(Alert.id)
        ).all()
        delivered = 0
        for alert_id in pending:
            try:
                notification = notifications.notify_alert(alert_id)
            except (RedisError, TimeoutError) as exc:  # the policy lock lives in Redis
                log.warning("alert %s not delivered yet (%s); next pass", alert_id, exc)
                db.session.rollback()
                break
            db.session.execute(update(Alert).where(Alert.id == alert_id,
                                                   Alert.dispatched_at.is_(None))
                               .values(dispatched_at=utcnow()))
            db.session.commit()
            self._send_now(notification)
            delivered += 1
        return delivered

    @staticmethod
    def _send_now(notification: Notification) -> None:
        """Send the deliveries that are due now in this process (each claimed first)."""
        now = utcnow()
        for delivery in list(notification.deliveries):
            if delivery.status != "queued" or delivery.scheduled_for > now:
                continue  # the inbox is written already; batched or later ones wait their turn
            result = dispatcher.deliver(delivery.id)
            if result.outcome == "retry" and result.retry_at is not None:
                attempts = db.session.get(type(delivery), delivery.id).attempts
                dispatcher.enqueue_delivery(delivery.id, attempts, at=result.retry_at)
            log.info("watchdog delivery %s (%s): %s", delivery.id, delivery.channel,
                     result.outcome)
