"""Signals: every message a bot sends, graded and kept forever."""

from __future__ import annotations

from app.clock import utcnow
from app.extensions import db


class Signal(db.Model):
    __tablename__ = "signals"
    __table_args__ = (
        db.Index("ix_signals_strategy_id_id", "strategy_id", "id"),
        db.Index("ix_signals_pair_id", "pair", "id"),
    )

    id = db.Column(db.Integer, primary_key=True)
    strategy_id = db.Column(db.Integer, db.ForeignKey("strategies.id"), nullable=False)
    dedupe_key = db.Column(db.String(64), unique=True, nullable=False)
    message_type = db.Column(db.String(32), nullable=False)
    pair = db.Column(db.String(64), nullable=False, default="")
    action = db.Column(db.String(32), nullable=False, default="")
    direction = db.Column(db.String(8), nullable=False, default="long")
    rate = db.Column(db.Float)
    profit_ratio = db.Column(db.Float)
    profit_amount = db.Column(db.Float)
    trade_id = db.Column(db.Integer)
    open_date = db.Column(db.DateTime)
    close_date = db.Column(db.DateTime)
    enter_tag = db.Column(db.String(255))
    exit_reason = db.Column(db.String(255))
    indicators = db.Column(db.JSON, nullable=False, default=dict)
    strength_raw = db.Column(db.Float)
    strength_level = db.Column(db.String(16), nullable=False, default="ignore")
    priority = db.Column(db.String(8), nullable=False, default="IGNORE")
    payload = db.Column(db.JSON, nullable=False, default=dict)
    received_at = db.Column(db.DateTime, nullable=False, default=utcnow, index=True)
    # Outbox: set once the signal has been published to live pages / handed to notifications.
    published_at = db.Column(db.DateTime, index=True)
    dispatched_at = db.Column(db.DateTime, index=True)

    strategy = db.relationship("Strategy")
