"""POST /api/v1/signals/webhook/<id>: authentication, validation, grading, dedupe, storage."""

from __future__ import annotations

import io
import json

import pytest
from sqlalchemy import select

from app.extensions import db
from app.signals.models import Signal
from tests.signals.conftest import btcw_message, entry_webhook, strategy_msg

# Depends on the database dialect: runs on SQLite and on PostgreSQL.
pytestmark = pytest.mark.both_databases


def stored(signal_id: int) -> Signal:
    db.session.rollback()
    return db.session.get(Signal, signal_id, populate_existing=True)


# --------------------------------------------------------------------------- accepted


def test_strategy_message_becomes_a_graded_signal(make_strategy, post_webhook, signal_count):
    strategy = make_strategy(strong=0.9, medium=0.7, weak=0.5)
    response = post_webhook(strategy, strategy_msg(strength=0.75))
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["stored"] is True and body["duplicate"] is False
    assert (body["level"], body["priority"]) == ("medium", "P1")  # 0.75 vs 0.9/0.7/0.5
    signal = stored(body["id"])
    assert signal.strategy_id == strategy.id
    assert signal.message_type == "strategy_msg"
    assert (signal.pair, signal.action, signal.direction) == ("ETH/USDT", "enter_long", "long")
    assert signal.strength_raw == 0.75
    assert (signal.strength_level, signal.priority) == ("medium", "P1")
    assert signal.indicators == {"rsi": 21.4}
    assert signal.rate == 3391.5
    assert signal.enter_tag == "rsi_oversold"
    assert signal.open_date.isoformat() == "2026-11-24T20:15:00"  # the candle, naive UTC
    assert json.loads(signal.payload["msg"])["btcw"] == 1  # the raw payload is kept
    assert signal_count() == 1


def test_entry_webhook_as_freqtrade_formats_it(strategy, post_webhook):
    response = post_webhook(strategy, entry_webhook(tag="rsi_oversold s=0.83"))
    assert response.status_code == 200, response.get_json()
    signal = stored(response.get_json()["id"])
    assert (signal.message_type, signal.action, signal.direction) == ("entry", "enter_long",
                                                                     "long")
    assert signal.trade_id == 7
    assert signal.rate == 3391.5
    assert signal.open_date.isoformat() == "2026-11-24T20:15:03.123456"
    assert signal.enter_tag == "rsi_oversold"          # the strength is taken out of the tag
    assert signal.strength_raw == 0.83
    assert (signal.strength_level, signal.priority) == ("strong", "P0")


def test_exit_webhook_takes_strength_from_exit_reason(strategy, post_webhook):
    body = entry_webhook(trade_id="9", tag="rsi_oversold s=0.9", direction="Short")
    body.update(type="exit", exit_reason="rsi_overbought s=0.45", close_rate="3420.0",
                close_date="2026-11-24 20:40:00+00:00", profit_ratio="0.0084",
                profit_amount="0.84", gain="profit")
    response = post_webhook(strategy, body)
    assert response.status_code == 200, response.get_json()
    signal = stored(response.get_json()["id"])
    assert (signal.action, signal.direction) == ("exit_short", "short")
    assert signal.rate == 3420.0                       # close_rate for exits
    assert signal.exit_reason == "rsi_overbought"
    assert signal.strength_raw == 0.45                 # the exit's own strength, not the entry's
    assert signal.strength_level == "weak"
    assert signal.profit_ratio == pytest.approx(0.0084)
    assert signal.close_date.isoformat() == "2026-11-24T20:40:00"


def test_fills_and_cancels_are_recorded_not_graded(strategy, post_webhook):
    fill = post_webhook(strategy, entry_webhook(type="entry_fill"))
    cancel = post_webhook(strategy, entry_webhook(type="entry_cancel", reason="timeout"))
    for response in (fill, cancel):
        assert response.status_code == 200, response.get_json()
        signal = stored(response.get_json()["id"])
        assert signal.strength_raw == 0.83             # kept for reference
        assert (signal.strength_level, signal.priority) == ("ignore", "IGNORE")
        assert signal.dispatched_at is not None        # nothing to hand on


def test_status_and_plain_text_messages(strategy, post_webhook):
    status = post_webhook(strategy, {"type": "status", "status": "Status: running"})
    text = post_webhook(strategy, {"type": "strategy_msg", "msg": "volatility is rising"})
    braces = post_webhook(strategy, {"type": "strategy_msg", "msg": "{not json"})
    for response, action in ((status, "status"), (text, "message"), (braces, "message")):
        assert response.status_code == 200, response.get_json()
        signal = stored(response.get_json()["id"])
        assert (signal.action, signal.pair, signal.strength_level) == (action, "", "ignore")
    assert stored(text.get_json()["id"]).payload["msg"] == "volatility is rising"


@pytest.mark.parametrize(("body", "strength"), [
    # a top-level signal_strength wins over the tag
    (entry_webhook(tag="x s=0.2", signal_strength="0.9"), 0.9),
    # a JSON number works as well as FreqTrade's text
    (entry_webhook(tag="x", signal_strength=0.65), 0.65),
    # indicators.signal_strength when nothing else carries one
    (entry_webhook(tag="x", indicators={"signal_strength": 0.5}), 0.5),
    # no strength anywhere: ignored
    (entry_webhook(tag="plain_tag"), None),
    # FreqTrade renders a missing tag as "None"
    (entry_webhook(tag="None"), None),
])
def test_strength_sources(strategy, post_webhook, body, strength):
    response = post_webhook(strategy, body)
    assert response.status_code == 200, response.get_json()
    signal = stored(response.get_json()["id"])
    assert signal.strength_raw == strength
    if strength is None:
        assert signal.strength_level == "ignore"


def test_mixin_strength_falls_back_to_the_tag(strategy, post_webhook):
    message = json.loads(btcw_message(strength=None))
    message["enter_tag"] = "rsi_oversold s=0.61"
    response = post_webhook(strategy, {"type": "strategy_msg", "msg": json.dumps(message)})
    signal = stored(response.get_json()["id"])
    assert (signal.strength_raw, signal.strength_level) == (0.61, "medium")


@pytest.mark.parametrize(("token_place"), ["query", "bearer", "header"])
def test_token_in_query_bearer_or_header(strategy, client, token_place):
    url = f"/api/v1/signals/webhook/{strategy.id}"
    headers = {}
    if token_place == "query":
        url += f"?token={strategy.webhook_token}"
    elif token_place == "bearer":
        headers["Authorization"] = f"Bearer {strategy.webhook_token}"
    else:
        headers["X-Webhook-Token"] = strategy.webhook_token
    response = client.post(url, json=strategy_msg(), headers=headers)
    assert response.status_code == 200, response.get_json()


def test_webhook_needs_no_login_and_no_csrf(strategy, post_webhook, auth):
    # A logged-in browser session does not turn on the CSRF check for the token-authenticated
    # webhook (auth logs the shared client in).
    response = post_webhook(strategy, strategy_msg())
    assert response.status_code == 200


# ------------------------------------------------------------------------------ dedupe


def test_a_retried_webhook_is_stored_once(strategy, post_webhook, signal_count):
    first = post_webhook(strategy, entry_webhook())
    again = post_webhook(strategy, entry_webhook())
    message = post_webhook(strategy, strategy_msg())
    message_again = post_webhook(strategy, strategy_msg())
    assert [r.status_code for r in (first, again, message, message_again)] == [200] * 4
    assert again.get_json()["duplicate"] is True
    assert again.get_json()["id"] == first.get_json()["id"]
    assert message_again.get_json() ["duplicate"] is True
    assert signal_count() == 2


def test_different_messages_are_not_duplicates(strategy, post_webhook, signal_count):
    post_webhook(strategy, entry_webhook())
    post_webhook(strategy, entry_webhook(type="entry_fill"))         # another type
    post_webhook(strategy, entry_webhook(trade_id="8"))              # another trade
    post_webhook(strategy, strategy_msg(candle="2026-11-24T20:16:00+00:00"))  # next candle
    post_webhook(strategy, strategy_msg(action="exit_long"))        # another action
    post_webhook(strategy, strategy_msg(pair="BTC/USDT"))
    post_webhook(strategy, strategy_msg())
    assert signal_count() == 7


def test_same_message_of_two_strategies_is_two_signals(make_strategy, post_webhook,
                                                       signal_count):
    one, two = make_strategy(), make_strategy()
    assert post_webhook(one, strategy_msg()).get_json()["duplicate"] is False
    assert post_webhook(two, strategy_msg()).get_json()["duplicate"] is False
    assert signal_count() == 2


def test_identical_status_text_within_a_minute_is_one_message(strategy, post_webhook,
                                                              signal_count, monkeypatch):
    from datetime import datetime

    from app.signals import ingest

    times = iter([datetime(2026, 11, 24, 20, 0, 59), datetime(2026, 11, 24, 20, 1, 20),
                  datetime(2026, 11, 24, 20, 3, 0)])
    monkeypatch.setattr(ingest, "utcnow", lambda: next(times))
    body = {"type": "status", "status": "Status: stopped"}
    assert post_webhook(strategy, body).get_json()["duplicate"] is False
    # 21 s later, across a minute boundary: the bot's retry, still one message
    assert post_webhook(strategy, body).get_json()["duplicate"] is True
    # two minutes later: a new status message
    assert post_webhook(strategy, body).get_json()["duplicate"] is False
    assert signal_count() == 2


# -------------------------------------------------------------------------- thresholds


def test_regrading_applies_to_new_signals_only(strategy, post_webhook, monkeypatch):
    from app.signals import ingest
    from app.strategies.models import Strategy

    monkeypatch.setattr(ingest, "STRATEGY_CACHE_SECONDS", 0)
    before = post_webhook(strategy, strategy_msg(strength=0.7)).get_json()
    assert before["level"] == "medium"
    db.session.execute(db.update(Strategy).where(Strategy.id == strategy.id)
                       .values(strong_threshold=0.65, medium_threshold=0.5))
    db.session.commit()
    after = post_webhook(strategy, strategy_msg(strength=0.7, candle="2026-11-24T20:16:00Z"))
    assert after.get_json()["level"] == "strong"
    assert stored(before["id"]).strength_level == "medium"  # not regraded
    assert stored(after.get_json()["id"]).strength_level == "strong"


# ------------------------------------------------------------------------ rejected


BIG = json.dumps({"type": "strategy_msg", "msg": "x" * (1024 * 1024)})


def _with(base: dict, **changes) -> dict:
    body = dict(base)
    for key, value in changes.items():
        if value is ...:
            body.pop(key, None)
        else:
            body[key] = value
    return body


def _msg(**changes) -> dict:
    message = json.loads(btcw_message())
    for key, value in changes.items():
        if value is ...:
            message.pop(key, None)
        else:
            message[key] = value
    return {"type": "strategy_msg", "msg": json.dumps(message)}


ENTRY = entry_webhook()

BAD_BODIES = [
    # (id, raw body or dict, status, field)
    ("invalid JSON", '{"type": "entry", "pair": ', 422, "body"),
    ("not UTF-8", b'{"type": "\xff"}', 422, "body"),
    ("JSON array", "[1, 2]", 422, "body"),
    ("JSON string", '"entry"', 422, "body"),
    ("empty body", "", 422, "body"),
    ("missing type", _with(ENTRY, type=...), 422, "type"),
    ("unknown type", _with(ENTRY, type="lambo"), 422, "type"),
    ("type not a string", _with(ENTRY, type=5), 422, "type"),
    ("missing pair", _with(ENTRY, pair=...), 422, "pair"),
    ("pair 'None'", _with(ENTRY, pair="None"), 422, "pair"),
    ("pair a number", _with(ENTRY, pair=42), 422, "pair"),
    ("pair without quote", _with(ENTRY, pair="BTCUSDT"), 422, "pair"),
    ("pair with a space", _with(ENTRY, pair="BTC /USDT"), 422, "pair"),
    ("pair with a right-to-left override", _with(ENTRY, pair="BTC\u202e/USDT"), 422, "pair"),
    ("pair with a zero-width space", _with(ENTRY, pair="BTC\u200b/USDT"), 422, "pair"),
    ("pair with a newline", _with(ENTRY, pair="BTC/USDT\nX"), 422, "pair"),
    ("pair too long", _with(ENTRY, pair="A" * 60 + "/USDT"), 422, "pair"),
    ("missing trade_id", _with(ENTRY, trade_id=...), 422, "trade_id"),
    ("trade_id not a number", _with(ENTRY, trade_id="seven"), 422, "trade_id"),
    ("trade_id a fraction", _with(ENTRY, trade_id="7.5"), 422, "trade_id"),
    ("trade_id a bool", _with(ENTRY, trade_id=True), 422, "trade_id"),
    ("order_rate not a number", _with(ENTRY, order_rate="cheap"), 422, "order_rate"),
    ("amount a list", _with(ENTRY, amount=[1]), 422, "amount"),
    ("open_date not a date", _with(ENTRY, open_date="yesterday"), 422, "open_date"),
    ("direction unknown", _with(ENTRY, direction="sideways"), 422, "direction"),
    ("signal_strength text", _with(ENTRY, signal_strength="strong"), 422, "signal_strength"),
    ("signal_strength infinite", _with(ENTRY, signal_strength="inf"), 422, "signal_strength"),
    ("NaN literal (not JSON)",
     '{"type": "status", "status": "x", "signal_strength": NaN}', 422, "body"),
    ("Infinity in an unused field", '{"type": "status", "status": "x", "extra": Infinity}',
     422, "body"),
    ("nested past the stored limit", '{"type": "status", "status": "x", "deep": '
     + "[" * 40 + "]" * 40 + "}", 422, "deep" + "[0]" * 15),
    ("too many values", {"type": "status", "status": "x", "many": list(range(30_000))}, 422,
     "body"),
    ("a number too large to store in an unknown field",
     '{"type": "status", "status": "x", "extra": 1e400}', 422, "body"),
    ("a number too large to store, nested", '{"type": "status", "status": "x", '
     '"extra": {"a": [1, -2e999]}}', 422, "body"),
    ("order_rate zero", _with(ENTRY, order_rate="0"), 422, "order_rate"),
    ("open_rate negative", _with(ENTRY, open_rate="-3391.5"), 422, "open_rate"),
    ("amount negative", _with(ENTRY, amount="-1"), 422, "amount"),
    ("trade_id negative", _with(ENTRY, trade_id="-7"), 422, "trade_id"),
    ("signal_strength huge", _with(ENTRY, signal_strength=1e308), 422, "signal_strength"),
    ("signal_strength negative", _with(ENTRY, signal_strength=-0.5), 422, "signal_strength"),
    ("mixin: strength above 1", _msg(signal_strength=1e308), 422, "msg.signal_strength"),
    ("mixin: rate negative", _msg(rate=-1), 422, "msg.rate"),
    ("unpaired surrogate escape", '{"type": "status", "status": "x \\ud800 y"}', 422, "body"),
    ("nested too deeply", '{"type": "status", "status": "x", "deep": ' + "[" * 100000
     + "]" * 100000 + "}", 422, "body"),
    ("NUL in a tag", _with(ENTRY, enter_tag="a\u0000b"), 422, "enter_tag"),
    ("mixin: unpaired surrogate in the tag",
     {"type": "strategy_msg", "msg": btcw_message().replace('"rsi_oversold"', '"x\\udc00"')},
     422, "msg.enter_tag"),
    ("enter_tag an object", _with(ENTRY, enter_tag={"a": 1}), 422, "enter_tag"),
    ("enter_tag too long", _with(ENTRY, enter_tag="t" * 300), 422, "enter_tag"),
    ("indicators a list", _with(ENTRY, indicators=[1]), 422, "indicators"),
    ("status missing", {"type": "status"}, 422, "status"),
    ("msg missing", {"type": "strategy_msg"}, 422, "msg"),
    ("msg a number", {"type": "strategy_msg", "msg": 5}, 422, "msg"),
    ("mixin: unknown version", _msg(btcw=2), 422, "msg.btcw"),
    ("mixin: unknown kind", _msg(kind="chart"), 422, "msg.kind"),
    ("mixin: missing pair", _msg(pair=...), 422, "msg.pair"),
    ("mixin: unknown action", _msg(action="hodl"), 422, "msg.action"),
    ("mixin: missing candle", _msg(candle=...), 422, "msg.candle"),
    ("mixin: strength text", _msg(signal_strength="high"), 422, "msg.signal_strength"),
    ("mixin: indicators nested", _msg(indicators={"macd": {"a": 1}}), 422,
     "msg.indicators.macd"),
    ("body over 1 MB", BIG, 413, "body"),
]


@pytest.mark.parametrize(("body", "status", "field"), [c[1:] for c in BAD_BODIES],
                         ids=[c[0] for c in BAD_BODIES])
def test_bad_webhooks_are_rejected_and_nothing_is_stored(strategy, post_webhook, signal_count,
                                                         body, status, field):
    response = post_webhook(strategy, body)
    assert response.status_code == status, response.get_data(as_text=True)[:300]
    error = response.get_json()
    assert error["field"] == field
    assert error["message"].startswith(field + ":"), error["message"]
    assert signal_count() == 0


def test_strengths_in_tags_and_indicators_are_clipped_and_every_answer_is_strict_json(
        strategy, post_webhook, client, api_token):
    assert post_webhook(strategy, entry_webhook(tag="rsi_oversold s=7.5")).status_code == 200
    from app.signals.models import Signal

    signal = db.session.scalars(select(Signal)).one()
    assert signal.strength_raw == 1.0 and signal.enter_tag == "rsi_oversold"
    body = client.get("/api/v1/signals", headers={"Authorization": f"Bearer {api_token}"})
    strict = json.loads(body.get_data(as_text=True), parse_constant=pytest.fail)
    assert strict["items"][0]["strength"]["raw"] == 1.0


def test_a_huge_stored_payload_shows_as_a_bounded_view(strategy, auth, client):
    # A row stored before the shape bound: deeply nested, 180 KB as compact JSON.
    from app.signals.models import Signal

    deep = [0]
    for _ in range(900):
        deep = [deep, 1, 2]
    signal = Signal(strategy_id=strategy.id, message_type="status", action="status", pair="",
                    payload={"type": "status", "deep": deep, "wide": "x" * 150_000},
                    dedupe_key="x" * 64)
    db.session.add(signal)
    db.session.commit()
    response = client.get(f"/signals/{signal.id}")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert len(page) < 120_000, "the view is bounded"
    assert "cut here: 153 KiB in all" in page
    assert " " * 100 not in page, "not indented 900 levels deep"


def test_a_message_of_deeply_nested_brackets_is_kept_as_text(strategy, post_webhook, auth,
                                                             client):
    text = '{"a":' + "[" * 3000  # JSON's parser gives up on it by recursion, not a 500
    response = post_webhook(strategy, {"type": "strategy_msg", "msg": text})
    assert response.status_code == 200, response.get_data(as_text=True)[:200]
    from app.signals.models import Signal

    signal = db.session.scalars(select(Signal)).one()
    assert signal.action == "message"
    assert client.get(f"/signals/{signal.id}").status_code == 200


def test_wrong_missing_or_foreign_token_is_401(make_strategy, post_webhook, signal_count):
    mine, other = make_strategy(), make_strategy()
    cases = {
        "wrong": post_webhook(mine, strategy_msg(), token="not-the-token"),
        "missing": post_webhook(mine, strategy_msg(), token=None),
        "empty": post_webhook(mine, strategy_msg(), token=""),
        "another strategy's": post_webhook(mine, strategy_msg(), token=other.webhook_token),
        "token with a suffix": post_webhook(mine, strategy_msg(),
                                            token=mine.webhook_token + "x"),
    }
    for name, response in cases.items():
        assert response.status_code == 401, name
        assert "token" in response.get_json()["message"]
    assert signal_count() == 0


def test_unknown_or_deleted_strategy_is_404(make_strategy, post_webhook, signal_count, client):
    from app.clock import utcnow
    from app.signals import ingest
    from app.strategies.models import Strategy

    gone = make_strategy()
    assert post_webhook(gone, strategy_msg()).status_code == 200
    db.session.execute(db.update(Strategy).where(Strategy.id == gone.id)
                       .values(deleted_at=utcnow()))
    db.session.commit()
    ingest.forget_strategy(gone.id)  # other processes see it within STRATEGY_CACHE_SECONDS
    response = post_webhook(gone, strategy_msg(candle="2026-11-24T20:30:00Z"))
    assert response.status_code == 404
    assert post_webhook(9999, strategy_msg(), token="x").status_code == 404
    for bad_id in ("-1", "abc", "1.5", "99999999999999999999999"):  # no such route: 404, not 401
        response = client.post(f"/api/v1/signals/webhook/{bad_id}", json=strategy_msg())
        assert response.status_code == 404, (bad_id, response.get_json())
    assert signal_count() == 1


def test_oversized_body_is_413_before_the_token_is_checked(strategy, post_webhook,
                                                           signal_count):
    assert post_webhook(strategy, BIG, token=None).status_code == 413
    assert signal_count() == 0


def test_oversized_chunked_body_is_413(strategy, client, signal_count):
    # No Content-Length (chunked upload): the receiver stops reading after 1 MB.
    response = client.post(
        f"/api/v1/signals/webhook/{strategy.id}?token={strategy.webhook_token}",
        input_stream=io.BytesIO(BIG.encode()), content_type="application/json",
        environ_overrides={"wsgi.input_terminated": True})
    assert response.status_code == 413
    assert signal_count() == 0


def test_chunked_body_within_the_limit_is_read(strategy, client):
    body = json.dumps(strategy_msg()).encode()
    response = client.post(
        f"/api/v1/signals/webhook/{strategy.id}?token={strategy.webhook_token}",
        input_stream=io.BytesIO(body), content_type="application/json",
        environ_overrides={"wsgi.input_terminated": True})
    assert response.status_code == 200, response.get_json()


@pytest.mark.parametrize("pair", ["币安人生/USDT", "ÉTH/USDT", "BTC/USDT:USDT", "1000PEPE/USDC"])
def test_unicode_and_futures_pairs_are_accepted(strategy, post_webhook, pair):
    response = post_webhook(strategy, strategy_msg(pair=pair))
    assert response.status_code == 200, response.get_json()
    assert stored(response.get_json()["id"]).pair == pair


def test_unicode_pairs_are_stored_nfc_normalised(strategy, post_webhook):
    decomposed = "E\u0301TH/USDT"  # É as E + combining acute accent
    response = post_webhook(strategy, strategy_msg(pair=decomposed))
    assert stored(response.get_json()["id"]).pair == "\u00c9TH/USDT"


def test_error_responses_name_the_field_and_store_nothing(strategy, post_webhook):
    response = post_webhook(strategy, _with(ENTRY, pair=...))
    assert response.get_json() == {
        "error": "Unprocessable input", "message": "pair: is required", "status": 422,
        "field": "pair",
    }
    assert db.session.scalars(select(Signal)).all() == []


def test_receiver_survives_a_dropped_database_connection(strategy, post_webhook):
    from sqlalchemy import text

    from app.signals.ingest import receiver_connections

    if db.engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL drops connections; SQLite has none to drop")
    assert post_webhook(strategy, strategy_msg()).status_code == 200
    replaced = receiver_connections().replaced
    # Kill every other session of this database, as a PostgreSQL restart would.
    killed = db.session.execute(text(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()")).scalar()
    db.session.commit()
    assert killed >= 1
    response = post_webhook(strategy, strategy_msg(candle="2026-11-24T20:20:00Z"))
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["duplicate"] is False
    assert receiver_connections().replaced == replaced + 1


def test_escaped_emoji_is_fine(strategy, post_webhook):
    # A proper surrogate pair (😀 as \ud83d\ude00) is one character, not an error.
    response = post_webhook(strategy, '{"type": "status", "status": "up \\ud83d\\ude00"}')
    assert response.status_code == 200, response.get_json()
    assert stored(response.get_json()["id"]).payload["status"] == "up \U0001f600"
