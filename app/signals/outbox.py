"""After a signal is stored: publish it to the live pages and hand it to notifications, once.

Two outbox columns on `signals` record what has been done: `published_at` (sent on the Redis
pub/sub channel the live pages listen to) and `dispatched_at` (the `notify_signal` RQ job was
enqueued; set at insert for ungraded signals, which have nothing to hand on).

The receiver delivers a new signal right after its INSERT committed (`deliver_new`: one Redis
MULTI/EXEC with the job and the PUBLISH); the process's `OutboxConfirmer` then marks the columns in
batches. If Redis is down the columns stay NULL and `sweep()` — a periodic job — delivers later.
The sweeper claims its rows with a conditional `UPDATE … WHERE <column> IS NULL` before it
delivers them (and gives them back if Redis fails), so several sweepers never deliver a signal
twice; it leaves signals younger than `min_age` seconds to the receiver that stored them, and
its notification jobs are enqueued with RQ's `unique=True` under the deterministic job id
`signal-<id>`, so a job that exists already is never enqueued again.
"""

from __future__ import annotations

import atexit
import json
import logging
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from flask import current_app
from redis.exceptions import RedisError
from rq import Queue, Retry
from rq.exceptions import DuplicateJobError
from sqlalchemy import select, update

from app.clock import isoformat, utcnow
from app.extensions import db, redis_store
from app.signals.models import Signal
from app.signals.strategy_messages import message_json
from app.strategies.models import Strategy

log = logging.getLogger(__name__)

CHANNEL = "btcw:signals"
NOTIFY_JOB = "app.tasks.notifications.notify_signal"
NOTIFY_QUEUE = "notifications"
NOTIFY_TIMEOUT = 120
# The notification decision is idempotent per signal: a job whose worker died mid-run (or that
# failed on a passing error) is run again by RQ rather than left failed.
NOTIFY_RETRY = Retry(max=3, interval=[2, 10, 30])
REDIS_BACKOFF_SECONDS = 3.0  # after a Redis error, the receiver leaves delivery to the sweeper
SWEEP_MIN_AGE = 10.0
NOTE_CHARS = 160

_redis_down_until = 0.0
_queues: dict[int, Queue] = {}


def notify_job_id(signal_id: int) -> str:
    """The deterministic RQ job id of a signal's notification job."""
    return f"signal-{signal_id}"


def _notify_queue() -> Queue:
    """The notifications queue, kept per Redis client (RQ caches the server version on it)."""
    client = redis_store.client
    queue = _queues.get(id(client))
    if queue is None:
        queue = _queues[id(client)] = Queue(NOTIFY_QUEUE, connection=client)
    return queue


def _enqueue_notify(signal_id: int, pipeline=None, unique: bool = False) -> None:
    _notify_queue().enqueue_call(
        NOTIFY_JOB, args=(signal_id,), job_id=notify_job_id(signal_id), timeout=NOTIFY_TIMEOUT,
        pipeline=pipeline, unique=unique, retry=NOTIFY_RETRY,
    )


def redis_suspended() -> bool:
    """True while the receiver skips Redis after a recent failure (the sweeper catches up)."""
    return time.monotonic() < _redis_down_until


def _suspend_redis(exc: Exception) -> None:
    global _redis_down_until
    _redis_down_until = time.monotonic() + REDIS_BACKOFF_SECONDS
    log.warning("signal delivery deferred to the outbox sweeper (Redis: %s)", exc)


def resume_redis() -> None:
    """Forget a recent Redis failure (tests, and the sweeper after a successful run)."""
    global _redis_down_until
    _redis_down_until = 0.0


# ---------------------------------------------------------------------------- live events


def note_of(message_type: str, enter_tag: str | None, exit_reason: str | None,
            payload: dict | None) -> str:
    """A short human text for a signal: its tag, exit reason, status or message text."""
    text = exit_reason if message_type.startswith("exit") else (enter_tag or exit_reason)
    if not text and payload:
        if message_type == "strategy_msg":
            text = _message_note(payload.get("msg"))
        elif isinstance(payload.get("status"), str):
            text = payload["status"]
    text = (text or "").strip()
    return text if len(text) <= NOTE_CHARS else text[:NOTE_CHARS - 1] + "…"


def _message_note(msg: Any) -> str:
    """A strategy message as text; for a mixin signal (JSON with "btcw") its candle and the
    indicator values it carried rather than the raw JSON."""
    message = message_json(msg)
    if message is None:
        message = msg
    if not isinstance(message, dict):
        return message if isinstance(message, str) else ""
    if "btcw" not in message:
        return json.dumps(message, sort_keys=True)
    parts = []
    candle = message.get("candle")
    if isinstance(candle, str) and len(candle) >= 16:
        parts.append(f"{message.get('timeframe') or ''} candle {candle[11:16]} UTC".strip())
    indicators = message.get("indicators")
    if isinstance(indicators, dict):
        parts.extend(f"{name} {value:.4g}" if isinstance(value, (int, float))
                     else f"{name} {value}" for name, value in list(indicators.items())[:4])
    return " · ".join(parts)


def live_event(columns: dict[str, Any], strategy_name: str) -> dict[str, Any]:
    """The JSON-able summary of a signal that live pages receive (and the list rows show)."""
    return {
        "id": columns["id"],
        "strategy_id": columns["strategy_id"],
        "strategy": strategy_name,
        "type": columns["message_type"],
        "pair": columns["pair"],
        "action": columns["action"],
        "direction": columns["direction"],
        "rate": columns["rate"],
        "strength": columns["strength_raw"],
        "level": columns["strength_level"],
        "priority": columns["priority"],
        "trade_id": columns["trade_id"],
        "profit_ratio": columns["profit_ratio"],
        "note": note_of(columns["message_type"], columns["enter_tag"], columns["exit_reason"],
                        columns["payload"]),
        "received_at": isoformat(columns["received_at"]),
    }


def signal_event(signal: Signal, strategy_name: str) -> dict[str, Any]:
    """live_event() of a stored Signal."""
    columns = {c.name: getattr(signal, c.name) for c in Signal.__table__.columns}
    return live_event(columns, strategy_name)


def _dumps(event: dict[str, Any]) -> str:
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False)


# ------------------------------------------------------------------------- receiver path


def deliver_new(columns: dict[str, Any], strategy_name: str, notify: bool) -> tuple[bool, bool]:
    """Publish a just-committed signal and enqueue its notification; (published, handed_on).

    One Redis round trip: a MULTI/EXEC pipeline with the notification job and the PUBLISH. The
    outbox columns are then marked by this process's OutboxConfirmer in batches. On a Redis
    error nothing is marked and the sweeper delivers later.
    """
    if redis_suspended():
        return False, False
    signal_id = columns["id"]
    try:
        with redis_store.client.pipeline(transaction=True) as pipe:
            if notify:
                _enqueue_notify(signal_id, pipeline=pipe)  # must come first: it opens MULTI
            pipe.publish(CHANNEL, _dumps(live_event(columns, strategy_name)))
            pipe.execute()
    except RedisError as exc:
        _suspend_redis(exc)
        return False, False
    confirmer().confirm(signal_id, notify)
    return True, notify


class OutboxConfirmer:
    """Marks delivered signals in the outbox in batches: one UPDATE per column per ~50 ms.

    This keeps the receiver at a single INSERT per signal. A confirmation lost to a crash
    between the Redis pipeline and the next flush only makes the sweeper deliver that signal
    again: its notification job id exists already (RQ refuses the duplicate) and the live
    page drops a row it already shows.
    """

    INTERVAL = 0.05
    MAX_BATCH = 1000

    def __init__(self, app) -> None:
        self.app = app
        self._published: list[int] = []
        self._dispatched: list[int] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        atexit.register(self._flush_at_exit)

    def confirm(self, signal_id: int, dispatched: bool) -> None:
        """Queue the marks for one delivered signal."""
        with self._lock:
            self._published.append(signal_id)
            if dispatched:
                self._dispatched.append(signal_id)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="signal-outbox",
                                                daemon=True)
                self._thread.start()
            if len(self._published) >= self.MAX_BATCH:
                self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait(self.INTERVAL)
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # the sweeper catches up with what was not marked
                log.exception("could not mark delivered signals in the outbox")

    def _flush_at_exit(self) -> None:
        try:
            self.flush()
        except Exception as exc:  # noqa: BLE001 - the sweeper delivers what stays unmarked
            log.warning("outbox marks not written at exit (%s)", exc)

    def flush(self) -> int:
        """Write the queued marks now; how many signals were marked."""
        with self._lock:
            published, self._published = self._published, []
            dispatched, self._dispatched = self._dispatched, []
        if not published:
            return 0
        now = utcnow()
        with self.app.app_context(), db.engine.begin() as conn:
            for column, ids in ((Signal.published_at, published),
                                (Signal.dispatched_at, dispatched)):
                for start in range(0, len(ids), self.MAX_BATCH):
                    chunk = ids[start:start + self.MAX_BATCH]
                    conn.execute(update(Signal).where(Signal.id.in_(chunk), column.is_(None))
                                 .values({column.key: now}))
        return len(published)


_confirmer_lock = threading.Lock()


def confirmer() -> OutboxConfirmer:
    """This process's OutboxConfirmer for the current app."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    found = app.extensions.get("btcw_signal_confirmer")
    if found is None:
        with _confirmer_lock:
            found = app.extensions.get("btcw_signal_confirmer")
            if found is None:
                found = app.extensions["btcw_signal_confirmer"] = OutboxConfirmer(app)
    return found


# ------------------------------------------------------------------------------ sweeper


@dataclass
class SweepResult:
    """How many signals one sweep published and handed on."""

    published: int = 0
    handed_on: int = 0
    error: str = ""


def _claim(column, min_age: float, limit: int) -> list[int]:
    """Mark up to `limit` pending signals as delivered by us; the ids this call won."""
    cutoff = utcnow() - timedelta(seconds=max(min_age, 0))
    with db.engine.begin() as conn:
        ids = list(conn.execute(
            select(Signal.id).where(column.is_(None), Signal.received_at <= cutoff)
            .order_by(Signal.id).limit(limit)
        ).scalars())
        if not ids:
            return []
        won = conn.execute(
            update(Signal).where(Signal.id.in_(ids), column.is_(None))
            .values({column.key: utcnow()}).returning(Signal.id)
        ).scalars()
        return sorted(won)


def _release(column, ids: list[int]) -> None:
    """Give claimed signals back to the outbox after a failed delivery."""
    with db.engine.begin() as conn:
        conn.execute(update(Signal).where(Signal.id.in_(ids)).values({column.key: None}))


def _events(ids: list[int]) -> list[dict[str, Any]]:
    rows = db.session.execute(
        select(Signal, Strategy.name).join(Strategy, Strategy.id == Signal.strategy_id)
        .where(Signal.id.in_(ids)).order_by(Signal.id)
    ).all()
    events = [signal_event(signal, name) for signal, name in rows]
    db.session.rollback()
    return events


def sweep(min_age: float = SWEEP_MIN_AGE, batch: int = 500, max_batches: int = 20) -> SweepResult:
    """Deliver what Redis outages left in the outbox; each signal exactly once."""
    result = SweepResult()
    client = redis_store.client
    try:
        for _ in range(max_batches):
            ids = _claim(Signal.published_at, min_age, batch)
            if not ids:
                break
            try:
                with client.pipeline(transaction=False) as pipe:
                    for event in _events(ids):
                        pipe.publish(CHANNEL, _dumps(event))
                    pipe.execute()
            except RedisError:
                _release(Signal.published_at, ids)
                raise
            result.published += len(ids)
        for _ in range(max_batches):
            ids = _claim(Signal.dispatched_at, min_age, batch)
            if not ids:
                break
            done = 0
            try:
                for signal_id in ids:
                    try:
                        _enqueue_notify(signal_id, unique=True)
                    except DuplicateJobError:
                        pass  # the job exists already: it was handed on before
                    done += 1
            except RedisError:
                _release(Signal.dispatched_at, ids[done:])
                result.handed_on += done
                raise
            result.handed_on += len(ids)
    except RedisError as exc:
        result.error = str(exc)
        log.warning("signal outbox sweep stopped (Redis: %s)", exc)
    else:
        resume_redis()
    if result.published or result.handed_on:
        log.info("signal outbox: published %d, handed on %d", result.published,
                 result.handed_on)
    return result
