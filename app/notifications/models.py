"""Notifications: one message per event, one delivery per channel, every attempt kept."""

from __future__ import annotations

from app.clock import utcnow
from app.extensions import db

DELIVERY_STATUSES = ("queued", "sent", "failed", "suppressed", "batched")


class Notification(db.Model):
    __tablename__ = "notifications"

    id = db.Column(db.Integer, primary_key=True)
    kind = db.Column(db.String(16), nullable=False, default="signal")  # signal|alert|digest|test
    priority = db.Column(db.String(8), nullable=False)
    signal_id = db.Column(db.Integer, db.ForeignKey("signals.id"), index=True)
    alert_id = db.Column(db.Integer, db.ForeignKey("alerts.id"), index=True)
    strategy_id = db.Column(db.Integer, db.ForeignKey("strategies.id"))
    pair = db.Column(db.String(64))
    title = db.Column(db.String(255), nullable=False, default="")
    body = db.Column(db.Text, nullable=False, default="")
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow, index=True)

    deliveries = db.relationship("NotificationDelivery", back_populates="notification",
                                 order_by="NotificationDelivery.id",
                                 foreign_keys="NotificationDelivery.notification_id")


class NotificationDelivery(db.Model):
    __tablename__ = "notification_deliveries"

    id = db.Column(db.Integer, primary_key=True)
    notification_id = db.Column(
        db.Integer, db.ForeignKey("notifications.id", ondelete="CASCADE"), nullable=False,
        index=True,
    )
    channel = db.Column(db.String(32), nullable=False)
    status = db.Column(db.String(16), nullable=False, default="queued", index=True)
    reason = db.Column(db.Text, nullable=False, default="")
    idempotency_key = db.Column(db.String(64), unique=True, nullable=False)
    digest_id = db.Column(db.Integer, db.ForeignKey("notifications.id"))
    attempts = db.Column(db.Integer, nullable=False, default=0)
    last_error = db.Column(db.Text, nullable=False, default="")
    scheduled_for = db.Column(db.DateTime, nullable=False, default=utcnow, index=True)
    sent_at = db.Column(db.DateTime)
    read_at = db.Column(db.DateTime)  # in-app inbox
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow)

    notification = db.relationship("Notification", back_populates="deliveries",
                                   foreign_keys=[notification_id])
    attempt_log = db.relationship("DeliveryAttempt", order_by="DeliveryAttempt.id")


class DeliveryAttempt(db.Model):
    __tablename__ = "delivery_attempts"

    id = db.Column(db.Integer, primary_key=True)
    delivery_id = db.Column(
        db.Integer, db.ForeignKey("notification_deliveries.id", ondelete="CASCADE"),
        nullable=False, index=True,
    )
    number = db.Column(db.Integer, nullable=False)
    ok = db.Column(db.Boolean, nullable=False)
    status_code = db.Column(db.Integer)
    error = db.Column(db.Text, nullable=False, default="")
    duration_ms = db.Column(db.Integer)
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow)


class ChannelConfig(db.Model):
    """A channel configured from the settings page (config/notifications.yml holds the rest)."""

    __tablename__ = "notification_channels"

    id = db.Column(db.Integer, primary_key=True)
    name = db.Column(db.String(32), unique=True, nullable=False)
    kind = db.Column(db.String(32), nullable=False)
    enabled = db.Column(db.Boolean, nullable=False, default=True)
    settings = db.Column(db.JSON, nullable=False, default=dict)
    updated_at = db.Column(db.DateTime, nullable=False, default=utcnow, onupdate=utcnow)
