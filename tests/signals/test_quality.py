# ruff: noqa: F811 - the fixtures of test_outcomes are imported and used by name
"""Calibration from constructed data with known answers, the track record in notifications,
consensus across strategies, the candle chart's data (from a replayed CSV through the relay),
and the pages: the quality table and the chart with markers in a real browser."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from app.extensions import db
from app.notifications import messages
from app.notifications import service as notifications
from app.notifications.models import Notification
from app.signals import consensus, outcomes
from app.signals.models import ConsensusSignal, SignalOutcome
from app.strategies.models import Strategy, StrategyEvent
from tests.signals.test_outcomes import _close_at, _scored, _signal, replay, strategy  # noqa: F401

STEP = [(i / 100, 0.01 if i >= 50 else -0.01) for i in range(1, 101)]


def test_suggested_cut_points_land_where_the_data_says():
    report = outcomes.suggest_thresholds(STEP, {"strong": 90, "medium": 75, "weak": 60},
                                         min_signals=50, min_per_level=20)
    levels = report["levels"]
    # Signals at or above i/100 are right 51 / (101 - i) of the time (all from 0.50 up).
    assert levels["strong"]["threshold"] == 0.45 and levels["strong"]["n"] == 56
    assert levels["medium"]["threshold"] == 0.33 and levels["medium"]["n"] == 68
    assert levels["weak"]["threshold"] == 0.16 and levels["weak"]["n"] == 85
    strong = levels["strong"]
    assert strong["hit_rate"] == pytest.approx(51 / 56)
    assert strong["ci_low"] < strong["hit_rate"] < strong["ci_high"]
    unreachable = outcomes.suggest_thresholds(STEP, {"strong": 100, "medium": 99, "weak": 10},
                                              min_signals=50, min_per_level=60)
    assert unreachable["levels"]["strong"]["threshold"] is None
    assert "no cut-point reaches 100 %" in unreachable["levels"]["strong"]["reason"]
    few = outcomes.suggest_thresholds(STEP[:10], {"strong": 60, "medium": 55, "weak": 50},
                                      min_signals=50, min_per_level=5)
    assert few["levels"] == {} and "only 10 scored signals" in few["reason"]


def test_calibration_is_applied_for_new_signals_and_recorded(app, strategy, client, api_token,
                                                             system_settings):
    system_settings("signals", calibration=_calibration(min_signals=50, min_per_level=20,
                                                          strong_target=90, medium_target=75,
                                                          weak_target=60))
    headers = {"Authorization": f"Bearer {api_token}"}
    too_few = client.get(f"/api/v1/signals/calibration?strategy_id={strategy.id}",
                         headers=headers).get_json()
    assert too_few["levels"] == {} and "only 0 scored" in too_few["reason"]
    assert client.post("/api/v1/signals/calibration", json={"strategy_id": strategy.id},
                       headers=headers).status_code == 409
    _scored(strategy, STEP)
    outcomes.refresh_quality({strategy.id})  # what the outcome job does after scoring
    suggestion = client.get(f"/api/v1/signals/calibration?strategy_id={strategy.id}",
                            headers=headers).get_json()
    assert suggestion["levels"]["strong"]["threshold"] == 0.45
    applied = client.post("/api/v1/signals/calibration", json={"strategy_id": strategy.id},
                          headers=headers)
    assert applied.status_code == 200, applied.get_json()
    assert applied.get_json()["after"] == {"strong": 0.45, "medium": 0.33, "weak": 0.16}
    row = db.session.get(Strategy, strategy.id, populate_existing=True)
    assert (row.strong_threshold, row.medium_threshold, row.weak_threshold) == (0.45, 0.33, 0.16)
    event = db.session.scalars(select(StrategyEvent).where(
        StrategyEvent.kind == "thresholds_calibrated")).one()
    assert "0.45" in event.message and "100 scored signals" in event.message
    page = client.get(f"/strategies/{strategy.id}", headers=headers).get_data(as_text=True)
    assert 'id="calibration"' in page and "0.4500" in page
    for bad in ("strategy_id=abc", "strategy_id=1&horizon=7"):
        assert client.get(f"/api/v1/signals/calibration?{bad}",
                          headers=headers).status_code == 400
    assert client.get("/api/v1/signals/calibration?strategy_id=999999",
                      headers=headers).status_code == 404


def _calibration(**values):
    from config.loader import CalibrationSettings

    return CalibrationSettings(**values)


def test_notifications_carry_the_levels_track_record(app, strategy, system_settings):
    system_settings("signals", track_record_min=3)
    _scored(strategy, [(0.9, 0.01), (0.95, 0.02), (0.85, -0.01), (0.5, 0.01)])
    fresh = _signal(strategy, 77, "enter_long", 60_000 * 50_000, 101.0, strength=0.9)
    record = notifications.track_record(fresh, strategy)
    assert record == f"strong signals of {strategy.name}: 67 % right after 4 candles, n = 3"
    settings = app.extensions["btcw_settings"].settings.notifications
    body = messages.render_signal(fresh, strategy.name, settings, "http://x", record).body
    assert f"Track record: {record}" in body
    weak = _signal(strategy, 78, "enter_long", 60_000 * 50_001, 101.0, strength=0.1,
                   level="weak")
    assert notifications.track_record(weak, strategy) == ""  # too few weak ones scored


def test_three_strategies_agreeing_make_one_consensus(app, client, api_token, system_settings,
                                                     runner):
    system_settings("signals", consensus=_consensus(min_strategies=3, window_candles=3,
                                                    raise_levels=1))
    rows = [Strategy(name=f"c{n}", strategy_class="MA_Cross_BTC", strategy_file="x.py",
                     timeframe="1m", api_username="u", api_password="p", jwt_secret="j",
                     ws_token="w", webhook_token=f"t{n}") for n in range(4)]
    db.session.add_all(rows)
    db.session.commit()
    minute = (int(time.time()) // 60 - 10) * 60_000
    _signal(rows[0], 1, "enter_long", minute, 100.0, strength=0.5, level="weak")
    _signal(rows[1], 2, "enter_long", minute + 60_000, 100.5, strength=0.7, level="medium")
    _signal(rows[2], 3, "exit_long", minute + 60_000, 100.5)  # the other direction
    assert consensus.find() == []  # two agree, three needed
    third = _signal(rows[3], 4, "enter_long", minute + 2 * 60_000, 101.0, strength=0.65,
                    level="medium")
    created = consensus.find()
    assert len(created) == 1
    row = db.session.get(ConsensusSignal, created[0])
    assert (row.pair, row.direction, row.level, row.priority) == ("BTC/USDT", "up", "strong",
                                                                  "P0")
    assert row.strategy_ids == sorted([rows[0].id, rows[1].id, rows[3].id])
    assert row.rate == 101.0 and third.id in row.member_ids
    _signal(rows[2], 5, "enter_long", minute + 3 * 60_000, 101.0, strength=0.65,
            level="medium")
    assert consensus.find() == []  # the members are taken: no second consensus of them
    note = notifications.notify_consensus(row.id)
    assert note.kind == "consensus" and note.priority == "P0" and "3 strategies" in note.body
    assert notifications.notify_consensus(row.id) is None  # once
    headers = {"Authorization": f"Bearer {api_token}"}
    listed = client.get("/api/v1/signals/consensus", headers=headers).get_json()["consensus"]
    assert [c["id"] for c in listed] == [row.id] and listed[0]["notified"]
    page = client.get("/signals/?view=consensus", headers=headers).get_data(as_text=True)
    assert f'id="consensus-{row.id}"' in page and "c3" in page
    assert db.session.scalar(select(Notification.id).where(
        Notification.kind == "consensus")) == note.id
    assert client.get("/api/v1/signals/consensus?limit=0", headers=headers).status_code == 400
    # Scored like a signal; with no exchange answering, unavailable with the reason.
    assert consensus.score_pending() == 1
    db.session.refresh(row)
    assert row.outcome_status == "unavailable" and "exchange" in row.outcome_reason
    printed = runner.invoke(args=["signals", "consensus"]).output
    assert f"#{row.id}" in printed and "BTC/USDT" in printed and "strong" in printed


def _consensus(**values):
    from config.loader import ConsensusSettings

    return ConsensusSettings(**values)


def test_the_chart_has_the_csv_candles_and_the_signals_with_outcomes(app, replay, strategy,
                                                                     client, api_token):
    anchor, rows = replay
    minute = anchor - 60 * 60_000
    signal = _signal(strategy, 1, "enter_long", minute, _close_at(anchor, rows, minute))
    strategy.pairs = ["BTC/USDT"]
    db.session.commit()
    outcomes.compute()
    headers = {"Authorization": f"Bearer {api_token}"}
    chart = client.get(f"/api/v1/signals/chart?strategy_id={strategy.id}&candles=120",
                       headers=headers).get_json()
    assert chart["pair"] == "BTC/USDT" and not chart["error"]
    by_time = {c[0]: c for c in chart["candles"]}
    n = len(rows)
    # The CSV's candles (rescaled to the simulator's price level): the same moves.
    moved = by_time[minute + 60_000][4] / by_time[minute][4]
    assert moved == pytest.approx(rows[n - 59][3] / rows[n - 60][3], rel=1e-6)
    marker = next(m for m in chart["signals"] if m["id"] == signal.id)
    assert marker["time"] == minute and marker["level"] == "strong"
    assert marker["outcome"]["return_4"] == pytest.approx(
        db.session.get(SignalOutcome, signal.id).return_4)
    around = client.get(f"/api/v1/signals/chart?strategy_id={strategy.id}&signal_id="
                        f"{signal.id}", headers=headers).get_json()
    assert [h["time"] for h in around["horizons"]] == [minute + h * 60_000 for h in (1, 4, 24)]
    assert around["candles"][0][0] == minute - 10 * 60_000
    for bad in ("candles=5", "candles=abc", "signal_id=x"):
        answer = client.get(f"/api/v1/signals/chart?strategy_id={strategy.id}&{bad}",
                            headers=headers)
        assert answer.status_code == 400, bad


@pytest.mark.browser
def test_the_chart_and_the_quality_table_in_a_browser(app, replay, strategy, live_server,
                                                      browser, tmp_path):
    from tests.support.browser import logged_in_page

    anchor, rows = replay
    strategy.pairs = ["BTC/USDT"]
    db.session.commit()
    n = len(rows)
    for k, offset in enumerate((90, 70, 40, 20)):
        minute = anchor - offset * 60_000
        _signal(strategy, 10 + k, "enter_long" if k % 2 == 0 else "exit_long", minute,
                _close_at(anchor, rows, minute), strength=0.9 - k * 0.15,
                level=("strong", "medium", "weak", "weak")[k])
    outcomes.compute()
    tab = logged_in_page(browser, live_server, f"/strategies/{strategy.id}")
    tab.wait_for_function("() => { const c = document.querySelector('#candle-chart');"
                          " return c && c.dataset.loaded === '1'; }", timeout=20000)
    assert int(tab.get_attribute("#candle-chart", "data-markers")) == 4
    assert int(tab.get_attribute("#candle-chart", "data-candles")) >= 100
    shot = tab.locator("#signal-chart").screenshot(path=str(tmp_path / "chart.png"))
    assert len(shot) > 10_000, "the chart drew nothing"
    table = tab.inner_text("#quality-table")
    assert "strong" in table.lower() and "1" in table
    assert tab.errors == []
    assert n > 100
