"""Fixtures for the market simulator: a frozen, adjustable clock and a simulator app on it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from app.simulator.server import create_simulator_app

# 2026-01-15 (a Thursday) 12:34:30 UTC: half-way through a minute.
FROZEN_NOW = datetime(2026, 1, 15, 12, 34, 30, tzinfo=UTC).timestamp()
MARKET_DATA = Path(__file__).resolve().parents[1] / "data" / "market-data"  # in the checkout


class FrozenClock:
    """A clock the test moves by hand (seconds since the epoch)."""

    def __init__(self, now: float = FROZEN_NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def sim_app(clock: FrozenClock):
    return create_simulator_app({"seed": 42, "clock": clock})


@pytest.fixture
def sim(sim_app):
    return sim_app.test_client()


@pytest.fixture
def market_data() -> Path:
    """Real candles kept in the checkout (tests/data/market-data/README.md says where from)."""
    return MARKET_DATA
