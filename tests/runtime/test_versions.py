"""FreqTrade releases side by side with real releases from the package registry: a strategy
runs on 2026.8 beside the default 2026.9, is upgraded with its trades kept, a canary leaves the
other bot alone, a strategy that does not load on the target stops nothing, and a switch that
never becomes healthy is rolled back with the trade database as before."""

from __future__ import annotations

import time
from pathlib import Path

import psutil
import pytest
from sqlalchemy import select

from app.extensions import db
from app.monitoring.models import Alert
from app.runtime import control, upgrades, versions
from app.runtime.bot_client import BotClient
from app.strategies.models import Strategy
from tests.bots import discard_strategy, make_strategy

pytestmark = pytest.mark.bots
OLD = "2026.8"
OLD_ONLY = '''"""Loads on FreqTrade 2026.8 only (as a strategy using an interface 2026.9 dropped)."""
import freqtrade
from freqtrade.strategy import IStrategy

if freqtrade.__version__.startswith("2026.9"):
    raise ImportError("Old_Only needs FreqTrade 2026.8: it uses an interface 2026.9 removed")


class Old_Only(IStrategy):
    timeframe = "1m"
    minimal_roi = {"0": 10}
    stoploss = -0.5
    startup_candle_count = 5

    def populate_indicators(self, dataframe, metadata):
        return dataframe

    def populate_entry_trend(self, dataframe, metadata):
        dataframe["enter_long"] = 0
        return dataframe

    def populate_exit_trend(self, dataframe, metadata):
        dataframe["exit_long"] = 0
        return dataframe
'''


@pytest.fixture(scope="module")
def old_release(bots_app):
    """FreqTrade 2026.8 in its own environment (kept between runs in the tests' cache)."""
    with bots_app.app_context():
        row = versions.install(OLD)
    assert row["version"] == OLD and Path(row["path"], "bin", "freqtrade").exists()
    return row


@pytest.fixture
def on_old(bots_ctx, old_release, demo_bots):
    """Make strategies on 2026.8 for a test; stopped and deleted afterwards."""
    made = []

    def make(name: str, cls: str = "MA_Cross_BTC", pair: str = "BTC/USDT", start=True):
        strategy = make_strategy(name, cls, (pair,), freqtrade_version=OLD)
        made.append(strategy.id)
        if start:
            control.request_start(strategy.id)
            row = control.wait_for_status(strategy.id, ("running", "error", "crashed"), 180)
            assert row.status == "running", row.status_message
        return db.session.get(Strategy, strategy.id)

    yield make
    for strategy_id in made:
        discard_strategy(strategy_id)


def _version_of(strategy_id: int) -> str:
    db.session.rollback()
    strategy = db.session.get(Strategy, strategy_id)
    return BotClient.for_strategy(strategy, timeout=10).version()["version"]


def _open_trade(strategy_id: int, pair: str) -> list[tuple]:
    strategy = db.session.get(Strategy, strategy_id)
    client = BotClient.for_strategy(strategy, timeout=20)
    if not client.status():  # the strategy may have opened one itself (max_open_trades 1)
        client.post("forceenter", {"pair": pair, "side": "long", "entry_tag": "upgrade-test",
                                   "ordertype": "market"})
    # Filled, not only ordered: FreqTrade cancels a dry-run order still open when it restarts.
    deadline = time.monotonic() + 60
    while not any(t.get("amount") and not t.get("has_open_orders") for t in client.status()):
        assert time.monotonic() < deadline, f"the forced trade did not fill: {client.status()}"
        time.sleep(0.5)
    trades = _trades(strategy_id)
    assert trades, "an open trade to carry through"
    return trades


def _trades(strategy_id: int) -> list[tuple]:
    """Every trade the bot's database holds, open (/status) or closed since (/trades): (id,
    pair, open date) — the strategy may close one on its own right after a restart."""
    db.session.rollback()
    strategy = db.session.get(Strategy, strategy_id)
    client = BotClient.for_strategy(strategy, timeout=20)
    found = list(client.status()) + list(client.trades()["trades"])
    return sorted({(t["trade_id"], t["pair"], t["open_date"]) for t in found})


def test_versions_are_listed_refused_when_bad_and_kept_while_used(bots_ctx, old_release,
                                                                  on_old, bots_client,
                                                                  bots_api_token):
    strategy = on_old("on-old-listed", start=False)
    listed = {r["version"]: r for r in versions.installed()}
    assert listed[versions.default_version()]["default"] is True
    assert strategy.id in listed[OLD]["strategies"] and listed[OLD]["size_bytes"] > 10 * 2**20
    with pytest.raises(versions.VersionError) as bad:
        versions.parse("2026.9; rm -rf /")
    assert bad.value.status == 400
    with pytest.raises(Exception, match="used by strategies"):
        versions.remove(OLD)
    headers = {"Authorization": f"Bearer {bots_api_token}"}
    api = bots_client.get("/api/v1/freqtrade/versions", headers=headers).get_json()
    assert OLD in {v["version"] for v in api["versions"]}
    assert bots_client.post("/api/v1/freqtrade/upgrade", headers=headers,
                            json={"version": "next"}).status_code == 400
    with pytest.raises(versions.VersionError, match="could not be installed"):
        versions.install("2099.1")
    assert not (versions.versions_dir() / "2099.1").exists(), "nothing half-installed"


def test_a_bot_on_2026_8_is_upgraded_with_its_open_trades_and_a_canary_spares_the_other(
        bots_ctx, on_old):
    upgraded = on_old("upgrade-me", pair="BTC/USDT")
    spared = on_old("canary-spared", pair="ETH/USDT")
    assert _version_of(upgraded.id) == OLD
    before = _open_trade(upgraded.id, "BTC/USDT")
    spared_pid = spared.pid

    old_pid = db.session.get(Strategy, upgraded.id).pid
    row = upgrades.request_upgrade(versions.default_version(), [upgraded.id], enqueue=False)
    assert upgrades.run_upgrade(row.id) == "done"
    assert not psutil.pid_exists(old_pid) or psutil.Process(old_pid).status() == "zombie", \
        "the 2026.8 bot is gone"
    db.session.refresh(row)
    assert row.status == "done" and str(upgraded.id) in row.downtime
    assert _version_of(upgraded.id) == versions.default_version()
    assert _trades(upgraded.id) == before, "the open trade came through the upgrade"
    db.session.rollback()
    assert db.session.get(Strategy, upgraded.id).freqtrade_version is None
    assert db.session.get(Strategy, spared.id).pid == spared_pid
    assert _version_of(spared.id) == OLD
    steps = [s["step"] for s in row.steps]
    assert any(s.startswith("verified upgrade-me") for s in steps)
    with pytest.raises(versions.VersionError, match="only go forward"):
        upgrades.request_upgrade(OLD, [upgraded.id], enqueue=False)


def test_a_strategy_that_does_not_load_on_the_target_stops_nothing(bots_ctx, bots_world,
                                                                   on_old):
    (bots_world.strategies_dir / "Old_Only.py").write_text(OLD_ONLY)
    strategy = on_old("old-only", "Old_Only")
    pid = strategy.pid
    row = upgrades.request_upgrade(versions.default_version(), [strategy.id], enqueue=False)
    with pytest.raises(upgrades.UpgradeError) as failed:
        upgrades.run_upgrade(row.id)
    assert "old-only" in failed.value.message
    assert "needs FreqTrade 2026.8" in failed.value.message
    db.session.rollback()
    assert db.session.get(Strategy, strategy.id).pid == pid
    assert _version_of(strategy.id) == OLD
    assert db.session.get(type(row), row.id).status == "failed"


def test_a_switch_that_never_gets_healthy_is_rolled_back_with_its_trades(bots_ctx, on_old,
                                                                         monkeypatch):
    strategy = on_old("roll-me-back", pair="SOL/USDT")
    before = _open_trade(strategy.id, "SOL/USDT")
    first_pid = strategy.pid

    def never_healthy(strategy_id, timeout=upgrades.HEALTHY_TIMEOUT):
        if db.session.get(Strategy, strategy_id).freqtrade_version is None:
            raise upgrades.UpgradeError("injected: the new bot never became healthy")
        return real(strategy_id, timeout)

    real = upgrades.wait_healthy
    monkeypatch.setattr(upgrades, "wait_healthy", never_healthy)
    row = upgrades.request_upgrade(versions.default_version(), [strategy.id], enqueue=False)
    with pytest.raises(upgrades.UpgradeError, match="rolled back"):
        upgrades.run_upgrade(row.id)
    db.session.rollback()
    row = db.session.get(type(row), row.id)
    assert not psutil.pid_exists(first_pid) or psutil.Process(first_pid).status() == "zombie", \
        f"the first bot (pid {first_pid}) was stopped"
    assert row.status == "rolled_back" and "injected" in row.error, row.error
    assert "rollback problems" not in row.error, row.error
    assert db.session.get(Strategy, strategy.id).freqtrade_version == OLD
    control.wait_for_status(strategy.id, ("running",), 120)
    assert _version_of(strategy.id) == OLD
    assert _trades(strategy.id) == before, "the trade database is as before the upgrade"
    alert = db.session.scalars(select(Alert).where(Alert.kind == "freqtrade_upgrade")
                               .order_by(Alert.id.desc())).first()
    assert alert is not None and "rolled back" in alert.message
