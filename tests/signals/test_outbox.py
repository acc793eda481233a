"""Redis down during ingestion: every signal is stored and answered 200; once Redis is back the
sweeper publishes and hands on each one exactly once."""

from __future__ import annotations

import json
import threading
import time

import pytest
import redis
from sqlalchemy import func, select

from app.extensions import db
from app.signals import outbox
from app.signals.models import Signal
from tests.signals.conftest import entry_webhook, notify_job_ids, strategy_msg

# Depends on the database dialect: runs on SQLite and on PostgreSQL.
pytestmark = pytest.mark.both_databases


class Subscriber:
    """A pub/sub listener on the live channel, collecting the signal ids it hears."""

    def __init__(self, url: str):
        self.client = redis.Redis.from_url(url)
        self.pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        self.pubsub.subscribe(outbox.CHANNEL)
        self.ids: list[int] = []

    def collect(self, expected: int, seconds: float = 10.0) -> list[int]:
        deadline = time.monotonic() + seconds
        while len(self.ids) < expected and time.monotonic() < deadline:
            message = self.pubsub.get_message(timeout=0.2)
            if message and message["type"] == "message":
                self.ids.append(json.loads(message["data"])["id"])
        # anything more that arrives shortly after would be a duplicate
        end = time.monotonic() + 0.5
        while time.monotonic() < end:
            message = self.pubsub.get_message(timeout=0.1)
            if message and message["type"] == "message":
                self.ids.append(json.loads(message["data"])["id"])
        return self.ids

    def close(self) -> None:
        self.pubsub.close()
        self.client.close()


def outbox_counts() -> tuple[int, int]:
    db.session.rollback()
    unpublished = db.session.scalar(select(func.count()).select_from(Signal)
                                    .where(Signal.published_at.is_(None)))
    undispatched = db.session.scalar(select(func.count()).select_from(Signal)
                                     .where(Signal.dispatched_at.is_(None)))
    return unpublished, undispatched


def test_normal_ingest_publishes_and_hands_on_at_once(strategy, post_webhook, redis_server,
                                                      clean_outbox):
    listener = Subscriber(redis_server.url)
    try:
        graded = post_webhook(strategy, strategy_msg(strength=0.9)).get_json()
        ignored = post_webhook(strategy, strategy_msg(strength=0.1, action="exit_long")).get_json()
        assert graded["published"] and graded["handed_on"]
        assert ignored["published"] and not ignored["handed_on"]
        assert sorted(listener.collect(2)) == sorted([graded["id"], ignored["id"]])
    finally:
        listener.close()
    assert notify_job_ids(redis_server.url) == [f"signal-{graded['id']}"]
    outbox.confirmer().flush()
    assert outbox_counts() == (0, 0)
    assert outbox.sweep(min_age=0).published == 0  # nothing left for the sweeper


def test_redis_outage_stores_everything_and_the_sweeper_delivers_each_once(
        app, make_strategy, post_webhook, signal_count, redis_server, clean_outbox):
    strategy = make_strategy(strong=0.8, medium=0.6, weak=0.4)
    strengths = [0.95, 0.7, 0.45, 0.2, None, 0.85, 0.61, 0.05, 0.41, 0.99]
    graded_expected = sum(1 for s in strengths if s is not None and s >= 0.4)
    redis_server.stop()
    try:
        started = time.monotonic()
        responses = []
        for i, strength in enumerate(strengths):
            if i % 2:
                body = entry_webhook(trade_id=str(100 + i),
                                     tag="t" if strength is None else f"t s={strength}")
            else:
                body = strategy_msg(strength=strength, candle=f"2026-11-24T20:{i:02d}:00Z")
            responses.append(post_webhook(strategy, body))
        elapsed = time.monotonic() - started
        assert [r.status_code for r in responses] == [200] * len(strengths)
        assert all(r.get_json()["stored"] and not r.get_json()["published"] for r in responses)
        assert elapsed < 5, f"the receiver must stay fast while Redis is down ({elapsed:.1f}s)"
        assert signal_count() == len(strengths)
        assert outbox_counts() == (len(strengths), graded_expected)
        # Redis still down: the sweeper delivers nothing and gives every claim back.
        result = outbox.sweep(min_age=0)
        assert (result.published, result.handed_on) == (0, 0) and result.error
        assert outbox_counts() == (len(strengths), graded_expected)
    finally:
        redis_server.start()

    listener = Subscriber(redis_server.url)
    try:
        # two sweepers at once (e.g. an overlapping periodic run) still deliver each signal once
        results = []

        def sweep_in_thread():
            with app.app_context():  # its own context, so its own database session
                results.append(outbox.sweep(min_age=0))

        threads = [threading.Thread(target=sweep_in_thread) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        published = listener.collect(len(strengths))
    finally:
        listener.close()
    ids = [r.get_json()["id"] for r in responses]
    assert sorted(published) == sorted(ids), "every signal published exactly once"
    assert sum(r.published for r in results) == len(strengths)
    assert sum(r.handed_on for r in results) == graded_expected
    jobs = notify_job_ids(redis_server.url)
    graded_ids = [i for i, s in zip(ids, strengths, strict=True) if s is not None and s >= 0.4]
    assert sorted(jobs) == sorted(f"signal-{i}" for i in graded_ids), "handed on exactly once"
    assert outbox_counts() == (0, 0)
    # a later sweep finds nothing to do
    again = outbox.sweep(min_age=0)
    assert (again.published, again.handed_on) == (0, 0)
    assert len(notify_job_ids(redis_server.url)) == graded_expected


def test_sweeper_leaves_fresh_signals_to_their_receiver(strategy, post_webhook, redis_server,
                                                        clean_outbox):
    redis_server.stop()
    try:
        post_webhook(strategy, strategy_msg(strength=0.9))
    finally:
        redis_server.start()
    result = outbox.sweep()  # default min_age: the signal is too young to be taken over
    assert (result.published, result.handed_on) == (0, 0)
    assert outbox_counts() == (1, 1)
    assert outbox.sweep(min_age=0).published == 1


def test_receiver_skips_redis_for_a_moment_after_a_failure(strategy, post_webhook,
                                                           redis_server, clean_outbox):
    redis_server.stop()
    try:
        post_webhook(strategy, strategy_msg(strength=0.9))
        assert outbox.redis_suspended()
    finally:
        redis_server.start()
    # Redis is back but the receiver waits for the back-off (the sweeper delivers meanwhile)
    later = post_webhook(strategy, strategy_msg(strength=0.9, candle="2026-11-24T21:00:00Z"))
    assert later.get_json()["published"] is False
    assert outbox.sweep(min_age=0).published == 2
    assert not outbox.redis_suspended()  # a successful sweep ends the back-off
    third = post_webhook(strategy, strategy_msg(strength=0.9, candle="2026-11-24T21:01:00Z"))
    assert third.get_json()["published"] is True


def test_periodic_job_is_registered(app):
    from app.tasks import PERIODIC_JOBS, interval_of
    from app.tasks.signals import sweep_outbox

    rows = [row for row in PERIODIC_JOBS if row[0] == "app.tasks.signals.sweep_outbox"]
    assert len(rows) == 1
    _, queue, interval, timeout = rows[0]
    assert queue in ("default", "notifications")
    assert interval_of(interval, app.config["BTCW_SETTINGS"]) <= 30
    assert timeout >= 60
    assert sweep_outbox() == {"published": 0, "handed_on": 0, "error": ""}


def test_sweep_job_delivers_what_redis_missed(strategy, post_webhook, redis_server,
                                              clean_outbox):
    from datetime import timedelta

    from app.clock import utcnow
    from app.tasks.signals import sweep_outbox

    redis_server.stop()
    try:
        signal_id = post_webhook(strategy, strategy_msg(strength=0.9)).get_json()["id"]
    finally:
        redis_server.start()
    assert sweep_outbox() == {"published": 0, "handed_on": 0, "error": ""}  # still too young
    db.session.execute(db.update(Signal).where(Signal.id == signal_id)
                       .values(received_at=utcnow() - timedelta(seconds=60)))
    db.session.commit()
    assert sweep_outbox() == {"published": 1, "handed_on": 1, "error": ""}
    assert notify_job_ids(redis_server.url) == [f"signal-{signal_id}"]


def test_signal_notes_are_text_not_raw_json():
    signal = json.dumps({"btcw": 1, "kind": "signal", "pair": "BTC/USDT", "action": "exit_long",
                         "candle": "2026-11-24T23:25:00+00:00", "timeframe": "1m",
                         "indicators": {"rsi": 71.23456, "adx": 30, "trend": "up"}})
    assert outbox.note_of("strategy_msg", None, None, {"msg": signal}) == \
        "1m candle 23:25 UTC · rsi 71.23 · adx 30 · trend up"
    # A tag wins; plain text and other JSON messages are shown as they are.
    assert outbox.note_of("strategy_msg", None, "rsi_high", {"msg": signal}) == "rsi_high"
    assert outbox.note_of("strategy_msg", None, None, {"msg": "hello {there}"}) == \
        "hello {there}"
    assert outbox.note_of("strategy_msg", None, None, {"msg": {"b": 1, "a": 2}}) == \
        '{"a": 2, "b": 1}'
    assert outbox.note_of("strategy_msg", None, None, {"msg": "{not json"}) == "{not json"
    assert outbox.note_of("status", None, None, {"status": "running"}) == "running"
    assert len(outbox.note_of("entry", "x" * 500, None, None)) == outbox.NOTE_CHARS
