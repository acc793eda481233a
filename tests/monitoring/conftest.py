"""Fixtures of the monitoring tests: strategy rows pointing at stand-in bots, settings tweaks."""

from __future__ import annotations

from datetime import timedelta

import pytest

from app.clock import utcnow
from tests.support.standin_bots import StandinBot


@pytest.fixture
def make_strategy(app):
    """Create a Strategy row (as if its bot ran) with sensible defaults; returns the row."""
    from app.extensions import db
    from app.runtime.credentials import new_credentials
    from app.strategies.models import Strategy

    counter = {"n": 0}

    def make(**fields) -> Strategy:
        counter["n"] += 1
        values = {
            "name": f"mon-{counter['n']}", "strategy_class": "Standin",
            "strategy_file": "standin.py", "timeframe": "1m", "pairs": ["BTC/USDT"],
            "status": "running", "desired_state": "running", "host": "127.0.0.1",
            "started_at": utcnow() - timedelta(hours=1), **new_credentials(),
        }
        values.update(fields)
        strategy = Strategy(**values)
        db.session.add(strategy)
        db.session.commit()
        return strategy

    return make


@pytest.fixture
def standin():
    """Start stand-in bots: standin(**config) -> StandinBot; all stopped at the end."""
    bots: list[StandinBot] = []

    def start(**config) -> StandinBot:
        bot = StandinBot(**config)
        bots.append(bot)
        return bot

    yield start
    for bot in bots:
        bot.stop()


@pytest.fixture
def monitoring_settings(system_settings):
    """Override system.monitoring keys for one test: monitoring_settings(stall_minutes=1)."""
    return lambda **changes: system_settings("monitoring", **changes)
