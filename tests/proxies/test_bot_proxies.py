"""A real bot configured through each kind of proxy gets its candles through it: tinyproxy's log
shows the bot's requests to the simulator, and the SOCKS5 bot's process talks to microsocks."""

from __future__ import annotations

import time

import psutil
import pytest

from app.extensions import db
from app.proxies import service
from app.runtime import control
from app.runtime.bot_client import BotClient, BotError
from app.strategies.models import Strategy
from tests.bots import discard_strategy, make_strategy
from tests.support.proxies import MicroSocks, TinyProxy

pytestmark = pytest.mark.bots


def _candles_through(strategy_id: int, pair: str, timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        db.session.rollback()
        strategy = db.session.get(Strategy, strategy_id)
        try:
            candles = BotClient.for_strategy(strategy, timeout=10).get(
                "pair_candles", params={"pair": pair, "timeframe": "1m", "limit": 5})
            if candles.get("length"):
                return int(candles["length"])
        except BotError:
            pass
        time.sleep(1)
    raise AssertionError(f"no candles for {pair} through the proxy within {timeout} s")


@pytest.mark.parametrize("kind", ["http", "socks5"])
def test_a_bot_gets_its_candles_through_the_proxy(bots_ctx, demo_bots, tmp_path, kind):
    server = (TinyProxy(tmp_path) if kind == "http" else MicroSocks()).start()
    strategy_id = None
    try:
        proxy = service.create({"name": f"bot-{kind}",
                                "url": f"{kind}://127.0.0.1:{server.port}"})
        strategy = make_strategy(f"via-{kind}", "MA_Cross_BTC", ("ADA/USDT",),
                                 proxy_id=proxy.id)
        strategy_id = strategy.id
        control.request_start(strategy_id)
        row = control.wait_for_status(strategy_id, ("running", "error", "crashed"), 180)
        assert row.status == "running", row.status_message
        assert _candles_through(strategy_id, "ADA/USDT") > 0
        if kind == "http":
            log = server.log.read_text()
            assert "klines" in log or "ADAUSDT" in log or "GET http://127.0.0.1" in log, log[-2000:]
        else:
            bot = psutil.Process(db.session.get(Strategy, strategy_id).pid)
            seen = {c.raddr.port for c in bot.net_connections(kind="tcp") if c.raddr}
            deadline = time.monotonic() + 30
            while server.port not in seen and time.monotonic() < deadline:
                time.sleep(0.5)
                seen = {c.raddr.port for c in bot.net_connections(kind="tcp") if c.raddr}
            assert server.port in seen, f"the bot talks to {sorted(seen)}, not microsocks"
    finally:
        if strategy_id is not None:
            discard_strategy(strategy_id)
        server.stop()


def test_a_bot_on_a_killed_proxy_moves_to_the_spare_and_keeps_its_candles(
        bots_ctx, demo_bots, tmp_path):
    """The failover timeline of a real bot: its proxy killed, one check pass marks it down and
    restarts the bot on the group's other proxy, where it gets candles again."""
    main_server, spare_server = TinyProxy(tmp_path).start(), MicroSocks().start()
    strategy_id = None
    timeline: list[tuple[str, float]] = []
    try:
        main = service.create({"name": "fo-main", "group": "fo",
                               "url": f"http://127.0.0.1:{main_server.port}"})
        spare = service.create({"name": "fo-spare", "group": "fo",
                                "url": f"socks5://127.0.0.1:{spare_server.port}"})
        strategy_id = make_strategy("via-failover", "MA_Cross_BTC", ("DOT/USDT",),
                                    proxy_id=main.id).id
        control.request_start(strategy_id)
        row = control.wait_for_status(strategy_id, ("running", "error", "crashed"), 180)
        assert row.status == "running", row.status_message
        assert _candles_through(strategy_id, "DOT/USDT") > 0
        first_pid = row.pid
        main_server.stop()
        killed = time.monotonic()
        summary = service.check_all()
        timeline.append(("marked down, bot moved", time.monotonic() - killed))
        assert summary["moved"] == [{"strategy_id": strategy_id, "from": "fo-main",
                                     "to": "fo-spare", "restarted": True}]
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            db.session.rollback()
            row = db.session.get(Strategy, strategy_id)
            if row.status == "running" and row.pid not in (None, first_pid):
                break
            time.sleep(0.5)
        timeline.append(("bot running on the spare", time.monotonic() - killed))
        assert row.proxy_id == spare.id and row.pid != first_pid
        assert _candles_through(strategy_id, "DOT/USDT") > 0
        timeline.append(("candles again", time.monotonic() - killed))
        print("failover timeline:", ", ".join(f"{what} +{t:.1f} s" for what, t in timeline))
        interval = service.current_settings().proxy.health.interval
        assert timeline[1][1] < interval + 120
    finally:
        if strategy_id is not None:
            discard_strategy(strategy_id)
        main_server.stop()
        spare_server.stop()
