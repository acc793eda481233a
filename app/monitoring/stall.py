"""Stall detection: a bot that is alive but no longer processes new candles.

FreqTrade's `/api/v1/health` last_process moves on every loop (every few seconds) even when the
exchange sends no new candle, so it cannot tell a stalled bot from a healthy one. The newest
candle the strategy has analysed can: the status sweep reads it from `/api/v1/pair_candles`
(`data_stop_ts`, the open time of the newest closed candle) and this module compares the
candle's close time with now.

A running bot is **stalled** when its newest analysed candle closed longer ago than
max(2 x timeframe, system.monitoring.stall_minutes). A bot younger than that window is given
the window to start (it is still loading history). A stalled bot is alerted once, restarted when
system.monitoring.restart_stalled is on (at most once per window), and goes back to `running`
as soon as a new candle arrives.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from datetime import datetime

from redis.exceptions import RedisError
from sqlalchemy import select, update

from app.clock import utcnow
from app.extensions import db, redis_store
from app.monitoring.alerts import raise_alert
from app.monitoring.models import Alert
from app.runtime.control import RuntimeControlError, request_restart
from app.runtime.supervisor import EVENTS_CHANNEL
from app.strategies.models import Strategy, StrategyEvent

log = logging.getLogger(__name__)

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "M": 2592000}
_TIMEFRAME = re.compile(r"^(\d+)([smhdwM])$")
RESTART_KEY = "btcw:monitoring:stall-restart:{id}"


def timeframe_seconds(timeframe: str) -> int:
    """'1m' -> 60, '4h' -> 14400, '1M' -> 30 days; ValueError for anything else."""
    match = _TIMEFRAME.match(timeframe or "")
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"not a FreqTrade timeframe: {timeframe!r}")
    return int(match.group(1)) * _UNITS[match.group(2)]


def stall_window(timeframe: str, stall_minutes: float) -> float:
    """Seconds without a new candle after which a bot is stalled: max(2 x timeframe, minutes)."""
    return max(2 * timeframe_seconds(timeframe), float(stall_minutes) * 60)


def candle_close_ts(data_stop_ts: float | None, timeframe: str) -> float | None:
    """Close time (unix seconds) of the newest analysed candle, from pair_candles' data_stop_ts.

    FreqTrade gives the candle's open time in milliseconds; 0 or None means nothing analysed yet.
    """
    if not data_stop_ts:
        return None
    seconds = data_stop_ts / 1000 if data_stop_ts > 1e11 else float(data_stop_ts)
    return seconds + timeframe_seconds(timeframe)


@dataclass(frozen=True)
class StallVerdict:
    """Whether a bot is stalled now, and the figures that decided it."""

    stalled: bool | None  # None: cannot tell (no candle data, bot not running)
    candle_age: float | None  # seconds since the newest analysed candle closed
    window: float
    reason: str = ""


def judge(*, state: str | None, candle_close: float | None, started_at: datetime | None,
          timeframe: str, stall_minutes: float, now: float) -> StallVerdict:
    """Decide from one probe whether a bot is stalled (pure; `now` is unix seconds)."""
    window = stall_window(timeframe, stall_minutes)
    if state != "running":
        return StallVerdict(None, None, window, "bot is not in state running")
    started = _unix(started_at)
    young = started is not None and now - started < window
    if candle_close is None:
        if young:
            return StallVerdict(False, None, window, "bot is starting")
        # Running for a whole window without analysing a single candle is a stall too.
        if started is None:
            return StallVerdict(None, None, window, "no candle analysed yet")
        minutes = (now - started) / 60
        return StallVerdict(True, now - started, window,
                            f"no candle analysed since it started {minutes:.0f} min ago")
    age = max(0.0, now - candle_close)
    if age <= window:
        return StallVerdict(False, age, window)
    if young:
        return StallVerdict(False, age, window, "bot is starting")
    return StallVerdict(True, age, window,
                        f"no new candle for {age / 60:.1f} min (window {window / 60:.1f} min)")


def _unix(value: datetime | None) -> float | None:
    if value is None:
        return None
    return (value - datetime(1970, 1, 1)).total_seconds()


# ------------------------------------------------------------------------------ transitions


def mark_stalled(strategy_id: int, reason: str, restart: bool, window: float) -> bool:
    """running -> stalled (only from running, atomically); alert; restart if asked. True if done."""
    result = db.session.execute(
        update(Strategy)
        .where(Strategy.id == strategy_id, Strategy.status == "running")
        .values(status="stalled", status_message=f"stalled: {reason}")
    )
    if result.rowcount != 1:
        db.session.rollback()
        return False
    db.session.add(StrategyEvent(strategy_id=strategy_id, kind="stalled", message=reason))
    db.session.commit()
    strategy = db.session.get(Strategy, strategy_id, populate_existing=True)
    _publish(strategy)
    restarted = restart and _restart(strategy, window)
    message = f"Strategy {strategy.name} (id {strategy.id}) is stalled: {reason}."
    if restarted:
        message += " It is being restarted (system.monitoring.restart_stalled)."
    raise_alert("bot_stalled", message, "warning", strategy_id=strategy_id, source="monitoring")
    return True


def mark_recovered(strategy_id: int, candle_age: float | None,
                   open_alert: bool = False) -> bool:
    """stalled -> running (only from stalled) and resolve the stall alert; True if either.

    `open_alert`: the strategy has an unresolved stall alert (a restarted bot comes back as
    running, not stalled, and still needs its alert resolved).
    """
    result = db.session.execute(
        update(Strategy)
        .where(Strategy.id == strategy_id, Strategy.status == "stalled")
        .values(status="running", status_message="")
    )
    if result.rowcount != 1 and not open_alert:
        db.session.rollback()
        return False
    age = f" (newest candle {candle_age:.0f} s old)" if candle_age is not None else ""
    db.session.add(StrategyEvent(strategy_id=strategy_id, kind="recovered",
                                 message=f"processing candles again{age}"))
    db.session.execute(
        update(Alert)
        .where(Alert.strategy_id == strategy_id, Alert.kind == "bot_stalled",
               Alert.resolved_at.is_(None))
        .values(resolved_at=utcnow())
    )
    db.session.commit()
    strategy = db.session.get(Strategy, strategy_id, populate_existing=True)
    _publish(strategy)
    raise_alert("bot_recovered", f"Strategy {strategy.name} (id {strategy.id}) processes "
                f"candles again{age}.", "info", strategy_id=strategy_id, source="monitoring")
    return True


def strategies_with_open_stall_alert() -> set[int]:
    """Ids of strategies that have an unresolved stall alert."""
    return set(db.session.scalars(
        select(Alert.strategy_id).where(Alert.kind == "bot_stalled", Alert.resolved_at.is_(None),
                                        Alert.strategy_id.is_not(None))))


def _restart(strategy: Strategy, window: float) -> bool:
    """Ask the runtime to restart a stalled bot, at most once per stall window."""
    try:
        fresh = redis_store.client.set(RESTART_KEY.format(id=strategy.id), "1",
                                       ex=max(int(window), 60), nx=True)
    except RedisError:
        fresh = True  # without Redis the start grace period still spaces restarts out
    if not fresh:
        log.info("strategy %s stalled again within its window; not restarted again", strategy.id)
        return False
    try:
        request_restart(strategy.id)
    except RuntimeControlError as exc:
        log.warning("restart of stalled strategy %s refused: %s", strategy.id, exc)
        return False
    return True


def _publish(strategy: Strategy | None) -> None:
    """Announce the status change like the supervisor does (gateway routes, live pages)."""
    if strategy is None:
        return

    payload = {"strategy_id": strategy.id, "status": strategy.status, "host": strategy.host,
               "port": strategy.port, "pid": strategy.pid}
    try:
        redis_store.client.publish(EVENTS_CHANNEL, json.dumps(payload))
    except RedisError:
        pass
