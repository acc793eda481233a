"""Signal outcomes against the market simulator replaying real candles: forward returns equal
the ones computed from the CSV itself, direction-aware, the same from the backfill; a pair the
exchange does not list is unavailable with the reason; quality figures and the information
coefficient on constructed data with known answers."""

from __future__ import annotations

import csv
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select
from werkzeug.serving import make_server

from app.extensions import db
from app.relay.core import Relay, RelayConfig, wsgi_app
from app.signals import outcomes
from app.signals.models import Signal, SignalOutcome
from app.simulator.server import create_simulator_app
from app.strategies.models import Strategy
from tests.support.servers import free_port

CSV = Path(__file__).resolve().parents[1] / "data" / "market-data" / "UNITTEST_BTC-1m.csv"


@pytest.fixture
def replay(app, system_settings):
    """The simulator replaying the CSV for BTC/USDT (file's last row = the minute before the
    anchor), on a free port the outcome job asks."""
    anchor = (int(time.time()) // 60 - 5) * 60_000
    sim = create_simulator_app({"pairs": ["BTC/USDT"], "replay": {"BTC/USDT": str(CSV)},
                                "anchor_ms": anchor})
    port = free_port()
    server = make_server("127.0.0.1", port, sim, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    system_settings("simulator", host="127.0.0.1", port=port)
    # Candles come through the exchange relay, as in production.
    relay = Relay(RelayConfig(exchanges={"simulator": f"http://127.0.0.1:{port}"}))
    relay.set_upstreams([("direct", "direct", None, "this host")])
    relay_port = free_port()
    relay_server = make_server("127.0.0.1", relay_port, wsgi_app(relay), threaded=True)
    threading.Thread(target=relay_server.serve_forever, daemon=True).start()
    system_settings("exchange_relay", enabled=True, host="127.0.0.1", port=relay_port)
    with open(CSV) as handle:
        rows = [(float(r["open"]), float(r["high"]), float(r["low"]), float(r["close"]))
                for r in csv.DictReader(handle)]
    yield anchor, rows
    relay_server.shutdown()
    server.shutdown()


@pytest.fixture
def strategy(app):
    row = Strategy(name="scored", strategy_class="MA_Cross_BTC", strategy_file="ma.py",
                   timeframe="1m", api_username="u", api_password="p", jwt_secret="j",
                   ws_token="w", webhook_token="t")
    db.session.add(row)
    db.session.commit()
    return row


def _signal(strategy, n: int, action: str, minute_ms: int, rate: float, pair="BTC/USDT",
            strength=0.9, level="strong") -> Signal:
    row = Signal(strategy_id=strategy.id, dedupe_key=f"o-{n}", message_type="strategy_msg",
                 pair=pair, action=action, direction="short" if "short" in action else "long",
                 rate=rate, strength_raw=strength, strength_level=level,
                 priority={"strong": "P0", "medium": "P1", "weak": "P2"}[level],
                 open_date=datetime.fromtimestamp(minute_ms / 1000, UTC).replace(tzinfo=None),
                 payload={}, indicators={})
    db.session.add(row)
    db.session.commit()
    return row


def _close_at(anchor: int, rows: list, minute_ms: int) -> float:
    import requests

    from app.signals.outcomes import Klines

    klines = Klines(requests.Session(), "BTC/USDT", "1m")
    klines.load(minute_ms, minute_ms)
    return klines.candles[minute_ms][3]


def test_forward_returns_equal_the_csvs_own(app, replay, strategy):
    anchor, rows = replay
    n = len(rows)
    picks = {"enter_long": n - 200, "exit_long": n - 150, "enter_short": n - 100}
    made = {}
    for k, (action, row) in enumerate(picks.items()):
        minute = anchor - (n - row) * 60_000
        made[action] = (_signal(strategy, k, action, minute, _close_at(anchor, rows, minute)),
                        row)
    _signal(strategy, 99, "enter_long", anchor - 60_000 * 50, 1.0, pair="NOPE/USDT")
    summary = outcomes.compute()
    assert summary["done"] == 3 and summary["unavailable"] == 1
    assert summary["requests"] <= 3, "one klines request per pair, not per signal"
    for action, (signal, row) in made.items():
        outcome = db.session.get(SignalOutcome, signal.id)
        sign = -1 if action in ("exit_long", "enter_short") else 1
        for horizon in (1, 4, 24):
            expected = sign * (rows[row + horizon][3] / rows[row][3] - 1)
            got = getattr(outcome, f"return_{horizon}")
            assert got == pytest.approx(expected, rel=1e-3, abs=1e-6), (action, horizon)
        highs = [rows[row + k][1] / rows[row][3] - 1 for k in range(1, 25)]
        lows = [rows[row + k][2] / rows[row][3] - 1 for k in range(1, 25)]
        best = max(highs) if sign > 0 else -min(lows)
        assert outcome.max_favourable == pytest.approx(best, rel=1e-3, abs=1e-6)
    missing = db.session.scalars(select(SignalOutcome).where(
        SignalOutcome.status == "unavailable")).one()
    assert "NOPE/USDT is not listed" in missing.reason and missing.return_1 is None

    # The backfill gives the same numbers.
    first = {o.signal_id: o.return_4 for o in db.session.scalars(select(SignalOutcome))}
    db.session.execute(SignalOutcome.__table__.delete())
    db.session.commit()
    outcomes.backfill(batch=2)
    again = {o.signal_id: o.return_4 for o in db.session.scalars(select(SignalOutcome))}
    assert again == first


def test_a_horizon_still_ahead_stays_pending(app, replay, strategy):
    anchor, rows = replay
    now_minute = (int(time.time()) // 60) * 60_000
    signal = _signal(strategy, 1, "enter_long", now_minute - 2 * 60_000,
                     _close_at(anchor, rows, now_minute - 2 * 60_000))
    outcomes.compute()
    outcome = db.session.get(SignalOutcome, signal.id)
    assert outcome.status == "pending" and outcome.return_1 is not None
    assert outcome.return_24 is None


def _scored(strategy, strengths_and_returns):
    for n, (strength, ret) in enumerate(strengths_and_returns):
        signal = _signal(strategy, 1000 + n, "enter_long", 60_000 * (10_000 + n), 100.0,
                         strength=strength,
                         level="strong" if strength >= 0.8 else "medium" if strength >= 0.6
                         else "weak")
        db.session.add(SignalOutcome(signal_id=signal.id, strategy_id=strategy.id,
                                     status="done", base_price=100.0, return_4=ret))
    db.session.commit()


@pytest.mark.parametrize(("shape", "ic"), [("ordered", 1.0), ("inverted", -1.0)])
def test_quality_and_ic_on_constructed_data(app, strategy, client, api_token, shape, ic):
    strengths = [i / 100 for i in range(40, 100)]
    returns = [(s - 0.6) / 10 for s in strengths]
    if shape == "inverted":
        returns = [-r for r in returns]
    _scored(strategy, list(zip(strengths, returns, strict=True)))
    report = outcomes.quality(strategy.id, 4)
    assert report["signals"] == 60
    assert report["information_coefficient"]["ic"] == pytest.approx(ic)
    strong = report["by_level"]["strong"]
    assert strong["count"] == 20
    assert strong["hit_rate"] == (1.0 if shape == "ordered" else 0.0)
    assert len(report["by_decile"]) == 10
    assert report["by_decile"][0]["from"] == 0.4 and report["by_decile"][-1]["to"] == 0.99
    api = client.get(f"/api/v1/signals/quality?strategy_id={strategy.id}&horizon=4",
                     headers={"Authorization": f"Bearer {api_token}"})
    assert api.status_code == 200 and api.get_json()["signals"] == 60
    bad = client.get("/api/v1/signals/quality?horizon=5",
                     headers={"Authorization": f"Bearer {api_token}"})
    assert bad.status_code == 400 and "horizon" in bad.get_json()["message"]


def test_random_data_has_an_ic_near_zero(app, strategy):
    import random

    rng = random.Random(3)
    _scored(strategy, [(rng.random(), rng.gauss(0, 0.01)) for _ in range(400)])
    ic = outcomes.quality(strategy.id, 4)["information_coefficient"]
    assert abs(ic["ic"]) < 0.15 and abs(ic["t"]) < 3


def test_the_strategy_page_shows_the_quality_table(app, strategy, client, api_token):
    _scored(strategy, [(0.9, 0.01), (0.85, -0.01), (0.9, 0.02), (0.5, -0.02)])
    page = client.get(f"/strategies/{strategy.id}",
                      headers={"Authorization": f"Bearer {api_token}"}).get_data(as_text=True)
    section = page[page.index('id="signal-quality"'):]
    assert "67 %" in section  # strong: 2 of 3 right after 4 candles
    assert "Information coefficient" in section
