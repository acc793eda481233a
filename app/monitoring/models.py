"""Metric history (host, capacity, strategy samples) and alerts."""

from __future__ import annotations

from app.clock import utcnow
from app.extensions import db


class MetricSample(db.Model):
    __tablename__ = "metric_samples"
    __table_args__ = (db.Index("ix_metric_samples_kind_recorded_at", "kind", "recorded_at"),)

    id = db.Column(db.Integer, primary_key=True)
    kind = db.Column(db.String(16), nullable=False)  # system | capacity | strategy | gateway
    strategy_id = db.Column(db.Integer, db.ForeignKey("strategies.id", ondelete="CASCADE"))
    recorded_at = db.Column(db.DateTime, nullable=False, default=utcnow)
    data = db.Column(db.JSON, nullable=False, default=dict)


class Alert(db.Model):
    __tablename__ = "alerts"

    id = db.Column(db.Integer, primary_key=True)
    kind = db.Column(db.String(32), nullable=False)  # bot_crashed, gateway_health, capacity, ...
    severity = db.Column(db.String(16), nullable=False, default="warning")  # info|warning|critical
    source = db.Column(db.String(64), nullable=False, default="")
    strategy_id = db.Column(db.Integer, db.ForeignKey("strategies.id", ondelete="SET NULL"))
    message = db.Column(db.Text, nullable=False)
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow, index=True)
    resolved_at = db.Column(db.DateTime)
    dispatched_at = db.Column(db.DateTime, index=True)


class SystemPart(db.Model):
    """The last state the watchdog saw of one part of the control plane (worker, cron, …): the
    conditional UPDATE of `status` decides who raises the alert when several watchers see it."""

    __tablename__ = "system_parts"

    name = db.Column(db.String(64), primary_key=True)  # workers | cron | supervisor | redis
    status = db.Column(db.String(8), nullable=False, default="up")  # up | down
    since = db.Column(db.DateTime, nullable=False, default=utcnow)
    detail = db.Column(db.Text, nullable=False, default="")
