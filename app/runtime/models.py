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


class StrategySource(db.Model):
    """A strategy file of the library as the main host has it: a supervisor on another host
    writes it into its own strategies folder before a bot starts (no shared disk)."""

    __tablename__ = "strategy_sources"

    file_name = db.Column(db.String(255), primary_key=True)
    content = db.Column(db.Text, nullable=False)
    sha256 = db.Column(db.String(64), nullable=False)
    updated_at = db.Column(db.DateTime, nullable=False, default=utcnow)


class TradeDbCopy(db.Model):
    """The latest copy of a bot's trade database (zlib-compressed SQLite file), taken by its
    supervisor every few minutes and when the bot stops: a bot that moves or is rescheduled
    after its host was lost starts on its new host from it."""

    __tablename__ = "trade_db_copies"

    strategy_id = db.Column(db.Integer, db.ForeignKey("strategies.id", ondelete="CASCADE"),
                            primary_key=True)
    host = db.Column(db.String(255), nullable=False)
    taken_at = db.Column(db.DateTime, nullable=False, default=utcnow)
    size = db.Column(db.Integer, nullable=False)
    data = db.Column(db.LargeBinary, nullable=False)
