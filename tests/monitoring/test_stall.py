"""Stall detection: the window, the verdict, and a real bot whose exchange stops serving candles."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from app.monitoring import stall

NOW = 1_800_000_000.0  # a fixed unix time


def _ago(seconds: float) -> datetime:
    return datetime(1970, 1, 1) + timedelta(seconds=NOW - seconds)


@pytest.mark.parametrize(("timeframe", "seconds"), [
    ("1m", 60), ("5m", 300), ("15m", 900), ("1h", 3600), ("4h", 14400), ("1d", 86400),
    ("1w", 604800), ("1M", 2592000), ("30s", 30),
])
def test_timeframe_seconds(timeframe, seconds):
    assert stall.timeframe_seconds(timeframe) == seconds


@pytest.mark.parametrize("bad", ["", "m", "0m", "5x", "1.5h", None, "1mm"])
def test_bad_timeframe_is_refused(bad):
    with pytest.raises(ValueError, match="not a FreqTrade timeframe"):
        stall.timeframe_seconds(bad)


@pytest.mark.parametrize(("timeframe", "minutes", "window"), [
    ("1m", 5, 300),     # the configured 5 minutes is longer than 2 x 1m
    ("5m", 5, 600),     # 2 x 5m is longer
    ("1h", 5, 7200),
    ("1m", 1, 120),     # a short configured window: 2 x timeframe still applies
    ("1m", 0, 120),
])
def test_window_is_the_longer_of_two_timeframes_and_the_setting(timeframe, minutes, window):
    assert stall.stall_window(timeframe, minutes) == window


def test_candle_close_from_milliseconds_or_seconds():
    assert stall.candle_close_ts(1_700_000_000_000, "1m") == 1_700_000_060
    assert stall.candle_close_ts(1_700_000_000, "5m") == 1_700_000_300
    assert stall.candle_close_ts(0, "1m") is None
    assert stall.candle_close_ts(None, "1m") is None


VERDICTS = [
    # (case, state, candle closed seconds ago (None: nothing analysed), started ago, stalled)
    ("fresh candle", "running", 20, 3600, False),
    ("exactly at the window", "running", 300, 3600, False),
    ("past the window", "running", 301, 3600, True),
    ("young bot with old candles gets its window", "running", 3600, 60, False),
    ("young bot past its window", "running", 3600, 400, True),
    ("nothing analysed yet while starting", "running", None, 60, False),
    ("nothing analysed for a whole window", "running", None, 600, True),
    ("nothing known at all", "running", None, None, None),
    ("stopped bot is not judged", "stopped", 3600, 3600, None),
    ("unknown state is not judged", None, 3600, 3600, None),
]


@pytest.mark.parametrize(("case", "state", "candle_ago", "started_ago", "expected"), VERDICTS,
                         ids=[v[0] for v in VERDICTS])
def test_verdict(case, state, candle_ago, started_ago, expected):
    verdict = stall.judge(
        state=state, candle_close=None if candle_ago is None else NOW - candle_ago,
        started_at=None if started_ago is None else _ago(started_ago), timeframe="1m",
        stall_minutes=5, now=NOW)
    assert verdict.stalled is expected, verdict
    assert verdict.window == 300
    if expected:
        assert verdict.reason
