"""The demo strategies that `flask up` seeds once and starts."""

from __future__ import annotations

from app.extensions import db
from app.strategies import demo
from app.strategies.models import Strategy


def test_seed_and_start_is_idempotent(app, library_dir, monkeypatch):
    from app.runtime import control

    started = []
    real_start = control.request_start

    def recording_start(strategy_id):
        started.append(strategy_id)
        return real_start(strategy_id)

    monkeypatch.setattr(control, "request_start", recording_start)
    line = demo.seed_and_start()
    assert line.startswith("Demo strategies: 5 created, 5 starting (MA_Cross_BTC, RSI_ETH,")
    rows = db.session.scalars(db.select(Strategy).order_by(Strategy.id)).all()
    assert [(r.name, r.strategy_class, r.exchange, r.timeframe, r.pairs) for r in rows] == [
        ("MA_Cross_BTC", "MA_Cross_BTC", "simulator", "1m", ["BTC/USDT"]),
        ("RSI_ETH", "RSI_ETH", "simulator", "1m", ["ETH/USDT"]),
        ("Custom_SOL", "Custom_SOL", "simulator", "1m", ["SOL/USDT"]),
        ("Bollinger_ADA", "Bollinger_ADA", "simulator", "1m", ["ADA/USDT"]),
        ("MACD_DOT", "MACD_DOT", "simulator", "1m", ["DOT/USDT"]),
    ]
    assert all(r.status == "starting" for r in rows) and len(started) == 5

    # Again: nothing created, nothing started twice.
    assert demo.seed_and_start() == "Demo strategies: 5 already running."
    assert len(started) == 5 and db.session.scalar(db.select(db.func.count(Strategy.id))) == 5


def test_a_deleted_demo_is_not_seeded_again_and_stopped_ones_start(app, library_dir,
                                                                   monkeypatch):
    from app.strategies import service

    monkeypatch.setattr(service, "run_command", lambda *_a, **_k: {})
    demo.seed_and_start()
    rsi = db.session.scalar(db.select(Strategy).where(Strategy.name == "RSI_ETH"))
    service.delete_strategy(rsi.id)
    line = demo.seed_and_start()
    assert "created" not in line and "4 starting" in line
    assert db.session.scalar(db.select(db.func.count(Strategy.id))
                             .where(Strategy.deleted_at.is_(None))) == 4


def test_a_missing_demo_class_is_reported(app, library_dir):
    (library_dir / "MACD_DOT.py").unlink()
    created, problems = demo.seed()
    assert len(created) == 4
    assert problems == ["MACD_DOT: class not found in MACD_DOT.py of the strategy library"]
