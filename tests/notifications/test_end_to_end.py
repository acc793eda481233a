"""End to end: a demo bot on the market simulator (the shared session bots) emits a signal
through its own FreqTrade webhook → the web app stores and grades it → the notifications worker
decides and delivers → the loopback SMTP and HTTP receivers get it.

The signal is made to happen now instead of waiting minutes for a crossover: a force entry
through the bot's REST API, with an entry tag that carries the strength the way the demo
strategies report it ("… s=0.95"); FreqTrade then sends its usual `entry` webhook.
"""

from __future__ import annotations

import time

import pytest

from config import yaml_io
from tests.notifications.receivers import HttpReceiver, SmtpReceiver
from tests.notifications.test_worker import WorkerProcess

E2E_TAG = "btcw_e2e"


@pytest.fixture
def notify_world(bots_world, tmp_path):
    """The bots world's notifications.yml pointed at fresh receivers (restored afterwards)."""
    http = HttpReceiver().start()
    smtp = SmtpReceiver().start()
    path = bots_world.config_dir / "notifications.yml"
    original = path.read_text()
    rule = {"channels": ["webhook", "email"], "delay_seconds": 0}
    section = {
        "timezone": "UTC",
        "rate_limiting": {"same_pair_interval": 0, "global_max_per_minute": 1000,
                          "batch_interval": 300},
        "priorities": {"P0": {"name": "Immediate", **rule}, "P1": {"name": "Soon", **rule},
                       "P2": {"name": "Later", **rule}},
        "time_slots": {"always": {"start_time": "00:00", "end_time": "00:00",
                                  "enabled_priorities": ["P0", "P1", "P2"],
                                  "enabled_channels": ["all"]}},
        "channels": {
            "inbox": {"type": "inbox"},
            "hook": {"type": "webhook", "webhook_url": f"{http.url}/btcw", "timeout": 5},
            "mail": {"type": "email", "host": "127.0.0.1", "port": smtp.port,
                     "security": "none", "from_addr": "watcher@example.com",
                     "to": ["owner@example.com"]},
        },
    }
    path.write_text(yaml_io.dump({"notifications": section}))
    yield http, smtp
    path.write_text(original)
    http.stop()
    smtp.stop()


def _force_entry(strategy, pair: str) -> None:
    """Open a dry-run trade on the bot now, tagged with a strong strength."""
    from app.runtime.bot_client import BotClient

    client = BotClient.for_strategy(strategy, timeout=20)
    for trade in client.status():
        if trade.get("pair") == pair:
            client.post("forceexit", {"tradeid": str(trade["trade_id"])})
    deadline = time.monotonic() + 60
    while any(t.get("pair") == pair for t in client.status()):
        if time.monotonic() > deadline:
            raise AssertionError(f"the open {pair} trade did not close")
        time.sleep(1)
    client.post("forceenter", {"pair": pair, "side": "long", "entry_tag": f"{E2E_TAG} s=0.95"})


def _cleanup(strategy, pair: str) -> None:
    from app.runtime.bot_client import BotClient, BotError

    try:
        client = BotClient.for_strategy(strategy, timeout=20)
        for trade in client.status():
            if trade.get("pair") == pair:
                client.post("forceexit", {"tradeid": str(trade["trade_id"])})
    except BotError:
        pass


def test_demo_bot_signal_reaches_the_smtp_and_http_receivers(bots_ctx, bots_world, bots_web,
                                                             demo_bots, notify_world, tmp_path):
    # bots_web (tests/bots.py) receives the bots' webhooks at bots_world.public_url.
    from sqlalchemy import select

    from app.extensions import db
    from app.notifications.models import Notification
    from app.signals.models import Signal
    from app.strategies.models import Strategy

    http, smtp = notify_world
    bot = demo_bots[0]
    worker = WorkerProcess(bots_world.env(), tmp_path / "worker.log").start()
    strategy = db.session.get(Strategy, bot.id)
    try:
        _force_entry(strategy, bot.pair)
        deadline = time.monotonic() + 120
        hook = None
        while hook is None:
            for request in list(http.requests):
                body = request.json
                data = body.get("data") or {}
                if body.get("kind") == "signal" and data.get("pair") == bot.pair \
                        and data.get("enter_tag") == E2E_TAG:
                    hook = body
            if hook is None:
                seen = [(r.json.get("title"), (r.json.get("data") or {}).get("enter_tag"))
                        for r in http.requests]
                assert time.monotonic() < deadline, (
                    f"no notification for the forced {bot.pair} entry; received {seen}; "
                    f"worker log:\n" + (tmp_path / "worker.log").read_text()[-2000:])
                time.sleep(0.5)
        # Earlier signals of the shared demo bots may have mailed too: wait for this one's.
        deadline = time.monotonic() + 60
        mail = None
        while mail is None:
            mail = next((m for m in list(smtp.messages)
                         if bot.pair in m.content.decode(errors="replace")), None)
            assert mail is not None or time.monotonic() < deadline, (
                f"no mail about {bot.pair}; got {len(smtp.messages)} other mails")
            time.sleep(0.2)
    finally:
        _cleanup(strategy, bot.pair)
        worker.stop()

    assert hook["priority"] == "P0" and hook["title"].startswith("[P0] ")
    assert bot.pair in hook["title"]
    assert hook["data"]["strategy"]["name"] == bot.name
    assert hook["link"].endswith(f"/signals/{hook['data']['id']}")
    assert mail.rcpt_tos == ["owner@example.com"]

    db.session.rollback()
    signal = db.session.get(Signal, hook["data"]["id"])
    assert signal.strategy_id == bot.id and signal.priority == "P0"
    assert signal.strength_raw == pytest.approx(0.95)
    notification = db.session.scalar(select(Notification).where(
        Notification.signal_id == signal.id))
    assert {d.channel: d.status for d in notification.deliveries} == {
        "inbox": "sent", "hook": "sent", "mail": "sent"}
