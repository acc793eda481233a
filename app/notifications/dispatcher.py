"""Delivery of one NotificationDelivery: claim, send, record, retry — never twice.

How a send is kept from happening twice:

1. **Claim.** A worker takes a delivery with one conditional UPDATE: `status = 'queued' AND
   scheduled_for <= now AND (claimed_until IS NULL OR claimed_until < now)` sets a lease
   (`claimed_until`, `claim_token`). A duplicated or retried job finds the claim taken, or the
   delivery already `sent`, and does nothing. The (notification, channel) pair has one row
   only (`idempotency_key` is unique), so there is never a second delivery to claim.
2. **Write-ahead attempt.** In the same transaction as the claim, a DeliveryAttempt with
   outcome `sending` is stored. Only then does the request go out.
3. **Finish.** The outcome (`ok`, `error`, `unknown`) and the delivery's status are stored,
   but only while our claim token still holds the row.

A worker killed between 2 and 3 leaves an attempt in `sending`. After the lease expires, the
next run finds it and cannot know whether the receiver got the message. Channels that dedupe
(`Channel.dedupes`: the inbox, WeCom app messages with duplicate check) are simply sent again.
For every other channel the delivery is marked `failed` with "outcome unknown" and is *not*
sent again by itself: the guarantee is at-most-once for an interrupted send, exactly-once
otherwise. The same holds when the request went out but the answer never came (read timeout,
connection reset). The detail page offers "Send again" for a person to decide.

Failures known not to have reached the receiver (connection refused, HTTP 5xx, 429, a refusal
code that may pass later) are retried with exponential backoff (`retry_backoff` × 2^n, at most
300 s), or after the receiver's own `retry_after`, up to `max_attempts`.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from redis.exceptions import RedisError
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from sqlalchemy import and_, or_, select, update

from app.clock import utcnow
from app.extensions import db, redis_store
from app.notifications.channels import (
    Channel,
    Message,
    SendError,
    build_channel,
    configured_channels,
)
from app.notifications.models import DeliveryAttempt, Notification, NotificationDelivery
from app.system.settings import current_settings

log = logging.getLogger(__name__)
MAX_BACKOFF_SECONDS = 300
DELIVER_JOB = "app.tasks.notifications.deliver"
DELIVER_TIMEOUT = 300


@dataclass(frozen=True)
class DeliveryResult:
    """What one run of deliver() did: sent, retry (at retry_at), failed, suppressed, skipped."""

    outcome: str
    detail: str = ""
    retry_at: datetime | None = None


def backoff_seconds(base: float, attempts_done: int) -> float:
    """Seconds to wait after the n-th failed attempt: base, 2·base, 4·base … at most 300."""
    return min(base * (2 ** max(attempts_done - 1, 0)), MAX_BACKOFF_SECONDS)


def message_for(notification: Notification, delivery: NotificationDelivery) -> Message:
    """The Message a channel sends for this delivery."""
    return Message(
        title=notification.title, body=notification.body, link=notification.link,
        priority=notification.priority, kind=notification.kind,
        notification_id=notification.id, idempotency_key=delivery.idempotency_key,
        created_at=notification.created_at, data=dict(notification.data or {}),
    )


def channel_for(delivery: NotificationDelivery) -> Channel | None:
    """The configured, enabled channel of a delivery, or None."""
    settings = configured_channels(current_settings().notifications).get(delivery.channel)
    if settings is None or not settings.enabled:
        return None
    try:
        client = redis_store.client
    except RuntimeError:
        client = None
    return build_channel(delivery.channel, settings, client)


def claim(delivery_id: int, now: datetime, lease_seconds: int) -> str | None:
    """Take the delivery for one send; the claim token, or None when it is not ours to send."""
    token = secrets.token_hex(8)
    result = db.session.execute(
        update(NotificationDelivery)
        .where(NotificationDelivery.id == delivery_id,
               NotificationDelivery.status == "queued",
               NotificationDelivery.scheduled_for <= now,
               or_(NotificationDelivery.claimed_until.is_(None),
                   NotificationDelivery.claimed_until < now))
        .values(claimed_until=now + timedelta(seconds=lease_seconds), claim_token=token)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        db.session.rollback()
        return None
    return token


def _still_ours(delivery_id: int, token: str):
    return and_(NotificationDelivery.id == delivery_id, NotificationDelivery.claim_token == token)


def _finish(delivery_id: int, token: str, attempt: DeliveryAttempt, **values) -> bool:
    """Store the outcome if our claim still holds; False when another worker took over."""
    values.setdefault("claimed_until", None)
    values.setdefault("claim_token", None)
    result = db.session.execute(
        update(NotificationDelivery).where(_still_ours(delivery_id, token)).values(**values)
        .execution_options(synchronize_session=False)
    )
    db.session.add(attempt)
    db.session.commit()
    if result.rowcount != 1:
        log.error("delivery %s: lease lost before the outcome was stored (%s)", delivery_id,
                  attempt.outcome)
        return False
    return True


def deliver(delivery_id: int, clock: Callable[[], datetime] = utcnow,
            max_attempts: int | None = None) -> DeliveryResult:
    """Send one delivery once (see the module docstring); the caller re-enqueues on retry.

    `max_attempts` overrides the channel's (a test send tries once and reports).
    """
    delivery = db.session.get(NotificationDelivery, delivery_id)
    if delivery is None:
        return DeliveryResult("skipped", f"no delivery {delivery_id}")
    now = clock()
    if delivery.status != "queued":
        return DeliveryResult("skipped", f"already {delivery.status}")
    if delivery.scheduled_for > now:
        return DeliveryResult("skipped", "not due yet", delivery.scheduled_for)
    channel = channel_for(delivery)
    if channel is None:
        db.session.execute(
            update(NotificationDelivery)
            .where(NotificationDelivery.id == delivery_id, NotificationDelivery.status == "queued")
            .values(status="suppressed",
                    reason=f"channel {delivery.channel!r} is no longer configured or is disabled")
        )
        db.session.commit()
        return DeliveryResult("suppressed", f"channel {delivery.channel} unavailable")
    token = claim(delivery_id, now, channel.lease_seconds())
    if token is None:
        db.session.expire_all()
        return DeliveryResult("skipped", "claimed by another worker or no longer queued")
    db.session.refresh(delivery)
    interrupted = db.session.scalars(
        select(DeliveryAttempt).where(DeliveryAttempt.delivery_id == delivery_id,
                                      DeliveryAttempt.outcome == "sending")
    ).all()
    for attempt in interrupted:
        attempt.outcome = "unknown"
        attempt.finished_at = now
        attempt.error = ("the worker stopped during this send (lease expired); the receiver "
                         "may or may not have the message")
    if interrupted and not channel.dedupes:
        reason = (f"outcome unknown: a worker stopped mid-send (attempt "
                  f"{interrupted[-1].number}); not sent again automatically so the message is "
                  f"never duplicated — use “Send again” if it did not arrive")
        db.session.execute(
            update(NotificationDelivery).where(_still_ours(delivery_id, token))
            .values(status="failed", last_error=reason, reason=reason, claimed_until=None,
                    claim_token=None)
        )
        db.session.commit()
        log.warning("delivery %s on %s: %s", delivery_id, delivery.channel, reason)
        return DeliveryResult("failed", reason)

    number = delivery.attempts + 1
    attempt = DeliveryAttempt(delivery_id=delivery_id, number=number, outcome="sending",
                              created_at=now)
    delivery.attempts = number
    db.session.add(attempt)
    db.session.commit()  # the write-ahead record: from here on the send may happen

    message = message_for(delivery.notification, delivery)
    parts_done = tuple(delivery.parts_done or ())
    started = time.monotonic()
    try:
        result = channel.send(message, parts_done)
    except SendError as exc:
        return _record_failure(delivery, token, attempt, exc, channel, clock, started,
                               max_attempts)
    except Exception as exc:  # noqa: BLE001 - a channel bug must not leave the row claimed
        log.exception("delivery %s: channel %s crashed", delivery_id, delivery.channel)
        return _record_failure(delivery, token, attempt,
                               SendError(f"{type(exc).__name__}: {exc}"), channel, clock,
                               started, max_attempts)
    finished = clock()
    attempt.outcome = "ok"
    attempt.status_code = result.status_code
    attempt.error = result.detail
    attempt.duration_ms = int((time.monotonic() - started) * 1000)
    attempt.finished_at = finished
    _finish(delivery_id, token, attempt, status="sent", sent_at=finished, last_error="",
            parts_done=list(result.parts_done) or None)
    log.info("delivery %s sent on %s (attempt %s)", delivery_id, delivery.channel, number)
    return DeliveryResult("sent")


def _record_failure(delivery: NotificationDelivery, token: str, attempt: DeliveryAttempt,
                    exc: SendError, channel: Channel, clock, started: float,
                    max_attempts: int | None) -> DeliveryResult:
    finished = clock()
    error = str(exc)[:2000]
    attempt.status_code = exc.status_code
    attempt.retry_after = exc.retry_after
    attempt.error = error
    attempt.duration_ms = int((time.monotonic() - started) * 1000)
    attempt.finished_at = finished
    parts = list(exc.parts_done) or None
    if exc.maybe_delivered and not channel.dedupes:
        attempt.outcome = "unknown"
        reason = (f"outcome unknown: {error}; not sent again automatically so the message is "
                  f"never duplicated — use “Send again” if it did not arrive")
        _finish(delivery.id, token, attempt, status="failed", last_error=reason, reason=reason,
                parts_done=parts)
        return DeliveryResult("failed", reason)
    attempt.outcome = "unknown" if exc.maybe_delivered else "error"
    max_attempts = max_attempts or channel.settings.max_attempts
    if exc.permanent or delivery.attempts >= max_attempts:
        why = "not retried: the receiver refused it" if exc.permanent else \
            f"gave up after {delivery.attempts} attempts"
        _finish(delivery.id, token, attempt, status="failed", last_error=error,
                reason=why, parts_done=parts)
        log.warning("delivery %s on %s failed: %s (%s)", delivery.id, delivery.channel, error,
                    why)
        return DeliveryResult("failed", f"{why}: {error}")
    wait = exc.retry_after if exc.retry_after is not None else \
        backoff_seconds(channel.settings.retry_backoff, delivery.attempts)
    retry_at = finished + timedelta(seconds=wait)
    _finish(delivery.id, token, attempt, scheduled_for=retry_at, last_error=error,
            reason=f"retry {delivery.attempts + 1} of {max_attempts} in {wait:g} s",
            parts_done=parts)
    log.info("delivery %s on %s: %s; retry in %gs", delivery.id, delivery.channel, error, wait)
    return DeliveryResult("retry", error, retry_at)


# --------------------------------------------------------------------------- enqueueing


def _job_id(delivery_id: int, attempts: int) -> str:
    return f"deliver-{delivery_id}-{attempts}"


def enqueue_delivery(delivery_id: int, attempts: int = 0, at: datetime | None = None) -> bool:
    """Put `deliver(delivery_id)` on the notifications queue (at `at`, naive UTC) once.

    The job id is deterministic per attempt number, so a pending job is never doubled; a
    finished, failed or abandoned job of that id is replaced. False when Redis is down (the
    `deliver_due` sweep hands it on later).
    """
    job_id = _job_id(delivery_id, attempts)
    try:
        queue = redis_store.queue("notifications")
        try:
            existing = Job.fetch(job_id, connection=redis_store.client)
        except NoSuchJobError:
            existing = None
        if existing is not None:
            status = existing.get_status(refresh=True)
            if status in (JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED):
                return True
            existing.delete()
        kwargs = {"job_id": job_id, "job_timeout": DELIVER_TIMEOUT, "result_ttl": 3600,
                  "failure_ttl": 7 * 86400, "description": f"deliver notification {job_id}"}
        if at is not None and at > utcnow():
            # RQ's scheduler keeps whole seconds (rounded down): round up, never run early.
            at = at.replace(microsecond=0) + timedelta(seconds=1)
            queue.enqueue_at(at.replace(tzinfo=UTC), DELIVER_JOB, delivery_id, **kwargs)
        else:
            queue.enqueue(DELIVER_JOB, delivery_id, **kwargs)
    except RedisError as exc:
        log.warning("delivery %s not enqueued (Redis: %s); the sweep will retry", delivery_id,
                    exc)
        return False
    return True


def due_deliveries(now: datetime, limit: int = 500) -> list[NotificationDelivery]:
    """Queued deliveries whose time has come and that no live worker holds."""
    return list(db.session.scalars(
        select(NotificationDelivery)
        .where(NotificationDelivery.status == "queued",
               NotificationDelivery.scheduled_for <= now,
               NotificationDelivery.channel_type != "inbox",
               or_(NotificationDelivery.claimed_until.is_(None),
                   NotificationDelivery.claimed_until < now))
        .order_by(NotificationDelivery.scheduled_for, NotificationDelivery.id).limit(limit)
    ))
