"""The strategy status sweep against stand-in bots: scores, stalls, recoveries, caching."""

from __future__ import annotations

import json
import time

from sqlalchemy import select

from app.extensions import db, redis_store
from app.monitoring import bot_status
from app.monitoring.models import Alert, MetricSample
from app.strategies.models import Strategy, StrategyEvent
from tests.support.servers import free_port


def _fresh(strategy_id: int) -> Strategy:
    db.session.rollback()
    return db.session.get(Strategy, strategy_id, populate_existing=True)


def test_sweep_scores_every_bot_and_stores_it(make_strategy, standin):
    good = standin()
    stopped = standin(state="stopped")
    failing = standin(status_code=500)
    s_good = make_strategy(port=good.port)
    s_stopped = make_strategy(port=stopped.port)
    s_failing = make_strategy(port=failing.port)
    s_gone = make_strategy(port=free_port())  # nothing listens there
    s_idle = make_strategy(port=standin(loop_age=600).port)
    make_strategy(name="not-running", status="stopped", port=None)

    summary = bot_status.sweep_strategies()

    scores = {s.id: _fresh(s.id).health_score for s in (s_good, s_stopped, s_failing, s_gone,
                                                        s_idle)}
    assert scores == {s_good.id: 100, s_stopped.id: 80, s_failing.id: 70, s_gone.id: 60,
                      s_idle.id: 80}
    assert summary["total_strategies"] == 5
    assert summary["healthy_strategies"] == 3
    assert summary["error_strategies"] == 1
    assert summary["unreachable_strategies"] == 1
    assert _fresh(s_good.id).last_processed_at is not None

    cached = bot_status.cached_status(s_stopped.id)
    assert cached["data"]["state"] == "stopped"
    assert cached["deductions"] == [{"reason": "bot state is stopped", "points": 20}]
    assert bot_status.cached_summary()["average_health_score"] == 78.0
    assert redis_store.client.ttl(bot_status.STATUS_KEY.format(id=s_good.id)) > 0

    samples = db.session.scalars(select(MetricSample).where(MetricSample.kind == "strategy")).all()
    assert {s.strategy_id for s in samples} == set(scores)


def test_sweep_measures_each_bot_process_for_the_strategy_pages(make_strategy, standin):
    import os

    from app.monitoring import bot_usage

    here = make_strategy(port=standin().port, pid=os.getpid())
    elsewhere = make_strategy(port=standin().port, pid=os.getpid(), host="10.254.0.9")
    summary = bot_status.sweep_strategies()
    assert summary["measured_processes"] == 1  # only bots on this machine can be measured
    stored = bot_usage.stored_usage([here.id, elsewhere.id])
    assert set(stored) == {here.id}
    figures = stored[here.id]
    assert figures["pid"] == os.getpid() and figures["cpu_percent"] >= 0
    assert figures["memory_pss"] > 10 * 2**20 and figures["memory_rss"] >= figures["memory_pss"]
    ttl = redis_store.client.ttl(bot_usage.USAGE_KEY.format(id=here.id))
    assert 60 <= ttl <= bot_usage.usage_ttl()
    sample = db.session.scalars(select(MetricSample).where(
        MetricSample.kind == "strategy", MetricSample.strategy_id == here.id)).one()
    assert sample.data["memory_pss"] == figures["memory_pss"]
    assert sample.data["cpu_percent"] == figures["cpu_percent"]


def test_sweep_sends_the_bots_credentials(make_strategy, standin):
    strategy = make_strategy(port=0)
    bot = standin(username=strategy.api_username, password=strategy.api_password)
    strategy.port = bot.port
    db.session.commit()
    bot_status.sweep_strategies()
    assert _fresh(strategy.id).health_score == 100
    bot.config["password"] = "something-else"  # the bot answers 401: an error
    bot_status.sweep_strategies()
    assert _fresh(strategy.id).health_score == 70


def test_slow_bot_loses_points(make_strategy, standin):
    strategy = make_strategy(port=standin(delay=1.2).port)
    bot_status.sweep_strategies()
    assert _fresh(strategy.id).health_score == 95


def test_a_hung_bot_does_not_hold_up_the_sweep(make_strategy, standin, monitoring_settings):
    monitoring_settings(status_timeout=0.5)
    hung = make_strategy(port=standin(delay=5).port)
    fine = make_strategy(port=standin().port)
    started = time.monotonic()
    summary = bot_status.sweep_strategies()
    assert time.monotonic() - started < 3
    assert summary["timeout_strategies"] == 1, summary
    assert _fresh(hung.id).health_score == 80 - 0  # timeout: other non-healthy
    assert _fresh(fine.id).health_score == 100


def test_stall_is_marked_alerted_once_and_recovers(make_strategy, standin):
    bot = standin(candles_stop_at=time.time() - 10 * 60)  # 1m candles, none for 10 min
    strategy = make_strategy(port=bot.port)

    summary = bot_status.sweep_strategies()
    assert summary["newly_stalled"] == [strategy.id]
    row = _fresh(strategy.id)
    assert row.status == "stalled"
    assert "no new candle" in row.status_message
    assert row.health_score == 80
    alerts = db.session.scalars(select(Alert).where(Alert.kind == "bot_stalled")).all()
    assert len(alerts) == 1 and alerts[0].strategy_id == strategy.id
    assert "window 5.0 min" in alerts[0].message

    bot_status.sweep_strategies()  # still stalled: no second alert
    assert db.session.scalar(select(db.func.count(Alert.id)).where(
        Alert.kind == "bot_stalled")) == 1

    bot.config["candles_stop_at"] = None  # candles flow again
    summary = bot_status.sweep_strategies()
    assert summary["recovered"] == [strategy.id]
    row = _fresh(strategy.id)
    assert row.status == "running" and row.health_score == 100
    assert db.session.get(Alert, alerts[0].id, populate_existing=True).resolved_at is not None
    kinds = [e.kind for e in db.session.scalars(
        select(StrategyEvent).where(StrategyEvent.strategy_id == strategy.id)
        .order_by(StrategyEvent.id))]
    assert kinds == ["stalled", "recovered"]
    assert db.session.scalar(select(db.func.count(Alert.id)).where(
        Alert.kind == "bot_recovered")) == 1


def test_window_is_twice_the_timeframe_when_longer(make_strategy, standin, monitoring_settings):
    monitoring_settings(stall_minutes=1)
    # 5m candles, newest closed 8 minutes ago: inside 2 x 5m = 10 min, so not stalled...
    bot = standin(timeframe="5m", candles_stop_at=time.time() - 3 * 60)
    strategy = make_strategy(port=bot.port, timeframe="5m")
    bot_status.sweep_strategies()
    assert _fresh(strategy.id).status == "running"
    # ...while 1m candles stopped 3 minutes ago are past max(2 min, 1 min).
    one_minute = make_strategy(port=standin(candles_stop_at=time.time() - 3 * 60).port)
    bot_status.sweep_strategies()
    assert _fresh(one_minute.id).status == "stalled"
    assert _fresh(strategy.id).status == "running"


def test_a_young_bot_gets_its_window_to_start(make_strategy, standin):
    from app.clock import utcnow

    strategy = make_strategy(port=standin(candles_stop_at=time.time() - 3600).port,
                             started_at=utcnow())
    bot_status.sweep_strategies()
    assert _fresh(strategy.id).status == "running"


def test_stopped_or_unreachable_bots_are_not_called_stalled(make_strategy, standin):
    paused = make_strategy(port=standin(state="stopped",
                                        candles_stop_at=time.time() - 3600).port)
    gone = make_strategy(port=free_port())
    bot_status.sweep_strategies()
    assert _fresh(paused.id).status == "running"
    assert _fresh(gone.id).status == "running"


def test_stalled_bot_is_restarted_once_per_window(make_strategy, standin, monitoring_settings):
    from app.runtime import hosts

    monitoring_settings(restart_stalled=True)
    strategy = make_strategy(port=standin(candles_stop_at=time.time() - 3600).port)
    bot_status.sweep_strategies()
    commands = redis_store.client.lrange(hosts.commands_key("127.0.0.1"), 0, -1)
    assert len(commands) == 1 and b'"restart"' in commands[0]
    alert = db.session.scalar(select(Alert).where(Alert.kind == "bot_stalled"))
    assert "being restarted" in alert.message

    # The supervisor restarts it; the exchange is still frozen: stalled again, no 2nd restart.
    db.session.execute(db.update(Strategy).where(Strategy.id == strategy.id)
                       .values(status="running"))
    db.session.commit()
    bot_status.sweep_strategies()
    assert _fresh(strategy.id).status == "stalled"
    assert redis_store.client.llen(hosts.commands_key("127.0.0.1")) == 1


def test_a_steady_sweep_asks_a_bot_only_what_can_have_changed(make_strategy, standin):
    """First sweep: health, show_config, profit, pair_candles. The next one of the same process:
    health only — state and version are reused for 5 minutes, profit for 55 s, and no newer
    candle can have closed before the one after the newest (a 1 h bot: not for an hour)."""
    bot = standin(timeframe="1h", trades=(5, 3))
    strategy = make_strategy(port=bot.port, timeframe="1h", pid=4242)
    bot_status.sweep_strategies()
    assert sorted(bot.asked) == ["health", "pair_candles", "profit", "show_config"]
    first = bot_status.cached_status(strategy.id)
    assert first["summary"]["open_trades"] == 2 and first["summary"]["max_open_trades"] == 3
    assert first["max_open_trades"] == 3

    bot.asked.clear()
    bot_status.sweep_strategies()
    assert bot.asked == ["health"]
    again = bot_status.cached_status(strategy.id)
    assert again["data"]["last_candle_close"] == first["data"]["last_candle_close"]
    assert again["summary"] == first["summary"] and again["health_score"] == 100

    # A status cached by an older release (no max_open_trades): show_config is asked again.
    cached = bot_status.cached_status(strategy.id)
    del cached["max_open_trades"]
    redis_store.client.set(bot_status.STATUS_KEY.format(id=strategy.id), json.dumps(cached))
    bot.asked.clear()
    bot_status.sweep_strategies()
    assert bot.asked == ["health", "show_config"]
    assert bot_status.cached_status(strategy.id)["max_open_trades"] == 3

    # A restart is another process: everything is asked again.
    strategy = _fresh(strategy.id)
    strategy.pid = 4243
    db.session.commit()
    bot.asked.clear()
    bot_status.sweep_strategies()
    assert sorted(bot.asked) == ["health", "pair_candles", "profit", "show_config"]


def test_the_candle_is_asked_again_on_its_turn_or_when_it_nears_the_stall_window(
        make_strategy, standin):
    """A newer 1m candle has closed since the last sweep: it is asked on the bot's turn
    (candle_due_at), or before it when the reused candle is half a stall window old (5 min:
    150 s), so a stall is never judged on a reused answer."""
    bot = standin(timeframe="1m")
    strategy = make_strategy(port=bot.port, timeframe="1m")
    key = bot_status.STATUS_KEY.format(id=strategy.id)
    bot_status.sweep_strategies()

    def sweep_after(closed_ago: float, due_shift: float) -> list[str]:
        cached = bot_status.cached_status(strategy.id)
        cached["data"]["last_candle_close"] = time.time() - closed_ago
        cached["candle_due_at"] = time.time() + due_shift
        cached["summary_due_at"] = time.time() + 60
        redis_store.client.set(key, json.dumps(cached))
        bot.asked.clear()
        bot_status.sweep_strategies()
        return bot.asked

    assert sweep_after(120, +60) == ["health"]  # a newer one closed, not its turn: reused
    reused = bot_status.cached_status(strategy.id)["data"]["last_candle_close"]
    assert time.time() - reused > 119
    assert sweep_after(120, -1) == ["health", "pair_candles"]  # its turn
    assert time.time() - bot_status.cached_status(strategy.id)["data"]["last_candle_close"] < 60
    assert sweep_after(160, +60) == ["health", "pair_candles"]  # 160 s old: near the window
    assert sweep_after(1, -1) == ["health"]  # its turn, but no newer candle can have closed yet


def test_half_the_fleet_asks_profit_on_each_sweep():
    """A process's first ask puts odd ids half a period earlier: the fleet's asks spread."""
    def target(sid: int) -> bot_status.BotTarget:
        return bot_status.BotTarget(sid, f"b{sid}", "127.0.0.1", 1, "u", "p", "1m", "BTC/USDT",
                                    "running", None, None)

    now = time.time()
    first = [bot_status._next_due(target(i), 55, first=True) - now for i in range(1, 101)]
    assert sum(1 for d in first if d < 30) == 50 and sum(1 for d in first if d > 50) == 50
    later = [bot_status._next_due(target(i), 55, first=False) - now for i in range(1, 101)]
    assert min(later) > 54
