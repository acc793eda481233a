"""The policy engine alone: an injected clock, the design's defaults, no database."""

from __future__ import annotations

import dataclasses
from datetime import time, timedelta

import pytest

from app.notifications.policy import (
    BATCH,
    SEND,
    SUPPRESS,
    ChannelRef,
    Event,
    Policy,
    RecentActivity,
    slot_contains,
)
from config.loader import NotificationSettings, TimeSlotSettings
from tests.notifications.conftest import FakeClock, local

# Depends on the database dialect: runs on SQLite and on PostgreSQL.
pytestmark = pytest.mark.both_databases

CHANNELS = [
    ChannelRef("inbox", "inbox", "inbox"),
    ChannelRef("sms", "sms_gateway", "sms"),
    ChannelRef("feishu", "feishu", "feishu"),
    ChannelRef("wechat", "wecom_bot", "wechat"),
    ChannelRef("email", "email", "email"),
    ChannelRef("tg", "telegram", "telegram"),
]


def decide(priority, at, pair="BTC/USDT", activity=RecentActivity(), settings=None):
    clock = FakeClock(local(at))
    policy = Policy(settings or NotificationSettings(), clock)
    return policy.decide(Event(priority, pair), CHANNELS, activity)


def actions(decision):
    return {v.channel: v.action for v in decision.verdicts}


def test_p0_at_night_goes_to_sms_only():
    decision = decide("P0", "2026-01-05 23:00")
    assert actions(decision) == {"inbox": SEND, "sms": SEND, "feishu": SUPPRESS,
                                 "wechat": SUPPRESS}
    reason = decision.for_channel("feishu").reason
    assert "rest hours" in reason and "23:00" in reason and "only sms" in reason
    assert decision.counts


def test_p1_in_work_hours_goes_to_feishu_wechat_email_within_a_minute():
    decision = decide("P1", "2026-01-05 10:00")
    assert actions(decision) == {"inbox": SEND, "feishu": SEND, "wechat": SEND, "email": SEND}
    now = local("2026-01-05 10:00")
    for name in ("feishu", "wechat", "email"):
        verdict = decision.for_channel(name)
        assert now <= verdict.send_at <= now + timedelta(seconds=60)


def test_p1_at_night_is_suppressed_with_the_reason_but_reaches_the_inbox():
    decision = decide("P1", "2026-01-05 03:00")
    assert actions(decision) == {"inbox": SEND, "feishu": SUPPRESS, "wechat": SUPPRESS,
                                 "email": SUPPRESS}
    assert "P1 is not sent now (only P0)" in decision.for_channel("email").reason
    assert not decision.counts


def test_p2_is_batched_for_the_digest():
    decision = decide("P2", "2026-01-05 11:00")
    assert actions(decision) == {"inbox": SEND, "email": BATCH}
    assert "next digest" in decision.for_channel("email").reason
    assert not decision.counts


def test_same_pair_within_the_window_is_batched_and_after_it_sent():
    first = local("2026-01-05 10:00")
    recent = RecentActivity(counted_last_minute=1, pair_last_counted_at=first)
    decision = decide("P1", "2026-01-05 10:04:59", activity=recent)
    assert actions(decision)["feishu"] == BATCH
    assert "BTC/USDT was notified 299 s ago" in decision.for_channel("feishu").reason
    later = decide("P1", "2026-01-05 10:05:00", activity=recent)
    assert actions(later)["feishu"] == SEND


def test_global_limit_folds_the_sixth_into_the_digest():
    full = RecentActivity(counted_last_minute=5)
    decision = decide("P0", "2026-01-05 10:00", pair="SOL/USDT", activity=full)
    assert actions(decision) == {"inbox": SEND, "sms": BATCH, "feishu": BATCH, "wechat": BATCH}
    assert "rate limit: 5 notifications in the last minute" in \
        decision.for_channel("sms").reason
    under = decide("P0", "2026-01-05 10:00", pair="SOL/USDT", activity=RecentActivity(4))
    assert actions(under)["sms"] == SEND and under.counts


def test_alerts_have_no_pair_so_only_the_global_limit_applies():
    clock = FakeClock(local("2026-01-05 10:00"))
    policy = Policy(NotificationSettings(), clock)
    recent = RecentActivity(1, pair_last_counted_at=clock())
    decision = policy.decide(Event("P0", None, "alert"), CHANNELS, recent)
    assert actions(decision)["sms"] == SEND


@pytest.mark.parametrize(("start", "end", "moment", "inside"), [
    ("09:00", "18:00", "09:00", True), ("09:00", "18:00", "17:59", True),
    ("09:00", "18:00", "18:00", False), ("18:00", "09:00", "23:30", True),
    ("18:00", "09:00", "00:00", True), ("18:00", "09:00", "08:59", True),
    ("18:00", "09:00", "09:00", False), ("18:00", "09:00", "12:00", False),
    ("00:00", "00:00", "12:00", True),
])
def test_windows_cross_midnight(start, end, moment, inside):
    slot = TimeSlotSettings(start, end)
    hours, minutes = map(int, moment.split(":"))
    assert slot_contains(slot, time(hours, minutes)) is inside


def test_time_zone_decides_the_slot():
    # 02:00 UTC is 10:00 in Shanghai (work hours) and 21:00 the day before in New York.
    utc = local("2026-01-05 10:00")
    shanghai = Policy(NotificationSettings(), FakeClock(utc))
    new_york = Policy(NotificationSettings(timezone="America/New_York"), FakeClock(utc))
    email = CHANNELS[4]
    assert shanghai.allows("P1", email, utc) == (True, "")
    allowed, why = new_york.allows("P1", email, utc)
    assert not allowed and "21:00 America/New_York" in why


def test_all_and_type_and_name_entries_match():
    settings = NotificationSettings()
    slots = dict(settings.time_slots)
    slots["work_hours"] = dataclasses.replace(slots["work_hours"], enabled_channels=["all"])
    priorities = dict(settings.priorities)
    priorities["P0"] = dataclasses.replace(priorities["P0"], channels=["telegram", "email"])
    settings = dataclasses.replace(settings, time_slots=slots, priorities=priorities)
    decision = decide("P0", "2026-01-05 12:00", settings=settings)
    assert actions(decision) == {"inbox": SEND, "email": SEND, "tg": SEND}


def test_disabled_channels_are_not_targets():
    channels = [ChannelRef("inbox", "inbox", "inbox"),
                ChannelRef("sms", "sms", "sms", enabled=False)]
    policy = Policy(NotificationSettings(), FakeClock(local("2026-01-05 23:00")))
    decision = policy.decide(Event("P0", "BTC/USDT"), channels, RecentActivity())
    assert actions(decision) == {"inbox": SEND}
    assert not decision.counts


def test_digest_takes_its_most_urgent_priority():
    policy = Policy(NotificationSettings(), FakeClock(local("2026-01-05 23:00")))
    sms = CHANNELS[1]
    assert policy.digest_allowed(["P2", "P0"], sms)[0]
    assert not policy.digest_allowed(["P2"], CHANNELS[4])[0]
