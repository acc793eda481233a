"""The price model: determinism, aggregation, the partial candle, replay."""

from __future__ import annotations

import numpy as np
import pytest
import talib

from app.simulator.market import (
    DAY_MINUTES,
    INTERVAL_MINUTES,
    MINUTE_MS,
    MarketModel,
    MarketSettings,
    ReplaySeries,
)
from tests.simulator.conftest import FROZEN_NOW, FrozenClock

NOW_MS = int(FROZEN_NOW * 1000)
CURRENT_MINUTE_MS = NOW_MS // MINUTE_MS * MINUTE_MS


def model(seed: int = 42, **kwargs) -> MarketModel:
    return MarketModel(MarketSettings(seed=seed, clock=FrozenClock(), **kwargs))


def test_same_seed_same_prices_different_seed_different_prices():
    a = model(42).candles("BTC/USDT", "1m", limit=300)
    b = model(42).candles("BTC/USDT", "1m", limit=300)
    c = model(43).candles("BTC/USDT", "1m", limit=300)
    assert np.array_equal(a.close, b.close) and np.array_equal(a.volume, b.volume)
    assert not np.array_equal(a.close, c.close)


def test_a_minute_does_not_depend_on_the_request_or_on_what_was_computed_before():
    fresh = model()
    one = fresh.candles("ETH/USDT", "1m", start_ms=CURRENT_MINUTE_MS - 3 * DAY_MINUTES * MINUTE_MS)
    warmed = model()
    warmed.candles("ETH/USDT", "1d", limit=30)  # fills other caches first
    two = warmed.candles(
        "ETH/USDT", "1m", end_ms=int(one.open_time[-1]), limit=len(one), now_ms=NOW_MS
    )
    assert np.array_equal(one.open_time, two.open_time)
    assert np.array_equal(one.close, two.close)


def test_prices_are_continuous_across_days():
    market = model()
    midnight = (NOW_MS // MINUTE_MS // DAY_MINUTES) * DAY_MINUTES
    path = market.minute_path("SOL/USDT", midnight - 5, midnight + 5)
    tick = market.profiles["SOL/USDT"].tick_size
    assert np.allclose(path.open[1:], path.close[:-1], atol=tick * 1.01)


def test_default_pairs_sit_at_realistic_levels():
    market = model()
    levels = {
        "BTC/USDT": 97_000,
        "ETH/USDT": 3_400,
        "SOL/USDT": 180,
        "ADA/USDT": 0.75,
        "DOT/USDT": 6.5,
    }
    assert set(market.profiles) == set(levels)
    for pair, level in levels.items():
        price = market.last_price(pair)
        assert level * 0.6 < price < level * 1.6, (pair, price)


@pytest.mark.parametrize("interval", ["3m", "5m", "15m", "1h", "4h", "1d"])
def test_candles_aggregate_the_one_minute_path(interval):
    market = model()
    minutes = INTERVAL_MINUTES[interval]
    candles = market.candles("BTC/USDT", interval, limit=3)
    start = int(candles.open_time[0]) // MINUTE_MS
    ones = market.candles(
        "BTC/USDT", "1m", start_ms=start * MINUTE_MS, limit=minutes, now_ms=NOW_MS
    )
    assert len(ones) == minutes
    assert candles.open[0] == ones.open[0]
    assert candles.close[0] == ones.close[-1]
    assert candles.high[0] == ones.high.max()
    assert candles.low[0] == ones.low.min()
    assert candles.volume[0] == pytest.approx(ones.volume.sum())


def test_candles_are_well_formed():
    candles = model().candles("ADA/USDT", "1m", limit=1000)
    assert len(candles) == 1000
    assert np.all(np.diff(candles.open_time) == MINUTE_MS)
    assert np.all(candles.high >= np.maximum(candles.open, candles.close))
    assert np.all(candles.low <= np.minimum(candles.open, candles.close))
    assert np.all(candles.low > 0) and np.all(candles.volume >= 0)


def test_the_current_candle_is_partial_and_grows_with_time():
    clock = FrozenClock(float(CURRENT_MINUTE_MS // 1000))  # exactly at the minute's start
    market = MarketModel(MarketSettings(seed=42, clock=clock))
    at_open = market.candles("BTC/USDT", "1m", limit=2)
    assert at_open.open_time[-1] == CURRENT_MINUTE_MS
    assert at_open.close[-1] == at_open.open[-1] and at_open.volume[-1] == 0
    clock.advance(59)
    late = market.candles("BTC/USDT", "1m", limit=2)
    final = market.minute_path(
        "BTC/USDT", CURRENT_MINUTE_MS // MINUTE_MS, CURRENT_MINUTE_MS // MINUTE_MS + 1
    )
    assert late.open_time[-1] == CURRENT_MINUTE_MS
    assert 0 < late.volume[-1] < final.volume[0]
    # 55/60 of the way from the open to the final close
    expected = at_open.open[-1] + (final.close[0] - at_open.open[-1]) * 55 / 60
    assert late.close[-1] == pytest.approx(expected, abs=market.profiles["BTC/USDT"].tick_size)
    # the previous minute is complete and unchanged
    assert late.close[-2] == at_open.close[-2]


def test_no_candle_from_the_future_and_the_open_interval_candle_is_partial():
    market = model()
    hourly = market.candles("BTC/USDT", "1h", start_ms=NOW_MS - 3_600_000, limit=10)
    assert hourly.open_time[-1] == NOW_MS // 3_600_000 * 3_600_000
    assert market.candles("BTC/USDT", "1m", start_ms=NOW_MS + 120_000).open_time.size == 0
    assert hourly.close[-1] == market.last_price("BTC/USDT")


def test_weekly_candles_open_on_monday_and_three_day_candles_are_epoch_aligned():
    market = model()
    weeks = market.candles("BTC/USDT", "1w", limit=5)
    days = (weeks.open_time // MINUTE_MS // DAY_MINUTES).astype(int)
    assert all((day + 3) % 7 == 0 for day in days)  # 1970-01-05 (day 4) was a Monday
    three = market.candles("BTC/USDT", "3d", limit=5)
    assert all(int(t) // MINUTE_MS // DAY_MINUTES % 3 == 0 for t in three.open_time)


def test_regimes_swing_often_enough_for_one_minute_strategies():
    """Demo bots must signal within minutes: EMA crosses and RSI extremes every few minutes."""
    market = model()
    for pair in market.profiles:
        close = market.candles(pair, "1m", limit=1000).close[:-1]
        diff = talib.EMA(close, 4) - talib.EMA(close, 9)
        crosses = np.flatnonzero(np.diff(np.sign(diff[20:])) != 0)
        assert len(crosses) / (len(close) / 60) > 5, pair  # per hour
        assert np.diff(crosses).max() < 40, pair  # never silent for long
        rsi = talib.RSI(close, 5)[20:]
        assert (rsi < 30).sum() > 20 and (rsi > 70).sum() > 20, pair


def test_order_book_and_quote_agree():
    market = model()
    quote = market.quote("ETH/USDT")
    book = market.order_book("ETH/USDT", 20)
    assert book["bids"][0][0] == quote["bid"] and book["asks"][0][0] == quote["ask"]
    assert quote["bid"] < quote["ask"]
    bids, asks = [p for p, _ in book["bids"]], [p for p, _ in book["asks"]]
    assert bids == sorted(bids, reverse=True) and asks == sorted(asks)
    assert len(bids) == len(asks) == 20


def test_replay_ends_at_the_anchor_rescaled_and_ping_pongs(market_data):
    source = market_data / "UNITTEST_BTC-1m.csv"
    raw = ReplaySeries.from_csv(source)
    market = model(replays={"BTC/USDT": source}, anchor_ms=CURRENT_MINUTE_MS)
    n = len(raw.close)
    scale = 97_000 / raw.close[-1]
    last_minute = CURRENT_MINUTE_MS // MINUTE_MS - 1
    path = market.minute_path("BTC/USDT", last_minute - 2, last_minute + 3)
    tick = market.profiles["BTC/USDT"].tick_size
    # the file's last three rows end at the minute before the anchor, at the price level
    assert path.close[2] == pytest.approx(97_000, abs=tick)
    assert np.allclose(path.close[:3], raw.close[-3:] * scale, atol=tick)
    # then it plays backwards: the next minute is the last row reversed (continuous)
    assert path.open[3] == pytest.approx(path.close[2], abs=tick)
    assert path.close[3] == pytest.approx(raw.open[-1] * scale, abs=tick)
    # and a whole period later it is back where it was
    again = market.minute_path("BTC/USDT", last_minute + 2 * n, last_minute + 2 * n + 1)
    assert again.close[0] == pytest.approx(path.close[2], abs=tick)


def test_replay_of_a_short_file_loops_and_serves_any_interval(market_data):
    market = model(replays={"XRP/USDT": market_data / "XRP_ETH-1m.csv"})
    assert "XRP/USDT" in market.profiles  # a replayed pair is added to the pairs
    daily = market.candles("XRP/USDT", "1d", limit=10)
    assert len(daily) == 10 and np.all(daily.close > 0)


def test_replay_rejects_a_bad_csv(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp_ms,open,close\n1,2,3\n")
    with pytest.raises(ValueError, match="missing columns"):
        ReplaySeries.from_csv(bad)
