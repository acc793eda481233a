"""Exchange proxies and their health checks."""

from __future__ import annotations

from app.clock import utcnow
from app.extensions import db


class Proxy(db.Model):
    __tablename__ = "proxies"

    id = db.Column(db.Integer, primary_key=True)
    name = db.Column(db.String(64), unique=True, nullable=False)
    url = db.Column(db.String(255), nullable=False)
    group = db.Column(db.String(64), index=True)  # failover moves within a group
    enabled = db.Column(db.Boolean, nullable=False, default=True)
    status = db.Column(db.String(16), nullable=False, default="unknown")  # up|down|unknown
    consecutive_failures = db.Column(db.Integer, nullable=False, default=0)
    consecutive_successes = db.Column(db.Integer, nullable=False, default=0)
    last_latency_ms = db.Column(db.Integer)
    last_checked_at = db.Column(db.DateTime)
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow)


class ProxyCheck(db.Model):
    __tablename__ = "proxy_checks"

    id = db.Column(db.Integer, primary_key=True)
    proxy_id = db.Column(db.Integer, db.ForeignKey("proxies.id", ondelete="CASCADE"),
                         nullable=False, index=True)
    ok = db.Column(db.Boolean, nullable=False)
    latency_ms = db.Column(db.Integer)
    error = db.Column(db.Text, nullable=False, default="")
    checked_at = db.Column(db.DateTime, nullable=False, default=utcnow, index=True)
