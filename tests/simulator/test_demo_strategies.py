"""The demo strategy library on simulated candles: loads in FreqTrade, signals, reports strength."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from app.simulator.market import MarketModel, MarketSettings
from tests.simulator.conftest import FrozenClock

STRATEGIES_DIR = Path(__file__).resolve().parents[2] / "user_data" / "strategies"
DEMOS = {
    "MA_Cross_BTC": "BTC/USDT",
    "RSI_ETH": "ETH/USDT",
    "Custom_SOL": "SOL/USDT",
    "Bollinger_ADA": "ADA/USDT",
    "MACD_DOT": "DOT/USDT",
}


class RecordingDataProvider:
    """Stands in for FreqTrade's DataProvider: keeps what the strategy sends."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bool]] = []

    def send_msg(self, message: str, *, always_send: bool = False) -> None:
        self.sent.append((message, always_send))


def load_strategy(name: str, tmp_path: Path):
    from freqtrade.resolvers import StrategyResolver

    config = {
        "strategy": name,
        "strategy_path": str(STRATEGIES_DIR),
        "user_data_dir": tmp_path,
        "stake_currency": "USDT",
        "dry_run": True,
    }
    strategy = StrategyResolver.load_strategy(config)
    strategy.dp = RecordingDataProvider()
    return strategy


def candles(pair: str, count: int = 1000) -> pd.DataFrame:
    market = MarketModel(MarketSettings(seed=42, clock=FrozenClock()))
    series = market.candles(pair, "1m", limit=count + 1).slice(0, count)  # closed candles only
    return pd.DataFrame(
        {
            "date": pd.to_datetime(series.open_time, unit="ms", utc=True),
            "open": series.open,
            "high": series.high,
            "low": series.low,
            "close": series.close,
            "volume": series.volume,
        }
    )


@pytest.mark.parametrize("name", sorted(DEMOS))
def test_demo_strategy_signals_often_with_a_strength_in_its_tags(name, tmp_path):
    strategy = load_strategy(name, tmp_path)
    assert strategy.timeframe == "1m" and strategy.process_only_new_candles
    assert strategy.startup_candle_count <= 50  # bots start fast
    pair = DEMOS[name]
    frame = strategy.analyze_ticker(candles(pair), {"pair": pair})
    frame = frame.iloc[strategy.startup_candle_count :]
    entries = frame["enter_long"].fillna(0).astype(bool).to_numpy()
    exits = frame["exit_long"].fillna(0).astype(bool).to_numpy()
    hours = len(frame) / 60
    assert entries.sum() / hours >= 2 and exits.sum() / hours >= 2, (entries.sum(), exits.sum())
    signal_rows = frame[entries | exits]
    strength = signal_rows["signal_strength"]
    assert strength.between(0, 1).all() and strength.std() > 0.01
    tags = frame.loc[entries, "enter_tag"].tolist() + frame.loc[exits, "exit_tag"].tolist()
    assert all(" s=0." in tag or tag.endswith(" s=1.00") for tag in tags), tags[:5]


@pytest.mark.parametrize("name", sorted(DEMOS))
def test_demo_strategy_reports_new_signals_as_json_strategy_messages(name, tmp_path):
    strategy = load_strategy(name, tmp_path)
    pair = DEMOS[name]
    history = candles(pair)
    reported = 0
    for end in range(940, 1000):  # one analysis per new candle, as a bot does
        frame = strategy.analyze_ticker(history.iloc[:end].copy(), {"pair": pair})
        sent = strategy.dp.sent[reported:]
        reported = len(strategy.dp.sent)
        last = frame.iloc[-1]
        for raw, always_send in sent:
            assert always_send is False and len(raw) < 4096
            message = json.loads(raw)
            assert message["btcw"] == 1 and message["kind"] == "signal"
            assert message["strategy"] == name and message["pair"] == pair
            assert message["timeframe"] == "1m"
            assert message["candle"] == last["date"].isoformat()
            assert message["rate"] == pytest.approx(last["close"])
            assert 0 <= message["signal_strength"] <= 1
            action = message["action"]
            assert last[action] == 1
            tag_key = "enter_tag" if action.startswith("enter") else "exit_tag"
            assert message[tag_key] and " s=" not in message[tag_key]
            tag, _, tagged_strength = last[tag_key].partition(" s=")
            assert tag == message[tag_key]
            assert float(tagged_strength) == pytest.approx(message["signal_strength"], abs=0.006)
            assert set(message["indicators"]) <= set(strategy.btcw_indicators)
    assert reported >= 3, f"{name} reported {reported} signals in 60 minutes"


def test_the_mixin_reports_a_signal_once_and_any_signal_at_first_look(tmp_path):
    strategy = load_strategy("RSI_ETH", tmp_path)
    frame = pd.DataFrame(
        {
            "date": pd.date_range("2026-01-15 12:00", periods=4, freq="1min", tz="UTC"),
            "close": [10.0, 10.1, 10.2, 10.3],
            "enter_long": [0, 1, 1, 1],
            "exit_long": [np.nan] * 4,
            "enter_tag": ["", "rsi_oversold s=0.50", "rsi_oversold s=0.60", "rsi_oversold s=0.70"],
            "signal_strength": [0.0, 0.5, 0.6, 0.7],
            "rsi": [40, 25, 24, 23],
        }
    )
    first = strategy.btcw_new_signals(frame, {"pair": "ETH/USDT"})
    assert [m["action"] for m in first] == ["enter_long"]  # first look: reported
    assert first[0]["signal_strength"] == 0.7 and first[0]["enter_tag"] == "rsi_oversold"
    assert first[0]["indicators"] == {"rsi": 23.0}
    assert strategy.btcw_new_signals(frame, {"pair": "ETH/USDT"}) == []  # still on: not new
    frame.loc[3, "exit_long"] = 1
    frame.loc[3, "exit_tag"] = "rsi_overbought"
    again = strategy.btcw_new_signals(frame, {"pair": "ETH/USDT"})
    assert [m["action"] for m in again] == ["exit_long"]
    assert again[0]["exit_tag"] == "rsi_overbought" and "enter_tag" not in again[0]


def test_strength_tag_format():
    from btcw_signals import strength_tag  # the strategies folder is on sys.path after loading

    assert strength_tag("rsi_oversold", 0.834) == "rsi_oversold s=0.83"
    assert strength_tag("", 1.7) == "s=1.00"
    assert strength_tag(None, float("nan")) == ""
    assert strength_tag("tagged s=0.40", 0.9) == "tagged s=0.40"


@pytest.fixture(autouse=True)
def strategies_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(STRATEGIES_DIR))
