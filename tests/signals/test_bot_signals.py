"""A real FreqTrade bot on the market simulator emits signals that arrive through the webhook,
are graded with that strategy's thresholds and appear on the live page.

The bot runs Signal_At_Once (tests/data/strategies), which signals on its first analysis; the
demo strategies' own signals are checked on simulated candles in tests/simulator."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pytest
import websocket
from sqlalchemy import func, select

from app.extensions import db
from app.runtime import control
from app.signals.grading import Thresholds, grade
from app.signals.models import Signal
from tests.bots import DemoBot, discard_strategy, make_strategy

pytestmark = pytest.mark.bots

STRATEGY_SOURCE = Path(__file__).resolve().parents[1] / "data" / "strategies" / "Signal_At_Once.py"
# Signal_At_Once signals (strength 0.9) on its first analysis: the wait ends seconds after the
# bot starts. The bound covers a slow start on a busy machine.
WAIT_SECONDS = 180
# Thresholds of its own (the defaults would grade 0.9 strong): a grade shows they were used.
THRESHOLDS = Thresholds(0.95, 0.85, 0.5)


@pytest.fixture
def signal_bot(bots_ctx, bots_world, demo_bots):
    """A bot of Signal_At_Once on ETH/USDT, created for the test and started by it (started()),
    stopped and deleted afterwards. The demo bots run beside it (bots_web receives webhooks)."""
    shutil.copy(STRATEGY_SOURCE, bots_world.strategies_dir / STRATEGY_SOURCE.name)
    strategy = make_strategy("signal-at-once", "Signal_At_Once", ("ETH/USDT",),
                             strong_threshold=THRESHOLDS.strong,
                             medium_threshold=THRESHOLDS.medium, weak_threshold=THRESHOLDS.weak)
    bot = DemoBot(strategy.id, strategy.name, "Signal_At_Once", "ETH/USDT")
    yield bot
    discard_strategy(strategy.id)


def test_bot_signals_arrive_graded_and_appear_live(bots_web, bots_ctx, bots_api_token,
                                                   signal_bot):
    since_id = db.session.scalar(select(func.coalesce(func.max(Signal.id), 0)))
    db.session.rollback()
    browser = bots_web.login("botsadmin", "correct-horse!1")
    cookie = "; ".join(f"{c.name}={c.value}" for c in browser.cookies)
    ws = websocket.create_connection(
        f"ws://127.0.0.1:{bots_web.port}/ws/signals?since_id={since_id}", cookie=cookie,
        timeout=30)
    live_ids: set[int] = set()
    mixin_signal = None
    control.request_start(signal_bot.id)
    deadline = time.monotonic() + WAIT_SECONDS
    try:
        while time.monotonic() < deadline and mixin_signal is None:
            ws.settimeout(max(deadline - time.monotonic(), 1))
            try:
                message = ws.recv()
            except websocket.WebSocketTimeoutException:
                break
            new = {int(i) for i in re.findall(r'<tr id="signal-(\d+)"', message)}
            live_ids |= new
            db.session.rollback()
            for signal in db.session.scalars(select(Signal).where(Signal.id.in_(new))):
                if (signal.message_type == "strategy_msg" and signal.action != "message"
                        and signal.strategy_id == signal_bot.id):
                    mixin_signal = signal
    finally:
        ws.close()
    assert live_ids, f"no signal reached the live page within {WAIT_SECONDS}s"
    assert mixin_signal is not None, "no strategy-message signal from the btcw_signals mixin"

    # The receiver marks the outbox in batches, a moment after publishing.
    marked_by = time.monotonic() + 5
    while True:
        db.session.rollback()
        signals = db.session.scalars(select(Signal).where(Signal.id.in_(live_ids))).all()
        if all(s.published_at for s in signals) or time.monotonic() > marked_by:
            break
        time.sleep(0.1)
    signals = [s for s in signals if s.strategy_id == signal_bot.id]  # demo bots run beside it
    assert signals
    for signal in signals:
        if signal.message_type in ("strategy_msg", "entry", "exit") and signal.action != "message":
            expected = grade(signal.strength_raw, THRESHOLDS)
            assert (signal.strength_level, signal.priority) == expected, (
                f"signal {signal.id} of strategy {signal.strategy_id}: strength "
                f"{signal.strength_raw} graded {signal.strength_level}")
        assert signal.published_at is not None
    # A mixin signal and the order it became (FreqTrade posts the order first) are one signal:
    # the second of the two is linked to the first.
    orders = [s for s in signals if s.message_type in ("entry", "exit")]
    for mixin in (s for s in signals if s.message_type == "strategy_msg" and s.action != "message"):
        for order in orders:
            if ((order.strategy_id, order.pair, order.action) == (mixin.strategy_id, mixin.pair,
                                                                  mixin.action)
                    and abs((order.received_at - mixin.received_at).total_seconds()) < 10
                    and (order.enter_tag, order.exit_reason) == (mixin.enter_tag,
                                                                 mixin.exit_reason)):
                assert {order.related_signal_id, mixin.related_signal_id} == {
                    None, order.id if mixin.related_signal_id else mixin.id}, (
                    f"signal {mixin.id} and its order {order.id} were not paired")
    assert mixin_signal.pair == signal_bot.pair
    assert mixin_signal.action in ("enter_long", "exit_long", "enter_short", "exit_short")
    assert mixin_signal.strength_raw is not None and 0 <= mixin_signal.strength_raw <= 1
    assert mixin_signal.indicators, "the mixin sends the strategy's indicators"
    assert mixin_signal.open_date is not None  # the candle
