"""Notifications: turn signals and alerts into deliveries, send digests, answer the pages.

Pipeline: `notify_signal` / `notify_alert` render the message once, ask the Policy what each
channel gets (under a Redis lock, so the rate limits hold with many workers), store the
Notification with one NotificationDelivery per channel in one transaction, then enqueue a
`deliver` job for each delivery that is to go out now. `send_digests` folds what was batched
into one digest per channel; `deliver_due` hands on anything queued that no job holds (P1 within
its delay even when Redis hiccuped, retries, interrupted sends).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from redis.exceptions import LockError
from sqlalchemy import case, exists, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from app.clock import isoformat, utcnow
from app.errors import AppError, Conflict, NotFound
from app.extensions import db, redis_store
from app.monitoring.models import Alert
from app.notifications import dispatcher, messages
from app.notifications.channels import build_channel, configured_channels
from app.notifications.models import (
    DELIVERY_STATUSES,
    NOTIFICATION_KINDS,
    PRIORITIES,
    DeliveryAttempt,
    Notification,
    NotificationDelivery,
)
from app.notifications.policy import (
    BATCH,
    SEND,
    SUPPRESS,
    ChannelRef,
    Event,
    Policy,
    RecentActivity,
    highest_priority,
)
from app.signals.models import ConsensusSignal, Signal, SignalOutcome
from app.strategies.models import Strategy
from app.system.settings import current_settings

log = logging.getLogger(__name__)
POLICY_LOCK = "btcw:notifications:policy"
SEVERITY_PRIORITY = {"critical": "P0", "warning": "P1", "info": "P2"}
Clock = Callable[[], datetime]


# ------------------------------------------------------------------------------ helpers


def make_policy(clock: Clock | None = None) -> Policy:
    """The policy of the current settings, on the given clock (default: the wall clock)."""
    return Policy(current_settings().notifications, clock)


def channel_refs() -> list[ChannelRef]:
    """Every configured channel (the inbox included) as the policy sees it."""
    return [ChannelRef.from_settings(name, c)
            for name, c in configured_channels(current_settings().notifications).items()]


def public_url() -> str:
    """The address pages are reached at, for links in messages."""
    return current_settings().system.web.public_url


@contextmanager
def policy_lock() -> Iterator[None]:
    """Serialise decisions so two workers cannot both take the last slot of the minute."""
    lock = redis_store.client.lock(POLICY_LOCK, timeout=60, blocking_timeout=30)
    if not lock.acquire():
        raise TimeoutError("the notification policy lock is held for more than 30 s")
    try:
        yield
    finally:
        try:
            lock.release()
        except LockError:  # expired while we worked: nothing left to release
            log.warning("policy lock expired before release")


def recent_activity(pair: str | None, now: datetime) -> RecentActivity:
    """How many notifications counted in the last minute, and when the pair last did."""
    since = now - timedelta(seconds=60)
    counted = db.session.scalar(
        select(func.count(Notification.id)).where(Notification.counted_at > since,
                                                  Notification.counted_at <= now)
    ) or 0
    last = None
    if pair:
        last = db.session.scalar(
            select(func.max(Notification.counted_at)).where(Notification.pair == pair,
                                                            Notification.counted_at <= now)
        )
    return RecentActivity(counted, last)


# ------------------------------------------------------------------------- the pipeline


def _existing(signal_id: int | None, alert_id: int | None) -> Notification | None:
    if signal_id is not None:
        return db.session.scalar(select(Notification).where(Notification.signal_id == signal_id))
    if alert_id is not None:
        return db.session.scalar(select(Notification).where(Notification.alert_id == alert_id))
    return None


def _record(kind: str, priority: str, rendered: messages.RenderedMessage, *, now: datetime,
            clock: Clock | None, pair: str | None = None, signal_id: int | None = None,
            alert_id: int | None = None, strategy_id: int | None = None) -> Notification:
    """Decide and store one notification with its deliveries; enqueue what goes out now."""
    refs = {r.name: r for r in channel_refs()}
    with policy_lock():
        found = _existing(signal_id, alert_id)
        if found is not None:
            return found
        decision = make_policy(clock).decide(Event(priority, pair, kind), refs.values(),
                                             recent_activity(pair, now), now)
        notification = Notification(
            kind=kind, priority=priority, signal_id=signal_id, alert_id=alert_id,
            strategy_id=strategy_id, pair=pair, title=rendered.title, body=rendered.body,
            link=rendered.link, data=rendered.data, render_error=rendered.render_error,
            counted_at=now if decision.counts else None, created_at=now,
        )
        db.session.add(notification)
        try:
            db.session.flush()
        except IntegrityError:
            db.session.rollback()
            return _existing(signal_id, alert_id)
        for verdict in decision.verdicts:
            ref = refs[verdict.channel]
            status = {SEND: "queued", BATCH: "batched", SUPPRESS: "suppressed"}[verdict.action]
            inbox = ref.type == "inbox" and verdict.action == SEND
            db.session.add(NotificationDelivery(
                notification_id=notification.id, channel=ref.name, channel_type=ref.type,
                status="sent" if inbox else status, reason=verdict.reason,
                idempotency_key=f"{notification.id}:{ref.name}",
                scheduled_for=verdict.send_at or now, sent_at=now if inbox else None,
                created_at=now,
            ))
        db.session.commit()
    _enqueue_queued(notification)
    summary = ", ".join(f"{d.channel}={d.status}" for d in notification.deliveries)
    log.info("notification %s (%s %s): %s", notification.id, kind, priority, summary or "none")
    return notification


def _enqueue_queued(notification: Notification) -> None:
    for delivery in notification.deliveries:
        if delivery.status == "queued":
            dispatcher.enqueue_delivery(delivery.id, delivery.attempts)


def notify_signal(signal_id: int, now: datetime | None = None,
                  clock: Clock | None = None) -> Notification | None:
    """Notify a graded signal once; None when its level is below weak ("ignore")."""
    signal = db.session.get(Signal, signal_id)
    if signal is None:
        raise NotFound(f"No signal with id {signal_id}.")
    if signal.priority not in PRIORITIES:
        log.info("signal %s graded %s: below the weak threshold, not notified", signal_id,
                 signal.strength_level)
        return None
    strategy = db.session.get(Strategy, signal.strategy_id)
    settings = current_settings().notifications
    rendered = messages.render_signal(signal, strategy.name if strategy else "?", settings,
                                      public_url(), track_record(signal, strategy))
    if rendered.render_error:
        log.warning("signal %s: %s (sent the detailed text instead)", signal_id,
                    rendered.render_error)
    now = now or (clock or utcnow)()
    return _record("signal", signal.priority, rendered, now=now, clock=clock, pair=signal.pair,
                   signal_id=signal.id, strategy_id=signal.strategy_id)


def notify_consensus(consensus_id: int, now: datetime | None = None) -> Notification | None:
    """Notify a consensus signal once (its own level and priority)."""
    row = db.session.get(ConsensusSignal, consensus_id)
    if row is None:
        raise NotFound(f"No consensus signal with id {consensus_id}.")
    if row.notified_at is not None:
        return None
    names = dict(db.session.execute(select(Strategy.id, Strategy.name).where(
        Strategy.id.in_(row.strategy_ids or []))).all())
    who = ", ".join(names.get(i, f"#{i}") for i in row.strategy_ids or [])
    rendered = messages.render_consensus(row, who, public_url())
    row.notified_at = now or utcnow()
    db.session.commit()
    return _record("consensus", row.priority, rendered, now=now or utcnow(), clock=None,
                   pair=row.pair)


def track_record(signal: Signal, strategy: Strategy | None) -> str:
    """"strong signals of RSI_ETH: 61 % right after 4 candles, n = 212" once the strategy has
    system.signals.track_record_min scored signals of that level (else "")."""
    cfg = current_settings().system.signals
    if not cfg.track_record_min or strategy is None or signal.strength_level not in (
            "strong", "medium", "weak"):
        return ""
    horizon = cfg.calibration.horizon
    column = getattr(SignalOutcome, f"return_{horizon}")
    count, hits = db.session.execute(
        select(func.count(column), func.sum(case((column > 0, 1), else_=0)))
        .join(Signal, Signal.id == SignalOutcome.signal_id)
        .where(Signal.strategy_id == strategy.id, Signal.strength_level == signal.strength_level,
               column.is_not(None))).one()
    if not count or count < cfg.track_record_min:
        return ""
    right = 100 * (hits or 0) / count
    return (f"{signal.strength_level} signals of {strategy.name}: {right:.0f} % right after "
            f"{horizon} candles, n = {count}")


def notify_alert(alert_id: int, now: datetime | None = None,
                 clock: Clock | None = None) -> Notification:
    """Notify a system alert once: critical → P0, warning → P1, info → P2."""
    alert = db.session.get(Alert, alert_id)
    if alert is None:
        raise NotFound(f"No alert with id {alert_id}.")
    priority = SEVERITY_PRIORITY.get(alert.severity, "P1")
    strategy = db.session.get(Strategy, alert.strategy_id) if alert.strategy_id else None
    rendered = messages.render_alert(alert, strategy.name if strategy else None, priority,
                                     current_settings().notifications, public_url())
    now = now or (clock or utcnow)()
    return _record("alert", priority, rendered, now=now, clock=clock, alert_id=alert.id,
                   strategy_id=alert.strategy_id)


def send_digests(now: datetime | None = None, clock: Clock | None = None) -> list[Notification]:
    """One digest per channel of everything batched for it, when its time slot allows."""
    now = now or (clock or utcnow)()
    policy = make_policy(clock)
    refs = {r.name: r for r in channel_refs()}
    created: list[Notification] = []
    with policy_lock():
        waiting = db.session.scalars(
            select(NotificationDelivery).where(NotificationDelivery.status == "batched",
                                               NotificationDelivery.digest_id.is_(None))
            .options(selectinload(NotificationDelivery.notification))
            .order_by(NotificationDelivery.id)
        ).all()
        by_channel: dict[str, list[NotificationDelivery]] = {}
        for delivery in waiting:
            by_channel.setdefault(delivery.channel, []).append(delivery)
        for name, rows in by_channel.items():
            ref = refs.get(name)
            if ref is None or not ref.enabled:
                reason = f"channel {name!r} is no longer configured or is disabled"
                for row in rows:
                    row.status, row.reason = "suppressed", f"{row.reason}; then {reason}"
                continue
            items = [row.notification for row in rows]
            priority = highest_priority(n.priority for n in items)
            ok, why = policy.digest_allowed([priority], ref, now)
            if not ok:
                log.info("digest for %s waits: %s", name, why)
                continue
            rendered = messages.render_digest(items, name, priority,
                                              current_settings().notifications, public_url())
            digest = Notification(kind="digest", priority=priority, title=rendered.title,
                                  body=rendered.body, link=rendered.link, data=rendered.data,
                                  created_at=now)
            db.session.add(digest)
            db.session.flush()
            for row in rows:
                row.digest_id = digest.id
            db.session.add(NotificationDelivery(
                notification_id=digest.id, channel=name, channel_type=ref.type,
                status="queued", reason=f"digest of {len(rows)}",
                idempotency_key=f"{digest.id}:{name}", scheduled_for=now, created_at=now,
            ))
            created.append(digest)
        db.session.commit()
    for digest in created:
        _enqueue_queued(digest)
    return created


def deliver_due(now: datetime | None = None) -> int:
    """Enqueue every due, unclaimed queued delivery (no-op for ones already queued in RQ)."""
    now = now or utcnow()
    due = dispatcher.due_deliveries(now)
    return sum(1 for d in due if dispatcher.enqueue_delivery(d.id, d.attempts))


def send_test(channel_name: str, clock: Clock = utcnow) -> tuple[Notification, str, str]:
    """Send a test message on one channel now, once; (notification, outcome, detail)."""
    channels = configured_channels(current_settings().notifications)
    settings = channels.get(channel_name)
    if settings is None:
        raise NotFound(f"No channel named {channel_name!r}.")
    now = clock()
    channel = build_channel(channel_name, settings)
    notification = Notification(
        kind="test", priority="P0", title="BTC Watcher test message",
        body=(f"If you can read this, the {settings.type} channel “{channel_name}” works.\n"
              f"Sent {messages.local_time(now, current_settings().notifications.timezone)}."),
        link=f"{public_url().rstrip('/')}/notifications/settings", data={"test": True},
        created_at=now,
    )
    db.session.add(notification)
    db.session.flush()
    delivery = NotificationDelivery(
        notification_id=notification.id, channel=channel_name, channel_type=settings.type,
        status="queued", reason="test from the settings page",
        idempotency_key=f"{notification.id}:{channel_name}", scheduled_for=now, created_at=now,
    )
    db.session.add(delivery)
    db.session.commit()
    if not settings.enabled:
        delivery.status, delivery.reason = "suppressed", "channel is disabled"
        db.session.commit()
        return notification, "suppressed", f"{channel.target()}: the channel is disabled"
    result = dispatcher.deliver(delivery.id, clock=clock, max_attempts=1)
    return notification, result.outcome, result.detail or channel.target()


def resend(delivery_id: int, now: datetime | None = None) -> NotificationDelivery:
    """Queue a failed or suppressed delivery again (a person decided; attempts keep counting)."""
    now = now or utcnow()
    delivery = db.session.get(NotificationDelivery, delivery_id)
    if delivery is None:
        raise NotFound(f"No delivery with id {delivery_id}.")
    if delivery.status not in ("failed", "suppressed"):
        raise Conflict(f"Only failed or suppressed deliveries can be sent again; this one "
                         f"is {delivery.status}.")
    db.session.execute(
        update(NotificationDelivery)
        .where(NotificationDelivery.id == delivery_id,
               NotificationDelivery.status.in_(("failed", "suppressed")))
        .values(status="queued", scheduled_for=now, claimed_until=None, claim_token=None,
                reason=f"sent again by hand after: {delivery.reason or delivery.status}"[:2000])
    )
    db.session.commit()
    db.session.refresh(delivery)
    dispatcher.enqueue_delivery(delivery.id, delivery.attempts)
    return delivery


# --------------------------------------------------------------------------- the pages


class FilterError(AppError):
    """A bad filter value; `param` names the query parameter."""

    def __init__(self, param: str, message: str):
        super().__init__(message, param=param)
        self.param = param


@dataclass(frozen=True)
class HistoryFilters:
    """Filters of the history page and GET /api/v1/notifications."""

    channel: str = ""
    status: str = ""
    priority: str = ""
    kind: str = ""
    since: datetime | None = None
    until: datetime | None = None

    def as_args(self, zone: str | None = None) -> dict[str, str]:
        """Back to query parameters (times in `zone` when given, else UTC with Z)."""
        args = {k: getattr(self, k) for k in ("channel", "status", "priority", "kind")
                if getattr(self, k)}
        for key in ("since", "until"):
            value = getattr(self, key)
            if value is not None:
                if zone:
                    local = value.replace(tzinfo=UTC).astimezone(ZoneInfo(zone))
                    args[key] = local.strftime("%Y-%m-%dT%H:%M")
                else:
                    args[key] = isoformat(value)
        return args


_CHANNEL_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


def parse_time(param: str, text: str, naive_zone: str | None = None) -> datetime:
    """ISO 8601 date or date-time → naive UTC; naive input is in `naive_zone` (else UTC)."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise FilterError(param, f"{param} must be an ISO 8601 date or date-time, "
                                 f"e.g. 2026-01-05T09:30:00Z; got {text!r}") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=ZoneInfo(naive_zone) if naive_zone else UTC)
    return value.astimezone(UTC).replace(tzinfo=None)


def parse_filters(args: Mapping[str, str], naive_zone: str | None = None) -> HistoryFilters:
    """Validate filter parameters; FilterError names the first bad one."""
    values: dict = {}
    channel = (args.get("channel") or "").strip()
    if channel and not _CHANNEL_RE.match(channel):
        raise FilterError("channel", f"channel must be a channel name (a-z, 0-9, _ and -); "
                                     f"got {channel!r}")
    values["channel"] = channel
    for param, allowed in (("status", DELIVERY_STATUSES), ("priority", PRIORITIES),
                           ("kind", NOTIFICATION_KINDS)):
        value = (args.get(param) or "").strip()
        if param == "priority":
            value = value.upper()
        if value and value not in allowed:
            raise FilterError(param, f"{param} must be one of {', '.join(allowed)}; "
                                     f"got {value!r}")
        values[param] = value
    for param in ("since", "until"):
        text = (args.get(param) or "").strip()
        values[param] = parse_time(param, text, naive_zone) if text else None
    if values["since"] and values["until"] and values["since"] > values["until"]:
        raise FilterError("until", "until must not be before since")
    return HistoryFilters(**values)


MAX_ID = 2**63 - 1  # what the databases' BIGINT holds


def parse_positive_int(param: str, text: str | None, default: int | None = None,
                       maximum: int | None = None) -> int | None:
    """A positive whole number parameter, or FilterError naming it."""
    if text is None or text == "":
        return default
    if not re.fullmatch(r"[0-9]{1,19}", text) or not 1 <= int(text) <= MAX_ID:
        raise FilterError(param, f"{param} must be a positive whole number up to {MAX_ID}; "
                                 f"got {text[:40]!r}")
    value = int(text)
    if maximum is not None and value > maximum:
        raise FilterError(param, f"{param} must be at most {maximum}; got {value}")
    return value


def history(filters: HistoryFilters, before: int | None = None,
            limit: int = 50) -> tuple[list[Notification], int | None]:
    """Notifications newest first, filtered; keyset page (items, id for the next page)."""
    query = select(Notification).options(selectinload(Notification.deliveries))
    if filters.channel or filters.status:
        match = [NotificationDelivery.notification_id == Notification.id]
        if filters.channel:
            match.append(NotificationDelivery.channel == filters.channel)
        if filters.status:
            match.append(NotificationDelivery.status == filters.status)
        query = query.where(exists().where(*match))
    if filters.priority:
        query = query.where(Notification.priority == filters.priority)
    if filters.kind:
        query = query.where(Notification.kind == filters.kind)
    if filters.since:
        query = query.where(Notification.created_at >= filters.since)
    if filters.until:
        query = query.where(Notification.created_at <= filters.until)
    if before:
        query = query.where(Notification.id < before)
    rows = list(db.session.scalars(query.order_by(Notification.id.desc()).limit(limit + 1)))
    next_before = rows[limit - 1].id if len(rows) > limit else None
    return rows[:limit], next_before


def notification_detail(notification_id: int) -> Notification | None:
    """A notification with its deliveries and every attempt."""
    return db.session.scalar(
        select(Notification).where(Notification.id == notification_id)
        .options(selectinload(Notification.deliveries)
                 .selectinload(NotificationDelivery.attempt_log))
    )


def digest_items(digest_id: int) -> list[Notification]:
    """The notifications a digest carried."""
    return list(db.session.scalars(
        select(Notification).join(NotificationDelivery,
                                  NotificationDelivery.notification_id == Notification.id)
        .where(NotificationDelivery.digest_id == digest_id).order_by(Notification.id)
    ))


def channel_names_in_history() -> list[str]:
    """Every channel name that has a delivery (configured or not any more)."""
    names = set(db.session.scalars(select(NotificationDelivery.channel).distinct()))
    return sorted(names | set(configured_channels(current_settings().notifications)))


def unread_count() -> int:
    """Unread inbox entries (the bell)."""
    return db.session.scalar(
        select(func.count(NotificationDelivery.id))
        .where(NotificationDelivery.channel_type == "inbox",
               NotificationDelivery.status == "sent", NotificationDelivery.read_at.is_(None))
    ) or 0


def inbox(before: int | None = None, limit: int = 30,
          unread_only: bool = False) -> tuple[list[NotificationDelivery], int | None]:
    """Inbox entries newest first; keyset page on the delivery id."""
    query = (select(NotificationDelivery)
             .options(selectinload(NotificationDelivery.notification))
             .where(NotificationDelivery.channel_type == "inbox",
                    NotificationDelivery.status == "sent"))
    if unread_only:
        query = query.where(NotificationDelivery.read_at.is_(None))
    if before:
        query = query.where(NotificationDelivery.id < before)
    rows = list(db.session.scalars(query.order_by(NotificationDelivery.id.desc())
                                   .limit(limit + 1)))
    next_before = rows[limit - 1].id if len(rows) > limit else None
    return rows[:limit], next_before


def mark_read(delivery_ids: list[int] | None = None, now: datetime | None = None) -> int:
    """Mark inbox entries read (all unread ones when no ids are given); how many changed."""
    query = (update(NotificationDelivery)
             .where(NotificationDelivery.channel_type == "inbox",
                    NotificationDelivery.read_at.is_(None)))
    if delivery_ids is not None:
        if not delivery_ids:
            return 0
        query = query.where(NotificationDelivery.id.in_(delivery_ids))
    result = db.session.execute(query.values(read_at=now or utcnow())
                                .execution_options(synchronize_session=False))
    db.session.commit()
    return result.rowcount


# ----------------------------------------------------------------------------- JSON


def attempt_json(attempt: DeliveryAttempt) -> dict:
    """One attempt as JSON."""
    return {"number": attempt.number, "outcome": attempt.outcome,
            "status_code": attempt.status_code, "error": attempt.error,
            "retry_after": attempt.retry_after, "duration_ms": attempt.duration_ms,
            "started_at": isoformat(attempt.created_at),
            "finished_at": isoformat(attempt.finished_at)}


def delivery_json(delivery: NotificationDelivery, attempts: bool = False) -> dict:
    """One delivery as JSON (with its attempts when asked)."""
    data = {"id": delivery.id, "channel": delivery.channel, "channel_type": delivery.channel_type,
            "status": delivery.status, "reason": delivery.reason,
            "attempts": delivery.attempts, "last_error": delivery.last_error,
            "digest_id": delivery.digest_id, "scheduled_for": isoformat(delivery.scheduled_for),
            "sent_at": isoformat(delivery.sent_at), "read_at": isoformat(delivery.read_at)}
    if attempts:
        data["attempt_log"] = [attempt_json(a) for a in delivery.attempt_log]
    return data


def notification_json(notification: Notification, attempts: bool = False) -> dict:
    """One notification with its deliveries as JSON."""
    return {"id": notification.id, "kind": notification.kind,
            "priority": notification.priority, "signal_id": notification.signal_id,
            "alert_id": notification.alert_id, "strategy_id": notification.strategy_id,
            "pair": notification.pair, "title": notification.title, "body": notification.body,
            "link": notification.link, "render_error": notification.render_error,
            "created_at": isoformat(notification.created_at),
            "deliveries": [delivery_json(d, attempts) for d in notification.deliveries]}
