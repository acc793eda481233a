"""Strategies (one FreqTrade dry-run bot each), their port allocations and lifecycle events."""

from __future__ import annotations

from app.clock import utcnow
from app.extensions import db

STATUSES = ("stopped", "starting", "running", "stopping", "error", "crashed", "stalled",
            "lost")


class Strategy(db.Model):
    __tablename__ = "strategies"
    # A name is unique among live strategies; a deleted one frees its name but keeps it (and
    # its signals) for history.
    __table_args__ = (
        db.Index("uq_strategies_live_name", "name", unique=True,
                 sqlite_where=db.text("deleted_at IS NULL"),
                 postgresql_where=db.text("deleted_at IS NULL")),
    )

    id = db.Column(db.Integer, primary_key=True)
    name = db.Column(db.String(64), nullable=False)
    description = db.Column(db.Text, nullable=False, default="")
    strategy_class = db.Column(db.String(128), nullable=False)
    strategy_file = db.Column(db.String(255), nullable=False)
    exchange = db.Column(db.String(32), nullable=False, default="simulator")
    timeframe = db.Column(db.String(8), nullable=False, default="1m")
    pairs = db.Column(db.JSON, nullable=False, default=list)
    stake_currency = db.Column(db.String(16), nullable=False, default="USDT")
    stake_amount = db.Column(db.String(32), nullable=False, default="unlimited")
    max_open_trades = db.Column(db.Integer, nullable=False, default=3)
    dry_run_wallet = db.Column(db.Float, nullable=False, default=1000.0)
    proxy_id = db.Column(db.Integer, db.ForeignKey("proxies.id", ondelete="SET NULL"))
    proxy_group = db.Column(db.String(64))  # failover picks another up proxy of this group
    strong_threshold = db.Column(db.Float, nullable=False, default=0.8)
    medium_threshold = db.Column(db.Float, nullable=False, default=0.6)
    weak_threshold = db.Column(db.Float, nullable=False, default=0.4)
    version_label = db.Column(db.String(32), nullable=False, default="v1")
    freqtrade_version = db.Column(db.String(32))  # NULL: the default FreqTrade release

    desired_state = db.Column(db.String(16), nullable=False, default="stopped")
    status = db.Column(db.String(16), nullable=False, default="stopped")
    status_message = db.Column(db.Text, nullable=False, default="")
    host = db.Column(db.String(64))
    port = db.Column(db.Integer)
    pid = db.Column(db.Integer)
    started_at = db.Column(db.DateTime)
    stopped_at = db.Column(db.DateTime)
    health_score = db.Column(db.Integer)
    last_processed_at = db.Column(db.DateTime)

    api_username = db.Column(db.String(64), nullable=False)
    api_password = db.Column(db.String(128), nullable=False)
    jwt_secret = db.Column(db.String(128), nullable=False)
    ws_token = db.Column(db.String(128), nullable=False)
    webhook_token = db.Column(db.String(128), nullable=False)

    created_at = db.Column(db.DateTime, nullable=False, default=utcnow)
    updated_at = db.Column(db.DateTime, nullable=False, default=utcnow, onupdate=utcnow)
    deleted_at = db.Column(db.DateTime)

    proxy = db.relationship("Proxy")

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None

    def __repr__(self) -> str:
        return f"<Strategy {self.id} {self.name} {self.status}>"


class PortAllocation(db.Model):
    """One row per port in use on a host; the unique key makes allocation atomic."""

    __tablename__ = "port_allocations"
    __table_args__ = (db.UniqueConstraint("host", "port", name="uq_port_allocations_host_port"),)

    id = db.Column(db.Integer, primary_key=True)
    host = db.Column(db.String(64), nullable=False)
    port = db.Column(db.Integer, nullable=False)
    strategy_id = db.Column(
        db.Integer, db.ForeignKey("strategies.id", ondelete="CASCADE"), unique=True, nullable=False
    )
    allocated_at = db.Column(db.DateTime, nullable=False, default=utcnow)


class StrategyEvent(db.Model):
    """Lifecycle history of a strategy: started, stopped, crashed, restarted, adopted, error."""

    __tablename__ = "strategy_events"

    id = db.Column(db.Integer, primary_key=True)
    strategy_id = db.Column(
        db.Integer, db.ForeignKey("strategies.id", ondelete="CASCADE"), nullable=False, index=True
    )
    kind = db.Column(db.String(32), nullable=False)
    message = db.Column(db.Text, nullable=False, default="")
    pid = db.Column(db.Integer)
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow, index=True)
