"""FreqTrade upgrades: one row per upgrade job, with its steps as they happened."""

from __future__ import annotations

from app.clock import utcnow
from app.extensions import db


class FreqtradeUpgrade(db.Model):
    __tablename__ = "freqtrade_upgrades"

    id = db.Column(db.Integer, primary_key=True)
    target = db.Column(db.String(32), nullable=False)
    strategy_ids = db.Column(db.JSON, nullable=False, default=list)
    previous = db.Column(db.JSON, nullable=False, default=dict)  # strategy id -> version before
    # queued | installing | verifying | switching | done | failed | rolled_back
    status = db.Column(db.String(16), nullable=False, default="queued")
    steps = db.Column(db.JSON, nullable=False, default=list)  # [{at, step, detail, seconds}]
    downtime = db.Column(db.JSON, nullable=False, default=dict)  # strategy id -> seconds
    error = db.Column(db.Text, nullable=False, default="")
    requested_by = db.Column(db.String(64), nullable=False, default="")
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow, index=True)
    finished_at = db.Column(db.DateTime)
