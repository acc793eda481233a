"""Signals and alerts through policy, storage and delivery to real loopback receivers.

The clock is injected everywhere: `notify_signal(..., clock=clock)` decides at that moment and
`run_due(clock)` is what a worker would do at that moment (dispatcher.deliver for each due
delivery). test_worker.py runs the same through real RQ workers.
"""

from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.notifications import dispatcher, service
from app.notifications.models import DeliveryAttempt, Notification, NotificationDelivery
from config.loader import ChannelSettings, NotificationSettings
from tests.notifications.conftest import INBOX, FakeClock, http_channel, local, smtp_channel

# Depends on the database dialect: runs on SQLite and on PostgreSQL.
pytestmark = pytest.mark.both_databases


def run_due(clock) -> list[dispatcher.DeliveryResult]:
    """Deliver everything due at the clock's moment, as a worker would."""
    return [dispatcher.deliver(d.id, clock=clock) for d in dispatcher.due_deliveries(clock())]


def statuses(notification: Notification) -> dict[str, str]:
    db.session.refresh(notification)
    return {d.channel: d.status for d in notification.deliveries}


@pytest.fixture
def desk(configure, http_receiver, smtp_receiver):
    """The design's channels: sms (HTTP gateway), feishu, wechat (WeCom bot), email, inbox."""
    channels = {
        "inbox": INBOX,
        "sms": http_channel("sms_gateway", http_receiver,
                            url=f"{http_receiver.url}/sms/send"),
        "feishu": http_channel("feishu", http_receiver, secret="fs"),
        "wechat": http_channel("wecom_bot", http_receiver),
        "email": smtp_channel(smtp_receiver),
    }
    configure(channels=channels)
    return http_receiver, smtp_receiver


def paths(receiver) -> list[str]:
    return [r.path for r in receiver.requests]


def test_p0_at_23_00_goes_to_sms_only(desk, make_signal):
    http, smtp = desk
    clock = FakeClock(local("2026-01-05 23:00"))
    notification = service.notify_signal(make_signal("BTC/USDT", "P0").id, clock=clock)
    assert statuses(notification) == {"inbox": "sent", "sms": "queued",
                                      "feishu": "suppressed", "wechat": "suppressed"}
    run_due(clock)
    assert paths(http) == ["/sms/send"]
    assert "BTC/USDT" in http.requests[0].json["message"]
    assert smtp.messages == []
    assert statuses(notification)["sms"] == "sent"
    feishu = next(d for d in notification.deliveries if d.channel == "feishu")
    assert "rest hours" in feishu.reason


def test_p1_at_10_00_reaches_feishu_wechat_and_email_within_60_s(desk, make_signal):
    http, smtp = desk
    clock = FakeClock(local("2026-01-05 10:00"))
    notification = service.notify_signal(make_signal("ETH/USDT", "P1").id, clock=clock)
    clock.advance(1)
    run_due(clock)
    assert sorted(paths(http)) == ["/cgi-bin/webhook/send", "/open-apis/bot/v2/hook/hook-1"]
    assert len(smtp.wait_for(1)) == 1
    db.session.refresh(notification)
    for delivery in notification.deliveries:
        assert delivery.status == "sent"
        assert (delivery.sent_at - notification.created_at).total_seconds() <= 60
    assert {d.channel for d in notification.deliveries} == {"inbox", "feishu", "wechat", "email"}


def test_three_p2_make_one_digest(desk, make_signal):
    http, smtp = desk
    clock = FakeClock(local("2026-01-05 10:00"))
    items = []
    for pair in ("BTC/USDT", "ETH/USDT", "SOL/USDT"):
        items.append(service.notify_signal(make_signal(pair, "P2").id, clock=clock))
        clock.advance(60)
    assert all(statuses(n)["email"] == "batched" for n in items)
    run_due(clock)
    assert smtp.messages == [] and http.requests == []
    digests = service.send_digests(clock=clock)
    assert len(digests) == 1
    digest = digests[0]
    assert digest.kind == "digest" and digest.title.startswith("[P2] Digest: 3 notifications")
    run_due(clock)
    (mail,) = smtp.wait_for(1)
    text = mail.content.decode()
    for pair in ("BTC/USDT", "ETH/USDT", "SOL/USDT"):
        assert pair in text
    for item in items:
        email = next(d for d in item.deliveries if d.channel == "email")
        db.session.refresh(email)
        assert email.status == "batched" and email.digest_id == digest.id
    assert service.send_digests(clock=clock) == [], "nothing left to digest"


def test_same_pair_twice_in_300_s_folds_the_second_into_the_digest(desk, make_signal):
    clock = FakeClock(local("2026-01-05 10:00"))
    first = service.notify_signal(make_signal("BTC/USDT", "P1").id, clock=clock)
    clock.advance(120)
    second = service.notify_signal(make_signal("BTC/USDT", "P1").id, clock=clock)
    assert statuses(first)["feishu"] == "queued"
    assert statuses(second) == {"inbox": "sent", "feishu": "batched", "wechat": "batched",
                                "email": "batched"}
    assert "same pair" in second.deliveries[1].reason
    clock.advance(181)
    third = service.notify_signal(make_signal("BTC/USDT", "P1").id, clock=clock)
    assert statuses(third)["feishu"] == "queued"


def test_seven_signals_in_a_minute_send_five_and_batch_two(desk, make_signal):
    http, _ = desk
    clock = FakeClock(local("2026-01-05 10:00"))
    pairs = ["BTC/USDT", "ETH/USDT", "SOL/USDT", "ADA/USDT", "DOT/USDT", "XRP/USDT", "LTC/USDT"]
    notes = []
    for pair in pairs:
        notes.append(service.notify_signal(make_signal(pair, "P0").id, clock=clock))
        clock.advance(5)
    sms = [statuses(n)["sms"] for n in notes]
    assert sms == ["queued"] * 5 + ["batched"] * 2
    run_due(clock)
    assert paths(http).count("/sms/send") == 5
    digests = service.send_digests(clock=clock)
    assert {d.deliveries[0].channel for d in digests} == {"sms", "feishu", "wechat"}
    sms_digest = next(d for d in digests if d.deliveries[0].channel == "sms")
    assert "XRP/USDT" in sms_digest.body and "LTC/USDT" in sms_digest.body
    # a minute later the window has room again
    clock.advance(61)
    later = service.notify_signal(make_signal("BNB/USDT", "P0").id, clock=clock)
    assert statuses(later)["sms"] == "queued"


def test_500_twice_then_200_is_sent_once_after_three_attempts(configure, http_receiver,
                                                               make_signal):
    configure(channels={"hook": http_channel("webhook", http_receiver, retry_backoff=5.0)},
              priorities={"P0": dataclasses.replace(NotificationSettings().priorities["P0"],
                                                    channels=["webhook"])})
    http_receiver.reply(500, "boom", {"Content-Type": "text/plain"})
    http_receiver.reply(500, "boom", {"Content-Type": "text/plain"})
    clock = FakeClock(local("2026-01-05 10:00"))
    notification = service.notify_signal(make_signal("BTC/USDT", "P0").id, clock=clock)
    delivery = next(d for d in notification.deliveries if d.channel == "hook")

    first = dispatcher.deliver(delivery.id, clock=clock)
    assert first.outcome == "retry" and first.retry_at == clock() + _seconds(5)
    assert dispatcher.deliver(delivery.id, clock=clock).outcome == "skipped", "not due yet"
    clock.advance(5)
    second = dispatcher.deliver(delivery.id, clock=clock)
    assert second.outcome == "retry" and second.retry_at == clock() + _seconds(10)
    clock.advance(10)
    assert dispatcher.deliver(delivery.id, clock=clock).outcome == "sent"
    assert dispatcher.deliver(delivery.id, clock=clock).outcome == "skipped"

    db.session.refresh(delivery)
    assert delivery.status == "sent" and delivery.attempts == 3
    assert [a.outcome for a in delivery.attempt_log] == ["error", "error", "ok"]
    assert [a.status_code for a in delivery.attempt_log] == [500, 500, 200]
    assert len(http_receiver.requests) == 3
    keys = {r.headers["Idempotency-Key"] for r in http_receiver.requests}
    assert keys == {delivery.idempotency_key}


def test_telegram_429_retry_after_is_honoured(configure, http_receiver, make_signal):
    configure(channels={"tg": http_channel("telegram", http_receiver, retry_backoff=1.0)},
              priorities={"P0": dataclasses.replace(NotificationSettings().priorities["P0"],
                                                    channels=["telegram"])})
    http_receiver.reply(429, {"ok": False, "error_code": 429, "description": "Too Many Requests",
                              "parameters": {"retry_after": 30}})
    clock = FakeClock(local("2026-01-05 10:00"))
    notification = service.notify_signal(make_signal("BTC/USDT", "P0").id, clock=clock)
    delivery = next(d for d in notification.deliveries if d.channel == "tg")
    result = dispatcher.deliver(delivery.id, clock=clock)
    assert result.outcome == "retry" and result.retry_at == clock() + _seconds(30)
    clock.advance(29)
    assert run_due(clock) == [] and len(http_receiver.requests) == 1
    clock.advance(1)
    assert [r.outcome for r in run_due(clock)] == ["sent"]
    db.session.refresh(delivery)
    assert delivery.attempt_log[0].retry_after == 30 and delivery.attempts == 2


def test_gives_up_after_max_attempts_and_keeps_every_attempt(configure, http_receiver,
                                                             make_signal):
    configure(channels={"hook": http_channel("webhook", http_receiver, max_attempts=2)},
              priorities={"P0": dataclasses.replace(NotificationSettings().priorities["P0"],
                                                    channels=["webhook"])})
    http_receiver.reply(502, "down").reply(502, "down")
    clock = FakeClock(local("2026-01-05 10:00"))
    notification = service.notify_signal(make_signal("BTC/USDT", "P0").id, clock=clock)
    run_due(clock)
    clock.advance(1)
    run_due(clock)
    delivery = next(d for d in notification.deliveries if d.channel == "hook")
    db.session.refresh(delivery)
    assert delivery.status == "failed" and delivery.attempts == 2
    assert "HTTP 502" in delivery.last_error and "gave up after 2 attempts" in delivery.reason
    assert run_due(clock) == []


def test_duplicate_jobs_send_once(desk, make_signal):
    http, _ = desk
    clock = FakeClock(local("2026-01-05 23:00"))
    signal = make_signal("BTC/USDT", "P0")
    first = service.notify_signal(signal.id, clock=clock)
    again = service.notify_signal(signal.id, clock=clock)
    assert first.id == again.id
    assert db.session.scalar(select(func.count(Notification.id))) == 1
    sms = next(d for d in first.deliveries if d.channel == "sms")
    assert dispatcher.deliver(sms.id, clock=clock).outcome == "sent"
    assert dispatcher.deliver(sms.id, clock=clock).outcome == "skipped"
    assert paths(http) == ["/sms/send"]


def test_claimed_delivery_is_not_sent_by_a_second_worker(desk, make_signal):
    http, _ = desk
    clock = FakeClock(local("2026-01-05 23:00"))
    notification = service.notify_signal(make_signal("BTC/USDT", "P0").id, clock=clock)
    sms = next(d for d in notification.deliveries if d.channel == "sms")
    assert dispatcher.claim(sms.id, clock(), 60) is not None
    db.session.commit()
    assert dispatcher.deliver(sms.id, clock=clock).outcome == "skipped"
    assert http.requests == []


def _interrupt(delivery_id: int, clock) -> None:
    """What a worker killed mid-send leaves: a claim and an attempt still `sending`."""
    token = dispatcher.claim(delivery_id, clock(), 10)
    assert token
    delivery = db.session.get(NotificationDelivery, delivery_id)
    delivery.attempts += 1
    db.session.add(DeliveryAttempt(delivery_id=delivery_id, number=delivery.attempts,
                                   outcome="sending", created_at=clock()))
    db.session.commit()


def test_interrupted_send_is_not_repeated_on_a_channel_without_dedupe(desk, make_signal):
    http, _ = desk
    clock = FakeClock(local("2026-01-05 23:00"))
    notification = service.notify_signal(make_signal("BTC/USDT", "P0").id, clock=clock)
    sms = next(d for d in notification.deliveries if d.channel == "sms")
    _interrupt(sms.id, clock)
    assert run_due(clock) == [], "the lease still holds"
    clock.advance(11)
    (result,) = run_due(clock)
    assert result.outcome == "failed" and "outcome unknown" in result.detail
    db.session.refresh(sms)
    assert sms.status == "failed" and sms.attempts == 1
    assert [a.outcome for a in sms.attempt_log] == ["unknown"]
    assert http.requests == [], "never sent a second time by itself"
    # a person decides to send it again
    service.resend(sms.id, now=clock())
    run_due(clock)
    db.session.refresh(sms)
    assert sms.status == "sent" and sms.attempts == 2 and paths(http) == ["/sms/send"]


def test_interrupted_send_is_repeated_on_a_deduplicating_channel(configure, http_receiver,
                                                                 make_signal):
    configure(channels={"wechat": http_channel("wecom_app", http_receiver)})
    clock = FakeClock(local("2026-01-05 10:00"))
    notification = service.notify_signal(make_signal("BTC/USDT", "P1").id, clock=clock)
    wechat = next(d for d in notification.deliveries if d.channel == "wechat")
    _interrupt(wechat.id, clock)
    clock.advance(11)
    (result,) = run_due(clock)
    assert result.outcome == "sent"
    db.session.refresh(wechat)
    assert [a.outcome for a in wechat.attempt_log] == ["unknown", "ok"]
    send = [r for r in http_receiver.requests if r.path == "/cgi-bin/message/send"]
    assert send[0].json["enable_duplicate_check"] == 1


def test_no_answer_is_marked_unknown_not_retried(configure, http_receiver, make_signal):
    configure(channels={"hook": http_channel("webhook", http_receiver, timeout=0.5)},
              priorities={"P0": dataclasses.replace(NotificationSettings().priorities["P0"],
                                                    channels=["webhook"])})
    http_receiver.hold()
    clock = FakeClock(local("2026-01-05 10:00"))
    notification = service.notify_signal(make_signal("BTC/USDT", "P0").id, clock=clock)
    try:
        (result,) = run_due(clock)
    finally:
        http_receiver.release()
    assert result.outcome == "failed" and "outcome unknown" in result.detail
    clock.advance(600)
    assert run_due(clock) == []
    assert len(http_receiver.requests) == 1
    hook = next(d for d in notification.deliveries if d.channel == "hook")
    db.session.refresh(hook)
    assert hook.attempt_log[0].outcome == "unknown"


def test_channel_removed_after_queueing_is_suppressed_with_reason(desk, configure, make_signal):
    clock = FakeClock(local("2026-01-05 23:00"))
    notification = service.notify_signal(make_signal("BTC/USDT", "P0").id, clock=clock)
    configure(channels={"inbox": INBOX})
    (result,) = run_due(clock)
    assert result.outcome == "suppressed"
    sms = next(d for d in notification.deliveries if d.channel == "sms")
    db.session.refresh(sms)
    assert sms.status == "suppressed" and "no longer configured" in sms.reason


def test_ignored_signal_is_not_notified(desk, make_signal):
    assert service.notify_signal(make_signal("BTC/USDT", "IGNORE").id) is None
    assert db.session.scalar(select(func.count(Notification.id))) == 0
    with pytest.raises(LookupError, match="No signal with id 999999"):
        service.notify_signal(999999)


def test_critical_alert_is_p0_and_goes_to_sms_at_night(desk, strategy):
    from app.monitoring.models import Alert

    http, _ = desk
    alert = Alert(kind="bot_crashed", severity="critical", source="supervisor",
                  strategy_id=strategy.id, message="TrendBot exited with code 1",
                  created_at=local("2026-01-05 02:00"))
    db.session.add(alert)
    db.session.commit()
    clock = FakeClock(local("2026-01-05 02:00"))
    notification = service.notify_alert(alert.id, clock=clock)
    assert notification.priority == "P0" and notification.kind == "alert"
    assert "bot crashed" in notification.title and "TrendBot" in notification.title
    assert notification.link.endswith(f"/strategies/{strategy.id}")
    assert statuses(notification) == {"inbox": "sent", "sms": "queued", "feishu": "suppressed",
                                      "wechat": "suppressed"}
    run_due(clock)
    assert "TrendBot exited with code 1" in http.requests[0].json["message"]


@pytest.mark.parametrize(("severity", "priority"), [("warning", "P1"), ("info", "P2")])
def test_alert_severity_maps_to_priority(desk, severity, priority):
    from app.monitoring.models import Alert

    alert = Alert(kind="gateway_health", severity=severity, message="health 70")
    db.session.add(alert)
    db.session.commit()
    assert service.notify_alert(alert.id).priority == priority


def test_inbox_receives_everything_and_counts_unread(desk, make_signal):
    clock = FakeClock(local("2026-01-05 03:00"))
    service.notify_signal(make_signal("BTC/USDT", "P2").id, clock=clock)  # night, P2
    service.notify_signal(make_signal("ETH/USDT", "P1").id, clock=clock)
    assert service.unread_count() == 2
    entries, _ = service.inbox()
    assert [e.notification.pair for e in entries] == ["ETH/USDT", "BTC/USDT"]
    assert service.mark_read([entries[0].id]) == 1
    assert service.unread_count() == 1
    assert service.mark_read() == 1 and service.unread_count() == 0


def test_inbox_is_on_by_default_with_no_channels_configured(configure, make_signal):
    configure(channels={})
    notification = service.notify_signal(make_signal("BTC/USDT", "P0").id)
    assert statuses(notification) == {"inbox": "sent"}
    assert service.unread_count() == 1


def test_disabled_inbox_receives_nothing(configure, make_signal):
    configure(channels={"inbox": ChannelSettings(type="inbox", enabled=False)})
    notification = service.notify_signal(make_signal("BTC/USDT", "P0").id)
    assert statuses(notification) == {}


def test_templates_detailed_custom_and_a_broken_custom(configure, make_signal):
    signal = make_signal("BTC/USDT", "P0", indicators={"rsi": 27.5, "macd": -1.25})
    configure(channels={"inbox": INBOX}, templates={"signal_template": "detailed"})
    detailed = service.notify_signal(signal.id)
    assert "Strategy: TrendBot" in detailed.body and "Indicators: macd=-1.25, rsi=27.5" in \
        detailed.body and f"/signals/{signal.id}" in detailed.body

    configure(templates={"signal_template": "custom", "include_chart_link": False,
                         "custom_template": "{{ strategy.name }} {{ signal.pair }} "
                                            "rsi={{ indicators.rsi }} {{ link }}"})
    other = make_signal("ETH/USDT", "P1")
    custom = service.notify_signal(other.id)
    assert custom.body == (f"TrendBot ETH/USDT rsi=27.5 "
                           f"http://127.0.0.1:8000/signals/{other.id}")

    configure(templates={"custom_template": "{{ signal.nope }}"})
    broken = service.notify_signal(make_signal("SOL/USDT", "P1").id)
    assert "custom template" in broken.render_error and "nope" in broken.render_error
    assert "Strategy: TrendBot" in broken.body, "falls back to the detailed text"

    configure(templates={"custom_template": "{{ ''.__class__.__mro__ }}"})
    sandboxed = service.notify_signal(make_signal("ADA/USDT", "P1").id)
    assert sandboxed.render_error, "the sandbox refuses attribute escapes"


def test_simple_template_without_indicators_or_link(configure, make_signal):
    configure(channels={"inbox": INBOX}, templates={"signal_template": "simple",
                                                    "include_indicators": False,
                                                    "include_chart_link": False})
    signal = make_signal("BTC/USDT", "P0")
    notification = service.notify_signal(signal.id)
    assert "rsi" not in notification.body and "/signals/" not in notification.body
    rate = f"{signal.rate:g}"
    assert notification.title == f"[P0] TrendBot: entry long BTC/USDT @ {rate} (strong, 0.90)"
    assert notification.body == f"TrendBot: entry long BTC/USDT at {rate} (strength strong 0.9)"


@pytest.mark.parametrize(("columns", "title"), [
    ({"action": "exit_long", "direction": "long", "pair": "ADA/USDT", "rate": 0.7096,
      "strength_raw": 0.83, "strength_level": "strong", "message_type": "exit"},
     "[P1] TrendBot: exit long ADA/USDT @ 0.7096 (strong, 0.83)"),
    ({"action": "enter_short", "direction": "short", "pair": "ETH/USDT", "rate": 3120.5,
      "strength_raw": 0.61, "strength_level": "medium", "message_type": "strategy_msg"},
     "[P1] TrendBot: entry short ETH/USDT @ 3120.5 (medium, 0.61)"),
    ({"action": "entry", "direction": "long", "pair": "BTC/USDT", "rate": None,
      "strength_raw": None, "strength_level": "weak"},
     "[P1] TrendBot: entry long BTC/USDT (weak)"),
])
def test_signal_titles_read_like_a_sentence(configure, make_signal, columns, title):
    configure(channels={"inbox": INBOX}, templates={"signal_template": "detailed"})
    pair = columns.pop("pair")
    notification = service.notify_signal(make_signal(pair, "P1", **columns).id)
    assert notification.title == title
    action = title.split(": ", 1)[1].split(f" {pair}")[0]
    assert f"Action: {action} (" in notification.body
    assert "exit_long long" not in notification.title + notification.body


def test_send_test_reports_success_and_failure(configure, http_receiver):
    configure(channels={"inbox": INBOX, "hook": http_channel("webhook", http_receiver)})
    _, outcome, _ = service.send_test("hook")
    assert outcome == "sent" and http_receiver.requests[0].json["kind"] == "test"
    http_receiver.reply(500, "down")
    notification, outcome, detail = service.send_test("hook")
    assert outcome == "failed" and "HTTP 500" in detail, "a test tries once and reports"
    assert notification.deliveries[0].attempts == 1
    with pytest.raises(LookupError):
        service.send_test("nope")


def _seconds(value):
    from datetime import timedelta

    return timedelta(seconds=value)
