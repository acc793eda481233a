"""The notification policy: which channel gets what, now, later in a digest, or not at all.

Pure: no database, no Redis, no wall clock. The caller passes the settings, the channels, what
recently went out (`RecentActivity`) and a clock; `Policy.decide()` returns one verdict per
channel with the reason. Rules, in order:

1. The inbox always receives (it is silent and local: no rate limit, no quiet hours).
2. A priority goes to the channels its rule names (a channel name, type, family or "all").
3. Time slots in the owner's time zone: a channel outside the slot's priorities/channels is
   `suppress`ed with the reason (windows may cross midnight; no matching slot = no restriction).
4. A digest priority (P2) is `batch`ed: it goes out in the next digest of that channel.
5. The same pair at most once per `same_pair_interval`, and at most `global_max_per_minute`
   notifications per minute overall: what is held back is `batch`ed into the next digest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from app.clock import utcnow
from config.loader import ChannelSettings, NotificationSettings, TimeSlotSettings

PRIORITY_ORDER = ("P0", "P1", "P2")
SEND, BATCH, SUPPRESS = "send", "batch", "suppress"


@dataclass(frozen=True)
class ChannelRef:
    """A configured channel as the policy sees it."""

    name: str
    type: str
    family: str
    enabled: bool = True

    @classmethod
    def from_settings(cls, name: str, channel: ChannelSettings) -> ChannelRef:
        """The policy's view of one configured channel."""
        return cls(name, channel.type, channel.family, channel.enabled)

    def matches(self, entry: str) -> bool:
        """True when a rule entry names this channel, its type, its family, or "all"."""
        return entry in ("all", self.name, self.type, self.family)


@dataclass(frozen=True)
class Event:
    """What is to be notified: a signal or alert reduced to what the rules look at."""

    priority: str
    pair: str | None = None
    kind: str = "signal"


@dataclass(frozen=True)
class RecentActivity:
    """What already went out: counted notifications in the last minute, the pair's last one."""

    counted_last_minute: int = 0
    pair_last_counted_at: datetime | None = None  # naive UTC


@dataclass(frozen=True)
class Verdict:
    """The policy's answer for one channel."""

    channel: str
    action: str  # send | batch | suppress
    reason: str
    send_at: datetime | None = None  # naive UTC; when action is send


@dataclass(frozen=True)
class Decision:
    """All verdicts for one event; `counts` says it counts against the rate limits."""

    verdicts: tuple[Verdict, ...]
    counts: bool

    def for_channel(self, name: str) -> Verdict | None:
        """The verdict for a channel name, if the event goes there at all."""
        return next((v for v in self.verdicts if v.channel == name), None)


def parse_hhmm(text: str) -> time:
    """'09:30' -> time(9, 30)."""
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def slot_contains(slot: TimeSlotSettings, moment: time) -> bool:
    """True when a local time of day falls in the slot; start > end wraps past midnight."""
    start, end = parse_hhmm(slot.start_time), parse_hhmm(slot.end_time)
    if start == end:
        return True  # a 24-hour slot
    if start < end:
        return start <= moment < end
    return moment >= start or moment < end


def highest_priority(priorities: Iterable[str]) -> str:
    """The most urgent of some priorities (P0 beats P1 beats P2)."""
    ranked = [p for p in PRIORITY_ORDER if p in set(priorities)]
    return ranked[0] if ranked else "P2"


class Policy:
    """The rules of config/notifications.yml applied at a moment given by an injected clock."""

    def __init__(self, settings: NotificationSettings,
                 clock: Callable[[], datetime] | None = None):
        self.settings = settings
        self.zone = ZoneInfo(settings.timezone)
        self.clock = clock or utcnow

    # -- time slots -------------------------------------------------------------------------

    def local_time(self, now: datetime) -> datetime:
        """A naive-UTC moment in the owner's time zone."""
        return now.replace(tzinfo=UTC).astimezone(self.zone)

    def active_slots(self, now: datetime) -> list[tuple[str, TimeSlotSettings]]:
        """The time slots that contain this moment (owner's local time)."""
        moment = self.local_time(now).time()
        return [(n, s) for n, s in self.settings.time_slots.items() if slot_contains(s, moment)]

    def allows(self, priority: str, channel: ChannelRef, now: datetime) -> tuple[bool, str]:
        """Whether the time slots let this priority out on this channel now, and why not."""
        slots = self.active_slots(now)
        if not slots:
            return True, ""
        for _, slot in slots:
            if priority in slot.enabled_priorities and any(
                channel.matches(e) for e in slot.enabled_channels
            ):
                return True, ""
        name, slot = slots[0]
        local = self.local_time(now).strftime("%H:%M")
        if not any(priority in s.enabled_priorities for _, s in slots):
            return False, (f"{name.replace('_', ' ')} ({slot.start_time}–{slot.end_time}, "
                           f"{local} {self.settings.timezone}): {priority} is not sent now "
                           f"(only {', '.join(slot.enabled_priorities) or 'nothing'})")
        return False, (f"{name.replace('_', ' ')} ({slot.start_time}–{slot.end_time}, "
                       f"{local} {self.settings.timezone}): channel {channel.name} is off now "
                       f"(only {', '.join(slot.enabled_channels) or 'none'})")

    # -- one event --------------------------------------------------------------------------

    def targets(self, priority: str, channels: Iterable[ChannelRef]) -> list[ChannelRef]:
        """Enabled external channels that this priority's rule names."""
        rule = self.settings.priorities.get(priority)
        if rule is None:
            return []
        return [c for c in channels if c.enabled and c.type != "inbox"
                and any(c.matches(e) for e in rule.channels)]

    def decide(self, event: Event, channels: Iterable[ChannelRef],
               activity: RecentActivity, now: datetime | None = None) -> Decision:
        """One verdict per channel the event goes to (see the module docstring)."""
        now = now or self.clock()
        channels = list(channels)
        limits = self.settings.rate_limiting
        verdicts = [Verdict(c.name, SEND, "the inbox receives everything", now)
                    for c in channels if c.type == "inbox" and c.enabled]
        allowed = []
        for channel in self.targets(event.priority, channels):
            ok, why = self.allows(event.priority, channel, now)
            if ok:
                allowed.append(channel)
            else:
                verdicts.append(Verdict(channel.name, SUPPRESS, why))
        if not allowed:
            return Decision(tuple(verdicts), counts=False)

        rule = self.settings.priorities[event.priority]
        hold = ""
        if rule.digest:
            hold = (f"{event.priority} goes out in the next digest "
                    f"(every {limits.batch_interval} s)")
        elif (event.pair and activity.pair_last_counted_at is not None
              and limits.same_pair_interval > 0
              and now - activity.pair_last_counted_at
              < timedelta(seconds=limits.same_pair_interval)):
            ago = int((now - activity.pair_last_counted_at).total_seconds())
            hold = (f"same pair: {event.pair} was notified {ago} s ago (at most once per "
                    f"{limits.same_pair_interval} s); folded into the next digest")
        elif activity.counted_last_minute >= limits.global_max_per_minute:
            hold = (f"rate limit: {activity.counted_last_minute} notifications in the last "
                    f"minute (at most {limits.global_max_per_minute}); folded into the next "
                    f"digest")
        if hold:
            verdicts += [Verdict(c.name, BATCH, hold) for c in allowed]
            return Decision(tuple(verdicts), counts=False)
        verdicts += [Verdict(c.name, SEND, f"{event.priority}: send within "
                             f"{rule.delay_seconds} s", now) for c in allowed]
        return Decision(tuple(verdicts), counts=True)

    # -- digests ----------------------------------------------------------------------------

    def digest_allowed(self, priorities: Iterable[str], channel: ChannelRef,
                       now: datetime | None = None) -> tuple[bool, str]:
        """Whether a digest holding these priorities may go out on the channel now.

        A digest takes the most urgent priority it holds, so a P0 held back by the rate limit
        still reaches SMS at night, while a digest of P2s waits for work hours.
        """
        return self.allows(highest_priority(priorities), channel, now or self.clock())
