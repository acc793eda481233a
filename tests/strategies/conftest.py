"""Fixtures of the strategy tests: a private copy of the strategy library, ready strategies."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def library_dir(app, tmp_path, monkeypatch) -> Path:
    """A copy of user_data/strategies that the library functions use instead of the real one.

    Sits one level below tmp_path, so a test can check that nothing was written beside it.
    """
    folder = tmp_path / "library"
    shutil.copytree(ROOT / "user_data" / "strategies", folder,
                    ignore=shutil.ignore_patterns("__pycache__"))
    from app.strategies import library

    monkeypatch.setattr(library, "library_dir", lambda: folder.resolve())
    return folder


STRATEGY_SOURCE = '''
from freqtrade.strategy import IStrategy


class My_Strategy(IStrategy):
    timeframe = "1m"
    minimal_roi = {"0": 0.05}
    stoploss = -0.05

    def populate_indicators(self, dataframe, metadata):
        return dataframe

    def populate_entry_trend(self, dataframe, metadata):
        return dataframe

    def populate_exit_trend(self, dataframe, metadata):
        return dataframe
'''


def valid_payload(**overrides) -> dict:
    """A JSON body that creates a strategy from the bundled RSI_ETH class."""
    body = {
        "name": "rsi-eth-test",
        "strategy_class": "RSI_ETH",
        "strategy_file": "RSI_ETH.py",
        "exchange": "simulator",
        "timeframe": "1m",
        "pairs": ["ETH/USDT"],
        "stake_amount": "unlimited",
        "dry_run_wallet": 1000,
        "max_open_trades": 2,
        "strong_threshold": 0.8,
        "medium_threshold": 0.6,
        "weak_threshold": 0.4,
    }
    body.update(overrides)
    return body


@pytest.fixture
def api_headers(api_token) -> dict:
    return {"Authorization": f"Bearer {api_token}"}


@pytest.fixture
def strategy(app, library_dir):
    """One stopped strategy made through the service."""
    from app.strategies import service

    return service.create_strategy(valid_payload())
