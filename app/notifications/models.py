"""Notifications: one message per event, one delivery per channel, every attempt kept forever.

A Notification is what happened (a graded signal, a system alert, a digest, a test message),
rendered once. A NotificationDelivery is that message on one channel, with the policy's verdict
(`queued` to be sent, `batched` into a digest, `suppressed` with the reason) and then the outcome
(`sent` or `failed`). Every try is a DeliveryAttempt row, written *before* the request goes out,
so a worker that dies mid-send leaves an attempt with outcome `sending` behind (see dispatcher).
"""

from __future__ import annotations

from app.clock import utcnow
from app.extensions import db

DELIVERY_STATUSES = ("queued", "sent", "failed", "suppressed", "batched")
NOTIFICATION_KINDS = ("signal", "alert", "digest", "test", "consensus")
PRIORITIES = ("P0", "P1", "P2")
# An attempt: `sending` until the channel answered; `ok`; `error` (known not delivered, retried);
# `unknown` (the request may have reached the receiver: a worker died or the reply timed out).
ATTEMPT_OUTCOMES = ("sending", "ok", "error", "unknown")


class Notification(db.Model):
    __tablename__ = "notifications"

    id = db.Column(db.Integer, primary_key=True)
    kind = db.Column(db.String(16), nullable=False, default="signal")  # signal|alert|digest|test
    priority = db.Column(db.String(8), nullable=False)
    # One notification per signal and per alert: a duplicated job finds the existing one.
    signal_id = db.Column(db.Integer, db.ForeignKey("signals.id"), unique=True)
    alert_id = db.Column(db.Integer, db.ForeignKey("alerts.id"), unique=True)
    strategy_id = db.Column(db.Integer, db.ForeignKey("strategies.id"))
    pair = db.Column(db.String(64), index=True)
    title = db.Column(db.String(255), nullable=False, default="")
    body = db.Column(db.Text, nullable=False, default="")
    link = db.Column(db.String(512), nullable=False, default="")
    data = db.Column(db.JSON, nullable=False, default=dict)  # structured copy for webhooks/API
    render_error = db.Column(db.Text, nullable=False, default="")  # custom template problem
    # Set when the notification went out immediately on at least one external channel: the
    # global per-minute limit and the same-pair window count these.
    counted_at = db.Column(db.DateTime, index=True)
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow, index=True)

    deliveries = db.relationship("NotificationDelivery", back_populates="notification",
                                 order_by="NotificationDelivery.id",
                                 foreign_keys="NotificationDelivery.notification_id")


class NotificationDelivery(db.Model):
    __tablename__ = "notification_deliveries"
    __table_args__ = (
        db.Index("ix_notification_deliveries_status_scheduled_for", "status", "scheduled_for"),
        db.Index("ix_notification_deliveries_inbox", "channel_type", "read_at"),
    )

    id = db.Column(db.Integer, primary_key=True)
    notification_id = db.Column(
        db.Integer, db.ForeignKey("notifications.id", ondelete="CASCADE"), nullable=False,
        index=True,
    )
    channel = db.Column(db.String(32), nullable=False, index=True)  # the channel's name
    channel_type = db.Column(db.String(32), nullable=False, default="")
    status = db.Column(db.String(16), nullable=False, default="queued", index=True)
    reason = db.Column(db.Text, nullable=False, default="")  # why batched / suppressed / failed
    # "<notification id>:<channel>": one delivery per (notification, channel), ever.
    idempotency_key = db.Column(db.String(64), unique=True, nullable=False)
    digest_id = db.Column(db.Integer, db.ForeignKey("notifications.id"), index=True)
    attempts = db.Column(db.Integer, nullable=False, default=0)
    last_error = db.Column(db.Text, nullable=False, default="")
    scheduled_for = db.Column(db.DateTime, nullable=False, default=utcnow)
    # The claim: a worker owns the send until claimed_until (a lease); see dispatcher.claim().
    claimed_until = db.Column(db.DateTime)
    claim_token = db.Column(db.String(32))
    # Parts of a multi-URL channel already delivered (apprise URLs), skipped on a retry.
    parts_done = db.Column(db.JSON)
    sent_at = db.Column(db.DateTime)
    read_at = db.Column(db.DateTime)  # in-app inbox
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow)

    notification = db.relationship("Notification", back_populates="deliveries",
                                   foreign_keys=[notification_id])
    digest = db.relationship("Notification", foreign_keys=[digest_id])
    attempt_log = db.relationship("DeliveryAttempt", order_by="DeliveryAttempt.id")


class DeliveryAttempt(db.Model):
    __tablename__ = "delivery_attempts"

    id = db.Column(db.Integer, primary_key=True)
    delivery_id = db.Column(
        db.Integer, db.ForeignKey("notification_deliveries.id", ondelete="CASCADE"),
        nullable=False, index=True,
    )
    number = db.Column(db.Integer, nullable=False)
    outcome = db.Column(db.String(16), nullable=False, default="sending")
    status_code = db.Column(db.Integer)
    error = db.Column(db.Text, nullable=False, default="")
    retry_after = db.Column(db.Float)  # seconds the receiver asked us to wait (HTTP 429)
    duration_ms = db.Column(db.Integer)
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow)
    finished_at = db.Column(db.DateTime)

    @property
    def ok(self) -> bool:
        """True when this attempt delivered the message."""
        return self.outcome == "ok"
