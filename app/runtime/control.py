"""Control of the bots: what pages, the JSON API, the CLI and jobs call to start/stop strategies.

Nothing here runs a process. A request records the wanted state in the database
(`desired_state`, `status`, `host`) and pushes a command onto the chosen host's supervisor queue
in Redis (app/runtime/hosts.py); the supervisor of that host does the work and records the
outcome (status running / error / crashed, pid, port, StrategyEvents). Since the database is the
source of truth, a command lost with Redis is still carried out on the supervisor's next pass.

Errors are typed so routes map them to 4xx in one place: `StrategyNotFound` (404),
`InvalidTransition` (409), `CapacityError` (409), `BotCommandError` (502); each has
`.status` (HTTP) and a message meant for the user.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from contextlib import contextmanager

from redis.exceptions import RedisError
from sqlalchemy import func, or_, select

from app.clock import utcnow
from app.errors import AppError
from app.extensions import db, redis_store
from app.runtime import hosts
from app.runtime.bot_client import BotClient, BotError
from app.runtime.credentials import ensure_credentials
from app.runtime.launcher import write_bot_files
from app.runtime.port_pool import PortPool
from app.strategies.models import Strategy, StrategyEvent
from app.system.settings import current_settings

log = logging.getLogger(__name__)

# Statuses in which a bot exists or is about to: they count against the capacity limit.
ACTIVE_STATUSES = ("starting", "running", "stalled", "stopping", "lost")
STOPPED_STATUSES = ("stopped", "error", "crashed")
# What one FreqTrade bot costs (measured, SPEC §13); used to spread starts over hosts.
BOT_MEMORY_ESTIMATE = 330 * 1024 * 1024
_CAPACITY_LOCK = "btcw:runtime:capacity-lock"


class RuntimeControlError(AppError):
    """Base of the runtime's user-facing errors; `status` is what a route answers."""


class StrategyNotFound(RuntimeControlError):
    """No (undeleted) strategy with that id."""

    status = 404


class InvalidTransition(RuntimeControlError):
    """The command does not fit the strategy's current status (e.g. stop a stopped bot)."""

    status = 409


class CapacityError(RuntimeControlError):
    """Starting one more bot would exceed system.capacity.max_strategies."""

    status = 409


class HostUnavailable(RuntimeControlError):
    """A start was pinned to a host whose supervisor is not running."""

    status = 409


class BotCommandError(RuntimeControlError):
    """The bot did not carry out a command sent to its API (unreachable, timeout, error)."""

    status = 502


# ---------------------------------------------------------------------------------- helpers


def get_strategy_row(strategy_id: int) -> Strategy:
    """The live strategy row; StrategyNotFound otherwise."""
    return _load(strategy_id)


def _load(strategy_id: int) -> Strategy:
    strategy = db.session.get(Strategy, int(strategy_id), populate_existing=True)
    if strategy is None or strategy.deleted_at is not None:
        raise StrategyNotFound(f"No strategy with id {strategy_id}.")
    return strategy


def record_event(strategy_id: int, kind: str, message: str = "", pid: int | None = None) -> None:
    """Add a StrategyEvent to the session (the caller commits)."""
    db.session.add(StrategyEvent(strategy_id=strategy_id, kind=kind, message=message, pid=pid))


@contextmanager
def _capacity_lock():
    """Serialise capacity checks across processes (a Redis lock; none if Redis is down)."""
    lock = None
    try:
        lock = redis_store.client.lock(_CAPACITY_LOCK, timeout=15, blocking_timeout=10)
        if not lock.acquire():
            raise RuntimeControlError("Another start is being placed; try again in a moment.")
    except RedisError as exc:
        log.warning("capacity lock unavailable (Redis: %s); checking without it", exc)
        lock = None
    try:
        yield
    finally:
        if lock is not None:
            try:
                lock.release()
            except RedisError:  # expired or Redis gone: nothing left to release
                pass


def active_count(exclude_id: int | None = None) -> int:
    """Strategies running, starting or wanted running, on every host (not deleted)."""
    query = select(func.count(Strategy.id)).where(
        Strategy.deleted_at.is_(None),
        or_(Strategy.desired_state == "running", Strategy.status.in_(ACTIVE_STATUSES)),
    )
    if exclude_id is not None:
        query = query.where(Strategy.id != exclude_id)
    return int(db.session.scalar(query) or 0)


def live_hosts() -> list[hosts.HostInfo]:
    """Supervisors with a fresh heartbeat, most free memory first ([] if Redis is down)."""
    try:
        return hosts.live_hosts(redis_store.client)
    except RedisError as exc:
        log.warning("cannot read supervisor heartbeats (Redis: %s)", exc)
        return []


def registered_hosts() -> set[str]:
    """Hosts whose supervisor registered and did not stop cleanly (empty if Redis is down)."""
    try:
        return hosts.registered_hosts(redis_store.client)
    except RedisError:
        return set()


def choose_host() -> tuple[str, bool]:
    """The host for a new bot: room for the most bots by real free memory, then fewest bots.

    Room = (free memory - starts already placed there but not yet running x 330 MB) / 330 MB,
    so supervisors on one machine (same free memory) share the bots out evenly, and separate
    machines fill by free memory. Returns (host, alive); with no live supervisor it is
    system.runtime.host, not alive yet.
    """
    candidates = live_hosts()
    if not candidates:
        return current_settings().system.runtime.host, False
    pending = dict(db.session.execute(
        select(Strategy.host, func.count(Strategy.id))
        .where(Strategy.deleted_at.is_(None), Strategy.status == "starting",
               Strategy.pid.is_(None))
        .group_by(Strategy.host)
    ).all())

    def room(h: hosts.HostInfo) -> tuple[int, int]:
        free = h.free_memory - pending.get(h.host, 0) * BOT_MEMORY_ESTIMATE
        return free // BOT_MEMORY_ESTIMATE, -(h.running + pending.get(h.host, 0))

    limit = current_settings().system.runtime.max_bots_per_host
    if limit:
        candidates = [h for h in candidates
                      if h.running + pending.get(h.host, 0) < limit] or candidates
    best = max(candidates, key=room)
    return best.host, True


def _host_alive(host: str | None) -> bool:
    return bool(host) and any(h.host == host for h in live_hosts())


def _push(host: str, action: str, strategy_id: int) -> bool:
    try:
        hosts.push_command(redis_store.client, host, action, strategy_id)
        return True
    except RedisError as exc:
        log.warning("command %s for strategy %s not queued (Redis: %s); the supervisor "
                    "picks it up from the database", action, strategy_id, exc)
        return False


# ---------------------------------------------------------------------------------- commands


def request_start(strategy_id: int, host: str | None = None) -> Strategy:
    """Ask for a strategy's bot to run: check capacity, place it on a host, queue the start.

    `host` pins the bot to that supervisor (it must be alive); by default choose_host() picks.
    Raises StrategyNotFound, InvalidTransition (already running/starting/stopping),
    CapacityError (system.capacity.max_strategies reached) or HostUnavailable. Returns the
    strategy, now `starting`; the supervisor makes it `running` or `error` (wait_for_status()).
    """
    with _capacity_lock():
        strategy = _load(strategy_id)
        if strategy.status in ("starting", "running", "stalled"):
            raise InvalidTransition(f"Strategy {strategy.name} is already {strategy.status}.")
        if strategy.status == "stopping":
            raise InvalidTransition(
                f"Strategy {strategy.name} is stopping; start it again once it has stopped.")
        limit = current_settings().system.capacity.max_strategies
        running = active_count(exclude_id=strategy.id)
        if running >= limit:
            raise CapacityError(
                f"Capacity limit reached: {running} of {limit} strategies are running or "
                f"starting (system.capacity.max_strategies). Stop one or raise the limit.")
        if host is not None:
            if not _host_alive(host):
                raise HostUnavailable(f"No supervisor is running on host {host}.")
            alive = True
        else:
            host, alive = choose_host()
        ensure_credentials(strategy)
        strategy.desired_state = "running"
        strategy.status = "starting"
        strategy.host = host
        strategy.pid = None
        strategy.port = None
        strategy.status_message = (f"queued on {host}" if alive
                                   else f"waiting for the supervisor of {host} to start")
        record_event(strategy.id, "start_requested", f"placed on {host}")
        db.session.commit()
    _push(host, "start", strategy.id)
    return strategy


def request_stop(strategy_id: int) -> Strategy:
    """Ask for a strategy's bot to stop (API stop, SIGTERM, SIGKILL after the timeout).

    Raises StrategyNotFound or InvalidTransition (not running). Returns the strategy, now
    `stopping` (or `stopped` at once when no bot process was ever recorded and no supervisor
    of its host is alive).
    """
    strategy = _load(strategy_id)
    if strategy.status in STOPPED_STATUSES and strategy.desired_state != "running":
        raise InvalidTransition(f"Strategy {strategy.name} is not running ({strategy.status}).")
    strategy.desired_state = "stopped"
    record_event(strategy.id, "stop_requested")
    if strategy.pid is None and not _host_alive(strategy.host):
        # Nothing was ever launched and nobody could be launching it: stopped now.

        PortPool.from_app().release(strategy.id)
        strategy.status = "stopped"
        strategy.status_message = ""
        strategy.port = None
        strategy.stopped_at = utcnow()
        db.session.commit()
        return strategy
    if strategy.status not in STOPPED_STATUSES:
        strategy.status = "stopping"
    strategy.status_message = "stop requested"
    db.session.commit()
    if strategy.host:
        _push(strategy.host, "stop", strategy.id)
    return strategy


def request_restart(strategy_id: int) -> Strategy:
    """Restart a strategy's bot (stop, then start on the same host); a stopped one just starts.

    A restart rewrites the bot's config, so it also applies edited strategy settings.
    """
    strategy = _load(strategy_id)
    if strategy.status in STOPPED_STATUSES and strategy.desired_state != "running":
        return request_start(strategy_id)
    if strategy.status == "stopping":
        raise InvalidTransition(
            f"Strategy {strategy.name} is stopping; start it again once it has stopped.")
    strategy.desired_state = "running"
    strategy.status_message = "restart requested"
    record_event(strategy.id, "restart_requested")
    db.session.commit()
    _push(strategy.host or current_settings().system.runtime.host, "restart", strategy.id)
    return strategy


def request_reload_config(strategy_id: int) -> dict:
    """Rewrite the bot's config from the strategy record and ask the bot to reload it.

    Goes through the bot's own API (POST /api/v1/reload_config); the bot keeps its process,
    port and credentials. Raises InvalidTransition if the bot is not running and
    BotCommandError if it does not answer. Returns the bot's reply.
    """
    strategy = _load(strategy_id)
    if strategy.status not in ("running", "stalled") or not strategy.port:
        raise InvalidTransition(
            f"Strategy {strategy.name} is not running ({strategy.status}); start it instead.")

    write_bot_files(strategy, strategy.port, strategy.host)
    client = BotClient.for_strategy(strategy)
    try:
        reply = client.reload_config()
    except BotError as exc:
        raise BotCommandError(f"Reload of {strategy.name} failed: {exc.message}") from exc
    # FreqTrade reloads on its next loop: its API goes away and a new one comes up. Answer when
    # the bot runs again, so the next call finds it (bounded by the startup timeout).
    deadline = time.monotonic() + current_settings().system.freqtrade.startup_timeout
    while time.monotonic() < deadline:
        try:
            if client.get("show_config", timeout=2).get("state") == "running":
                break
        except BotError:
            pass
        time.sleep(0.25)
    record_event(strategy.id, "config_reloaded", "", strategy.pid)
    db.session.commit()
    return reply


def stop_all(host: str | None = None) -> list[int]:
    """Stop every strategy that runs or is wanted running (on one host, or all); their ids."""
    query = select(Strategy.id).where(
        Strategy.deleted_at.is_(None),
        or_(Strategy.desired_state == "running", Strategy.status.in_(ACTIVE_STATUSES)),
    )
    if host is not None:
        query = query.where(Strategy.host == host)
    stopped = []
    for strategy_id in db.session.scalars(query.order_by(Strategy.id)).all():
        try:
            request_stop(strategy_id)
            stopped.append(strategy_id)
        except InvalidTransition:
            continue
    return stopped


def wait_for_status(strategy_id: int, statuses: Iterable[str] | str, timeout: float = 60.0,
                    poll: float = 0.25) -> Strategy:
    """Poll the database until the strategy's status is one of `statuses`; TimeoutError if not.

    Each poll ends the session's transaction (rollback) to see other processes' commits, so
    commit your own changes before calling it.
    """
    wanted = {statuses} if isinstance(statuses, str) else set(statuses)
    deadline = time.monotonic() + timeout
    while True:
        db.session.rollback()  # end the read transaction so other processes' commits show
        strategy = _load(strategy_id)
        if strategy.status in wanted:
            return strategy
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"strategy {strategy_id} is {strategy.status!r} ({strategy.status_message}) "
                f"after {timeout:.0f}s, expected one of {sorted(wanted)}")
        time.sleep(poll)


# -------------------------------------------------------------------------- reconciling

# Grace beyond the configured timeouts before a transitional state counts as stuck.
TRANSITION_GRACE = 60


def reconcile_transitions(now=None) -> list[dict]:
    """Turn a `starting` or `stopping` that outlived its timeout (a supervisor that died, a
    command lost with Redis) into the real state: `running` when the bot answers, else
    `stopped` (a wanted bot is started again by its host's supervisor when that one runs).
    Each change gets an event; returns what changed."""
    now = now or utcnow()
    freqtrade = current_settings().system.freqtrade
    limits = {"starting": freqtrade.startup_timeout + TRANSITION_GRACE,
              "stopping": freqtrade.shutdown_timeout + TRANSITION_GRACE}
    rows = list(db.session.scalars(select(Strategy).where(
        Strategy.deleted_at.is_(None), Strategy.status.in_(tuple(limits)))))
    if not rows:
        return []
    last_event = dict(db.session.execute(
        select(StrategyEvent.strategy_id, func.max(StrategyEvent.created_at))
        .where(StrategyEvent.strategy_id.in_([s.id for s in rows]))
        .group_by(StrategyEvent.strategy_id)).all())
    changed = []
    for strategy in rows:
        since = max(t for t in (last_event.get(strategy.id), strategy.updated_at) if t)
        waited = (now - since).total_seconds()
        if waited < limits[strategy.status]:
            continue
        was = strategy.status
        answers = False
        if strategy.port and strategy.host:
            try:
                answers = BotClient.for_strategy(strategy, timeout=3).ping(timeout=3)
            except BotError:
                answers = False
        if answers:
            strategy.status, message = "running", (
                f"Was {was} for {waited:.0f} s; the bot answers, so it is running.")
        else:
            strategy.status, message = "stopped", (
                f"Was {was} for {waited:.0f} s with no bot answering (is the supervisor of "
                f"{strategy.host or 'its host'} running?); marked stopped.")
            strategy.pid = None
            strategy.stopped_at = now
        strategy.status_message = message
        record_event(strategy.id, "reconciled", message)
        changed.append({"strategy_id": strategy.id, "from": was, "to": strategy.status})
        log.warning("strategy %s: %s", strategy.id, message)
    db.session.commit()
    return changed
