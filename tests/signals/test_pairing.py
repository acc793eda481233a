"""One notification per real signal: a mixin signal and the entry/exit order it became are paired
on arrival; the second of the two is stored graded, linked, and not handed on again."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from app.extensions import db
from app.signals.ingest import pairing_window, timeframe_seconds
from app.signals.models import Signal
from tests.signals.conftest import entry_webhook, notify_job_ids, strategy_msg

# Depends on the database dialect: runs on SQLite and on PostgreSQL.
pytestmark = pytest.mark.both_databases


def stored(signal_id: int) -> Signal:
    db.session.rollback()
    return db.session.get(Signal, signal_id, populate_existing=True)


def jobs(redis_server) -> set[str]:
    return set(notify_job_ids(redis_server.url))


def age(signal_id: int, seconds: float) -> None:
    """Make a stored signal look `seconds` older."""
    signal = stored(signal_id)
    db.session.execute(update(Signal).where(Signal.id == signal_id)
                       .values(received_at=signal.received_at - timedelta(seconds=seconds)))
    db.session.commit()


def exit_webhook(trade_id="7", reason="rsi_overbought s=0.83", **extra) -> dict:
    return entry_webhook(trade_id=trade_id, type="exit", exit_reason=reason,
                         close_rate="3401.2", close_date="2026-11-24 20:21:03+00:00", **extra)


@pytest.fixture
def mixin_strategy(make_strategy):
    return make_strategy(strong=0.8, medium=0.6, weak=0.4)  # timeframe 1m: window 5 minutes


def test_order_after_its_mixin_signal_is_stored_but_not_handed_on_again(
        mixin_strategy, post_webhook, redis_server, clean_outbox, auth, client):
    signal = post_webhook(mixin_strategy, strategy_msg(strength=0.83)).get_json()
    order = post_webhook(mixin_strategy, entry_webhook(tag="rsi_oversold s=0.83")).get_json()

    assert signal["handed_on"] is True and signal["related_signal_id"] is None
    assert order["handed_on"] is False and order["related_signal_id"] == signal["id"]
    assert (order["level"], order["priority"]) == ("strong", "P0")  # graded all the same
    assert jobs(redis_server) == {f"signal-{signal['id']}"}
    row = stored(order["id"])
    assert (row.strength_raw, row.strength_level, row.priority) == (0.83, "strong", "P0")
    assert row.related_signal_id == signal["id"]
    assert row.dispatched_at is not None  # out of the outbox: the sweeper will not hand it on

    page = client.get(f"/signals/{order['id']}").get_data(as_text=True)
    assert f'order for signal <a href="/signals/{signal["id"]}">#{signal["id"]}</a>' in page
    assert "Not notified again" in page
    page = client.get(f"/signals/{signal['id']}").get_data(as_text=True)
    assert f'became order <a href="/signals/{order["id"]}">#{order["id"]}</a>' in page
    assert "Not notified again" not in page
    assert client.get(f"/api/v1/signals/{order['id']}").get_json()["related_signal_id"] == \
        signal["id"]


def test_mixin_signal_after_its_order_is_not_handed_on_again(
        mixin_strategy, post_webhook, redis_server, clean_outbox, auth, client):
    # FreqTrade posts the order's webhook during its loop and the strategy's messages at the end
    # of it, so for a signal that becomes an order at once the order usually arrives first.
    order = post_webhook(mixin_strategy, entry_webhook(tag="rsi_oversold s=0.83")).get_json()
    fill = post_webhook(mixin_strategy, entry_webhook(tag="rsi_oversold s=0.83",
                                                      type="entry_fill")).get_json()
    signal = post_webhook(mixin_strategy, strategy_msg(strength=0.83)).get_json()

    assert order["handed_on"] is True and order["related_signal_id"] is None
    assert fill["related_signal_id"] is None  # fills are not part of a pair
    assert signal["handed_on"] is False and signal["related_signal_id"] == order["id"]
    assert signal["level"] == "strong"
    assert jobs(redis_server) == {f"signal-{order['id']}"}
    page = client.get(f"/signals/{order['id']}").get_data(as_text=True)
    assert f'order for signal <a href="/signals/{signal["id"]}">#{signal["id"]}</a>' in page
    page = client.get(f"/signals/{signal['id']}").get_data(as_text=True)
    assert f'became order <a href="/signals/{order["id"]}">#{order["id"]}</a>' in page


def test_strategy_without_the_mixin_keeps_notifying_its_orders(
        make_strategy, post_webhook, redis_server, clean_outbox, auth, client):
    strategy = make_strategy()
    first = post_webhook(strategy, entry_webhook(trade_id="1", tag="breakout s=0.9")).get_json()
    second = post_webhook(strategy, entry_webhook(trade_id="2", tag="breakout s=0.9")).get_json()
    closed = post_webhook(strategy, exit_webhook(trade_id="1", reason="tp s=0.7")).get_json()
    for body in (first, second, closed):
        assert body["handed_on"] is True and body["related_signal_id"] is None
    assert jobs(redis_server) == {f"signal-{b['id']}" for b in (first, second, closed)}
    page = client.get(f"/signals/{first['id']}").get_data(as_text=True)
    assert "order for signal" not in page and "became order" not in page


def test_each_signal_pairs_with_its_own_order_only(mixin_strategy, post_webhook, redis_server,
                                                   clean_outbox):
    first_order = post_webhook(mixin_strategy, entry_webhook(trade_id="1")).get_json()
    first_signal = post_webhook(mixin_strategy, strategy_msg(
        candle="2026-11-24T20:15:00+00:00")).get_json()
    # The next trade's order a minute later: the newest row is a pair already, so it is new.
    second_order = post_webhook(mixin_strategy, entry_webhook(trade_id="2")).get_json()
    second_signal = post_webhook(mixin_strategy, strategy_msg(
        candle="2026-11-24T20:16:00+00:00")).get_json()
    # A signal that does not become an order (no free slot) is a new signal too.
    lone_signal = post_webhook(mixin_strategy, strategy_msg(
        candle="2026-11-24T20:17:00+00:00")).get_json()

    assert first_signal["related_signal_id"] == first_order["id"]
    assert second_order["related_signal_id"] is None and second_order["handed_on"] is True
    assert second_signal["related_signal_id"] == second_order["id"]
    assert lone_signal["related_signal_id"] is None and lone_signal["handed_on"] is True
    assert jobs(redis_server) == {f"signal-{b['id']}" for b in (first_order, second_order,
                                                                 lone_signal)}


def test_exits_and_shorts_pair_like_entries(mixin_strategy, post_webhook, redis_server,
                                            clean_outbox):
    exit_signal = post_webhook(mixin_strategy, strategy_msg(
        action="exit_long", exit_tag="rsi_overbought", strength=0.7)).get_json()
    exit_order = post_webhook(mixin_strategy, exit_webhook(reason="rsi_overbought s=0.7"))
    exit_order = exit_order.get_json()
    assert exit_order["related_signal_id"] == exit_signal["id"]
    assert exit_order["handed_on"] is False and exit_order["level"] == "medium"

    short_order = post_webhook(mixin_strategy, entry_webhook(
        trade_id="8", direction="Short", tag="rsi_overbought s=0.9")).get_json()
    short_signal = post_webhook(mixin_strategy, strategy_msg(
        action="enter_short", enter_tag="rsi_overbought", strength=0.9)).get_json()
    assert short_signal["related_signal_id"] == short_order["id"]
    # An enter_long signal does not pair with a short entry, nor an entry with an exit signal.
    long_signal = post_webhook(mixin_strategy, strategy_msg(
        action="enter_long", strength=0.9, candle="2026-11-24T20:30:00Z")).get_json()
    assert long_signal["related_signal_id"] is None and long_signal["handed_on"] is True
    assert jobs(redis_server) == {f"signal-{b['id']}" for b in (exit_signal, short_order,
                                                                 long_signal)}


def test_untagged_exit_signal_pairs_with_freqtrades_exit_signal_reason(
        mixin_strategy, post_webhook):
    # The mixin reports an exit without a tag as none; FreqTrade names its reason exit_signal.
    signal = post_webhook(mixin_strategy, strategy_msg(
        action="exit_long", exit_tag="", enter_tag=None, strength=0.65)).get_json()
    order = post_webhook(mixin_strategy, exit_webhook(reason="exit_signal",
                                                      signal_strength="0.65")).get_json()
    assert order["related_signal_id"] == signal["id"] and order["handed_on"] is False


def test_an_order_with_another_tag_is_a_signal_of_its_own(mixin_strategy, post_webhook,
                                                          redis_server, clean_outbox):
    # e.g. a forced entry through the bot's API, shortly after a mixin signal on the same pair
    signal = post_webhook(mixin_strategy, strategy_msg(strength=0.83)).get_json()
    forced = post_webhook(mixin_strategy, entry_webhook(tag="manual s=0.95")).get_json()
    assert forced["related_signal_id"] is None and forced["handed_on"] is True
    stoploss = post_webhook(mixin_strategy, exit_webhook(reason="stop_loss")).get_json()
    assert stoploss["related_signal_id"] is None
    assert jobs(redis_server) == {f"signal-{signal['id']}", f"signal-{forced['id']}"}


def test_other_pair_or_strategy_does_not_pair(make_strategy, mixin_strategy, post_webhook):
    post_webhook(mixin_strategy, strategy_msg(pair="BTC/USDT"))
    other = make_strategy()
    post_webhook(other, strategy_msg())
    order = post_webhook(mixin_strategy, entry_webhook()).get_json()
    assert order["related_signal_id"] is None and order["handed_on"] is True


def test_pairing_window_is_two_candles_or_five_minutes(make_strategy, post_webhook,
                                                       redis_server, clean_outbox):
    fast = make_strategy()  # 1m: 2 candles are 2 minutes, so 5 minutes apply
    signal = post_webhook(fast, strategy_msg()).get_json()
    age(signal["id"], 290)
    inside = post_webhook(fast, entry_webhook(trade_id="1")).get_json()
    assert inside["related_signal_id"] == signal["id"]

    late = post_webhook(fast, strategy_msg(candle="2026-11-24T20:40:00Z")).get_json()
    age(late["id"], 310)
    outside = post_webhook(fast, entry_webhook(trade_id="2")).get_json()
    assert outside["related_signal_id"] is None and outside["handed_on"] is True

    slow = make_strategy(timeframe="1h")  # 2 candles: 2 hours
    signal = post_webhook(slow, strategy_msg()).get_json()
    age(signal["id"], 100 * 60)
    order = post_webhook(slow, entry_webhook()).get_json()
    assert order["related_signal_id"] == signal["id"] and order["handed_on"] is False


def test_second_half_is_handed_on_when_the_first_was_ignored(make_strategy, post_webhook,
                                                             redis_server, clean_outbox):
    # The tag rounds the strength to 2 digits: 0.3996 is ignored, the entry's s=0.40 is weak.
    strategy = make_strategy(strong=0.8, medium=0.6, weak=0.4)
    signal = post_webhook(strategy, strategy_msg(strength=0.3996)).get_json()
    order = post_webhook(strategy, entry_webhook(tag="rsi_oversold s=0.40")).get_json()
    assert signal["level"] == "ignore" and order["level"] == "weak"
    assert order["related_signal_id"] == signal["id"] and order["handed_on"] is True
    assert jobs(redis_server) == {f"signal-{order['id']}"}


def test_retried_order_webhook_stays_one_row(mixin_strategy, post_webhook):
    signal = post_webhook(mixin_strategy, strategy_msg()).get_json()
    first = post_webhook(mixin_strategy, entry_webhook()).get_json()
    again = post_webhook(mixin_strategy, entry_webhook()).get_json()
    assert again["duplicate"] is True and again["id"] == first["id"]
    assert stored(first["id"]).related_signal_id == signal["id"]


@pytest.mark.parametrize(("timeframe", "seconds", "window"), [
    ("1m", 60, 300), ("3m", 180, 360), ("5m", 300, 600), ("1h", 3600, 7200),
    ("1d", 86400, 172800), ("1w", 604800, 1209600), ("30s", 30, 300), ("", None, 300),
    (None, None, 300), ("fast", None, 300),
])
def test_timeframe_and_pairing_window(timeframe, seconds, window):
    assert timeframe_seconds(timeframe) == seconds
    assert pairing_window(timeframe) == window
