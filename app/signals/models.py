"""Signals: every message a bot sends, graded and kept forever."""

from __future__ import annotations

from app.clock import utcnow
from app.extensions import db

# Message types that pair up: a mixin signal (strategy_msg) and the entry/exit order it became.
PAIRING_PREDICATE = "message_type IN ('strategy_msg', 'entry', 'exit')"


class Signal(db.Model):
    __tablename__ = "signals"
    __table_args__ = (
        db.Index("ix_signals_strategy_id_id", "strategy_id", "id"),
        db.Index("ix_signals_pair_id", "pair", "id"),
        # The receiver's pairing lookup (ingest.PAIRING_TYPES): the newest mixin signal or
        # entry/exit order of a strategy, pair and action. Partial, so fills, cancels and status
        # messages cost no extra index write.
        db.Index("ix_signals_pairing", "strategy_id", "pair", "action", "id",
                 sqlite_where=db.text(PAIRING_PREDICATE),
                 postgresql_where=db.text(PAIRING_PREDICATE)),
        db.Index("ix_signals_related_signal_id", "related_signal_id",
                 sqlite_where=db.text("related_signal_id IS NOT NULL"),
                 postgresql_where=db.text("related_signal_id IS NOT NULL")),
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
    # The signal this one was paired with on arrival: an entry/exit order's mixin signal, or a
    # mixin signal's order when the order's webhook came first (ingest._paired_insert). The pair is
    # one real signal, handed to notifications once. No foreign key: signals are never deleted,
    # and a self-reference would make SQLite scan the table for every row deleted in tests.
    related_signal_id = db.Column(db.Integer)
    # Outbox: set once the signal has been published to live pages / handed to notifications.
    published_at = db.Column(db.DateTime, index=True)
    dispatched_at = db.Column(db.DateTime, index=True)

    strategy = db.relationship("Strategy")


class SignalOutcome(db.Model):
    """What the market did after a signal: direction-aware forward returns after 1, 4 and 24
    candles of its timeframe, and the best and worst excursion within 24 candles."""

    __tablename__ = "signal_outcomes"

    signal_id = db.Column(db.Integer, db.ForeignKey("signals.id", ondelete="CASCADE"),
                          primary_key=True)
    strategy_id = db.Column(db.Integer, nullable=False, index=True)
    # pending (a horizon is still ahead) | done | unavailable (reason says why)
    status = db.Column(db.String(16), nullable=False, default="pending")
    reason = db.Column(db.Text, nullable=False, default="")
    base_price = db.Column(db.Float)
    return_1 = db.Column(db.Float)
    return_4 = db.Column(db.Float)
    return_24 = db.Column(db.Float)
    max_favourable = db.Column(db.Float)
    max_adverse = db.Column(db.Float)
    computed_at = db.Column(db.DateTime, nullable=False, default=utcnow)


class ConsensusSignal(db.Model):
    """Several strategies saying the same about one pair within a few candles: one signal that
    links them, with its own level (the members' best, raised) and its own outcome."""

    __tablename__ = "consensus_signals"

    id = db.Column(db.Integer, primary_key=True)
    pair = db.Column(db.String(64), nullable=False, index=True)
    direction = db.Column(db.String(8), nullable=False)  # up | down (what the price should do)
    action = db.Column(db.String(32), nullable=False)  # the members' action (enter_long, …)
    timeframe = db.Column(db.String(8), nullable=False)
    level = db.Column(db.String(16), nullable=False)
    priority = db.Column(db.String(8), nullable=False)
    rate = db.Column(db.Float, nullable=False)  # the newest member's rate
    signal_at = db.Column(db.DateTime, nullable=False)  # the newest member's candle
    strategy_ids = db.Column(db.JSON, nullable=False, default=list)
    member_ids = db.Column(db.JSON, nullable=False, default=list)
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow, index=True)
    notified_at = db.Column(db.DateTime)
    # its own outcome, like SignalOutcome's
    outcome_status = db.Column(db.String(16), nullable=False, default="pending")
    outcome_reason = db.Column(db.Text, nullable=False, default="")
    return_1 = db.Column(db.Float)
    return_4 = db.Column(db.Float)
    return_24 = db.Column(db.Float)


class ConsensusMember(db.Model):
    """A signal counted in a consensus (each signal in one at most)."""

    __tablename__ = "consensus_members"

    signal_id = db.Column(db.Integer, db.ForeignKey("signals.id", ondelete="CASCADE"),
                          primary_key=True)
    consensus_id = db.Column(db.Integer, db.ForeignKey("consensus_signals.id",
                                                       ondelete="CASCADE"),
                             nullable=False, index=True)
