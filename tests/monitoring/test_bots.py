"""Monitoring with real FreqTrade bots (the shared demo bots of tests/bots.py).

- the status sweep scores the demo bots and reads their newest candle;
- a bot whose exchange (the simulator) stops serving candles becomes `stalled` within its
  window and recovers when candles return (a short window: stall_minutes 1 -> 2 x 1m = 120 s);
- the capacity API reports the bots' real memory and a bots-that-fit estimate that matches
  free memory / average bot memory within 10 %.
"""

from __future__ import annotations

import dataclasses
import time

import psutil
import pytest
import requests

pytestmark = pytest.mark.bots


def _row(strategy_id: int):
    from app.extensions import db
    from app.strategies.models import Strategy

    db.session.rollback()
    return db.session.get(Strategy, strategy_id, populate_existing=True)


@pytest.fixture
def short_stall_window(bots_app):
    """stall_minutes=1 on the bots app for one test (window = max(2 x 1m, 1 min) = 120 s)."""
    holder = bots_app.extensions["btcw_settings"]
    original = holder.settings
    system = original.system
    holder.settings = dataclasses.replace(original, system=dataclasses.replace(
        system, monitoring=dataclasses.replace(system.monitoring, stall_minutes=1)))
    yield 120
    holder.settings = original


def _klines(simulator: str, serving: bool) -> None:
    response = requests.post(f"{simulator}/_sim/klines", json={"serving": serving,
                                                                 "mode": "stale"}, timeout=5)
    assert response.status_code == 200, response.text


def _sweep_until(predicate, seconds: float, every: float = 5.0):
    """Sweep every few seconds until predicate(summary) holds; the last summary."""
    from app.monitoring.bot_status import sweep_strategies

    deadline = time.monotonic() + seconds
    while True:
        summary = sweep_strategies()
        if predicate(summary) or time.monotonic() > deadline:
            return summary
        time.sleep(every)


def test_sweep_scores_the_demo_bots(bots_ctx, demo_bots):
    from app.monitoring.bot_status import cached_status

    def analysed(_summary) -> bool:  # a bot just started may not have analysed a candle yet
        return all((cached_status(b.id) or {}).get("candle_age") is not None for b in demo_bots)

    summary = _sweep_until(analysed, 90)
    assert summary["total_strategies"] >= 2
    for bot in demo_bots:
        status = cached_status(bot.id)
        assert status["status"] == "healthy", status
        assert status["data"]["state"] == "running"
        assert status["health_score"] == 100, status["deductions"]
        # A fresh candle is under a minute old; a reused one (not the bot's turn) is younger
        # than half the stall window (5 min).
        assert status["candle_age"] is not None and status["candle_age"] < 150
        profit = status["summary"]  # from /profit (open = all − closed) and show_config
        assert profit["max_open_trades"] == _row(bot.id).max_open_trades
        assert 0 <= profit["open_trades"] <= profit["trade_count"]
        assert time.time() - status["data"]["last_process"] < 60
        assert _row(bot.id).health_score == 100
        assert _row(bot.id).last_processed_at is not None


@pytest.mark.stall
def test_bot_without_new_candles_stalls_and_recovers(bots_ctx, demo_bots, simulator,
                                                     short_stall_window):
    from app.extensions import db
    from app.monitoring.models import Alert

    bot = demo_bots[0]
    _sweep_until(lambda s: _row(bot.id).status == "running", 60)
    assert _row(bot.id).status == "running"
    frozen_at = time.monotonic()
    _klines(simulator, False)
    try:
        _sweep_until(lambda s: _row(bot.id).status == "stalled", short_stall_window + 60)
        stalled_after = time.monotonic() - frozen_at
        row = _row(bot.id)
        assert row.status == "stalled", row.status_message
        # Within the window (+ one candle, + sweep spacing), not before the window.
        assert stalled_after <= short_stall_window + 60 + 10
        assert row.health_score == 80
        alert = db.session.scalar(db.select(Alert).where(
            Alert.kind == "bot_stalled", Alert.strategy_id == bot.id,
            Alert.resolved_at.is_(None)))
        assert alert is not None and "no new candle" in alert.message
    finally:
        _klines(simulator, True)
        resumed_at = time.monotonic()
        _sweep_until(lambda s: _row(bot.id).status == "running", 120)
    recovered_after = time.monotonic() - resumed_at
    row = _row(bot.id)
    assert row.status == "running", row.status_message
    assert recovered_after < 90
    assert row.health_score == 100
    assert db.session.get(Alert, alert.id, populate_existing=True).resolved_at is not None


def test_capacity_reports_the_bots_real_memory(bots_ctx, bots_client, bots_api_token,
                                               demo_bots):
    from app.monitoring import capacity

    body = bots_client.get("/api/v1/system/capacity/detailed",
                           headers={"Authorization": f"Bearer {bots_api_token}"}).get_json()
    bots = body["resources"]["bots"]
    mine = {p["strategy_id"]: p for p in bots["processes"]}
    assert {b.id for b in demo_bots} <= set(mine)
    pss = 0
    for bot in demo_bots:
        row = _row(bot.id)
        assert mine[bot.id]["pid"] == row.pid
        real = psutil.Process(row.pid).memory_full_info()
        assert mine[bot.id]["pss"] == pytest.approx(real.pss, rel=0.1)
        assert mine[bot.id]["rss"] == pytest.approx(real.rss, rel=0.1)
        assert 80 * 2**20 < mine[bot.id]["pss"] < 1024 * 2**20  # a FreqTrade bot, not a stub
        pss += real.pss
    average = bots["memory_pss"] / bots["measured"]
    assert bots["average_bot_memory"] == pytest.approx(average, rel=0.01)
    if bots["measured"] == len(demo_bots):
        assert average == pytest.approx(pss / len(demo_bots), rel=0.1)
    expected_fit = capacity.host_memory()["available"] / average
    fit = body["resources"]["bots_that_fit"]
    assert fit["by_memory"] == pytest.approx(expected_fit, rel=0.1)
    assert body["capacity"]["bots_that_fit"] == min(fit["by_memory"], fit["by_ports"],
                                                     fit["by_slots"])
    assert body["capacity"]["running_strategies"] >= len(demo_bots)
    memory_advice = next(r for r in body["recommendations"] if r["action"] == "memory_headroom")
    assert f"About {fit['by_memory']} more bot" in memory_advice["message"]
