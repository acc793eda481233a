"""Strategies: create, edit, delete, list, status, logs and commands.

The pages, the JSON API, the CLI and `flask up` all call these functions. Starting and stopping
bots is the runtime's job (`app.runtime.control`); everything that talks to a bot goes through
`app.runtime.bot_client.BotClient`. Errors carry the HTTP status a route should answer with
(`status`, HTTP) and a message meant for the user.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import secrets
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import String, cast, func, or_, select

from app.clock import isoformat, utcnow
from app.errors import AppError
from app.extensions import db, redis_store
from app.monitoring import capacity as capacity_figures
from app.monitoring.bot_status import cached_statuses
from app.monitoring.bot_usage import last_measurement, stored_usage
from app.monitoring.capacity import port_pool_status
from app.proxies.models import Proxy
from app.runtime import control, paths, placement
from app.runtime.bot_client import BotClient, BotError, BotTimeout, BotUnreachable
from app.runtime.control import (
    ACTIVE_STATUSES,
    CapacityError,
    InvalidTransition,
    RuntimeControlError,
    StrategyNotFound,
)
from app.runtime.credentials import new_credentials
from app.runtime.ft_config import TRADABLE_BALANCE_RATIO
from app.runtime.launcher import CONSOLE_LOG
from app.strategies.models import STATUSES, Strategy, StrategyEvent
from app.strategies.validation import clean_strategy
from app.system.settings import current_settings

log = logging.getLogger(__name__)

COMMANDS = ("start", "stop", "restart", "reload_config")
# Fields whose change only takes effect when the bot's config is written again.
BOT_CONFIG_FIELDS = (
    "strategy_file", "strategy_class", "exchange", "timeframe", "pairs", "stake_currency",
    "stake_amount", "max_open_trades", "dry_run_wallet", "proxy_id",
)
LOG_LIMIT_MAX = 1000
_LOG_LINE = re.compile(
    r"^(?P<time>\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:[,.]\d+)?) - (?P<logger>\S+) - "
    r"(?P<level>[A-Z]+) - (?P<message>.*)$"
)

__all__ = [
    "CapacityError", "InvalidTransition", "RuntimeControlError", "StrategyNotFound",
    "ValidationFailed", "UnknownCommand",
]


class ServiceError(AppError):
    """A request the strategies service refuses; `status` for routes."""


class ValidationFailed(ServiceError):
    """Input with field errors: `errors` is {field: message}."""

    status = 422

    def __init__(self, errors: dict[str, str]):
        fields = ", ".join(sorted(errors))
        super().__init__(f"Check these fields: {fields}.", errors=errors)
        self.errors = errors


class UnknownCommand(ServiceError):
    """A command other than start, stop, restart, reload_config."""


class StartFailed(ServiceError):
    """A waited-for start ended in error: the message is FreqTrade's own."""

    status = 502


# ---------------------------------------------------------------------------------- records


def get_strategy(strategy_id: int | str) -> Strategy:
    """A live (not deleted) strategy by id; StrategyNotFound naming the id."""
    try:
        key = int(strategy_id)
    except (TypeError, ValueError):
        raise StrategyNotFound(f"No strategy with id {strategy_id!r}.") from None
    strategy = db.session.get(Strategy, key) if 0 < key < 2**31 else None
    if strategy is None or strategy.deleted_at is not None:
        raise StrategyNotFound(f"No strategy with id {strategy_id}.")
    return strategy


def find_strategy(ref: str) -> Strategy:
    """A live strategy by id or by name (for the CLI)."""
    if str(ref).isdigit():
        return get_strategy(ref)
    strategy = db.session.scalar(
        select(Strategy).where(Strategy.name == ref, Strategy.deleted_at.is_(None)))
    if strategy is None:
        raise StrategyNotFound(f"No strategy named {ref!r}.")
    return strategy


def list_strategies(status: str | None = None) -> list[Strategy]:
    """Live strategies by id, optionally only those with one status."""
    query = select(Strategy).where(Strategy.deleted_at.is_(None)).order_by(Strategy.id)
    if status:
        if status not in STATUSES:
            raise ServiceError(f"Unknown status {status!r}; one of: {', '.join(STATUSES)}.")
        query = query.where(Strategy.status == status)
    return list(db.session.scalars(query))


def to_dict(strategy: Strategy) -> dict:
    """The JSON form of a strategy record (its bot credentials are never included)."""
    return {
        "id": strategy.id,
        "name": strategy.name,
        "description": strategy.description,
        "strategy_class": strategy.strategy_class,
        "strategy_file": strategy.strategy_file,
        "exchange": strategy.exchange,
        "timeframe": strategy.timeframe,
        "pairs": list(strategy.pairs or []),
        "stake_currency": strategy.stake_currency,
        "stake_amount": strategy.stake_amount,
        "max_open_trades": strategy.max_open_trades,
        "dry_run_wallet": strategy.dry_run_wallet,
        "proxy_id": strategy.proxy_id,
        "thresholds": {
            "strong": strategy.strong_threshold,
            "medium": strategy.medium_threshold,
            "weak": strategy.weak_threshold,
        },
        "version_label": strategy.version_label,
        "desired_state": strategy.desired_state,
        "status": strategy.status,
        "status_message": strategy.status_message,
        "host": strategy.host,
        "port": strategy.port,
        "pid": strategy.pid,
        "health_score": strategy.health_score,
        "started_at": isoformat(strategy.started_at),
        "stopped_at": isoformat(strategy.stopped_at),
        "last_processed_at": isoformat(strategy.last_processed_at),
        "created_at": isoformat(strategy.created_at),
        "updated_at": isoformat(strategy.updated_at),
    }


def _threshold_input(data: Mapping) -> dict:
    """Accept thresholds as {"thresholds": {"strong": …}} as well as the flat field names."""
    if not isinstance(data, Mapping) or "thresholds" not in data:
        return dict(data) if isinstance(data, Mapping) else data
    flat = {k: v for k, v in data.items() if k != "thresholds"}
    nested = data["thresholds"]
    if not isinstance(nested, Mapping):
        flat["thresholds"] = nested  # reported as an unknown shape below
        return flat
    for level, value in nested.items():
        flat[f"{level}_threshold"] = value
    return flat


def create_strategy(data: Mapping) -> Strategy:
    """Validate and store a new, stopped strategy with fresh bot credentials.

    Raises ValidationFailed with {field: message}.
    """
    values, errors = clean_strategy(_threshold_input(data))
    if errors:
        raise ValidationFailed(errors)
    strategy = Strategy(**values, **new_credentials(), status="stopped",
                        desired_state="stopped")
    db.session.add(strategy)
    db.session.flush()
    source = f"{strategy.strategy_class} from {strategy.strategy_file}"
    db.session.add(StrategyEvent(strategy_id=strategy.id, kind="created", message=source))
    db.session.commit()
    log.info("strategy %s created (id %s)", strategy.name, strategy.id)
    return strategy


def update_strategy(strategy_id: int, data: Mapping) -> tuple[Strategy, bool]:
    """Change a strategy's settings (only the fields given). Returns (strategy, restart_needed).

    restart_needed is True when the bot runs and a changed field is part of its FreqTrade
    config (a restart or reload_config applies it); thresholds apply at once.
    """
    strategy = get_strategy(strategy_id)
    values, errors = clean_strategy(_threshold_input(data), current=strategy)
    if errors:
        raise ValidationFailed(errors)
    changed = [k for k, v in values.items() if getattr(strategy, k) != v]
    for key in changed:
        setattr(strategy, key, values[key])
    if changed:
        db.session.add(StrategyEvent(strategy_id=strategy.id, kind="updated",
                                     message="changed: " + ", ".join(changed)))
    db.session.commit()
    running = strategy.status in ACTIVE_STATUSES
    return strategy, running and any(k in BOT_CONFIG_FIELDS for k in changed)


def delete_strategy(strategy_id: int) -> Strategy:
    """Soft-delete: stop the bot, hide the strategy and free its name; signals stay."""
    strategy = get_strategy(strategy_id)
    if strategy.status in ACTIVE_STATUSES or strategy.desired_state == "running":
        try:
            control.request_stop(strategy.id)
        except InvalidTransition:
            pass
        strategy = db.session.get(Strategy, strategy.id, populate_existing=True)
    strategy.deleted_at = utcnow()
    strategy.desired_state = "stopped"
    db.session.add(StrategyEvent(strategy_id=strategy.id, kind="deleted"))
    db.session.commit()
    log.info("strategy %s (id %s) deleted", strategy.name, strategy.id)
    return strategy


def move_strategy(strategy_id: int, host: object) -> dict:
    """Move a strategy to another host (app/runtime/placement.move); 400 on a bad host."""
    if not isinstance(host, str) or not host.strip() or len(host) > 255:
        raise ServiceError("host: give the address of a live supervisor host.", field="host")
    return placement.move(int(strategy_id), host.strip())


def proxy_choices() -> list[tuple[int, str]]:
    """(id, label) of every proxy, for the form's proxy select."""
    return [(p.id, f"{p.name} ({p.status})")
            for p in db.session.scalars(select(Proxy).order_by(Proxy.name))]


# --------------------------------------------------------------------------------- commands


def run_command(strategy_id: int, command: str, wait: float = 0) -> dict:
    """Carry out start, stop, restart or reload_config; optionally wait up to `wait` seconds.

    Returns {"status", "strategy_id", "command", "strategy_status", "message"} (plus
    "bot_reply" for reload_config). Raises UnknownCommand (400, listing the valid ones),
    StrategyNotFound, InvalidTransition, CapacityError, BotCommandError, and StartFailed when
    a waited-for start ends in error (its message is FreqTrade's).
    """
    if command not in COMMANDS:
        raise UnknownCommand(f"Unknown command {command!r}; valid commands: "
                             f"{', '.join(COMMANDS)}.")
    strategy = get_strategy(strategy_id)
    result: dict[str, Any] = {"status": "success", "strategy_id": strategy.id,
                              "command": command}
    if command == "reload_config":
        result["bot_reply"] = control.request_reload_config(strategy.id)
        result["message"] = f"{strategy.name} reloaded its configuration."
    else:
        action = {"start": control.request_start, "stop": control.request_stop,
                  "restart": control.request_restart}[command]
        old_pid = strategy.pid
        action(strategy.id)
        result["message"] = {
            "start": f"Start of {strategy.name} requested.",
            "stop": f"Stop of {strategy.name} requested.",
            "restart": f"Restart of {strategy.name} requested.",
        }[command]
        if wait > 0:
            _wait_after(strategy.id, command, wait, result, old_pid)
    strategy = db.session.get(Strategy, strategy.id, populate_existing=True)
    result["strategy_status"] = strategy.status
    result["port"] = strategy.port
    result["pid"] = strategy.pid
    return result


def _wait_after(strategy_id: int, command: str, wait: float, result: dict,
                old_pid: int | None = None) -> None:
    """Wait for the end state of a start/stop/restart and describe it in `result`.

    A restart is over when the bot runs with a new pid (or failed).
    """
    wanted = ("stopped", "error", "crashed") if command == "stop" else (
        "running", "error", "crashed")
    deadline = time.monotonic() + wait
    while True:
        try:
            strategy = control.wait_for_status(strategy_id, wanted,
                                               timeout=max(deadline - time.monotonic(), 0))
        except TimeoutError as exc:
            result["status"] = "pending"
            result["message"] += f" Still waiting: {exc}."
            return
        restarting = (command == "restart" and strategy.status == "running"
                      and strategy.pid == old_pid)
        if not restarting:
            break
        if time.monotonic() >= deadline:
            result["status"] = "pending"
            result["message"] += f" Still waiting: the bot runs with its old pid {old_pid}."
            return
        time.sleep(0.25)
    if command != "stop" and strategy.status in ("error", "crashed"):
        raise StartFailed(f"{strategy.name} failed to start: "
                          f"{strategy.status_message or strategy.status}")
    result["message"] = f"{strategy.name} is {strategy.status}."


# ------------------------------------------------------------------------- process and bot


def uptime_seconds(strategy: Strategy) -> int | None:
    """Seconds since the bot process started (None when no bot process runs)."""
    if not strategy.pid or strategy.status not in ACTIVE_STATUSES or not strategy.started_at:
        return None
    return max(int((utcnow() - strategy.started_at).total_seconds()), 0)


def process_figures(strategies: Iterable[Strategy]) -> dict[int, dict]:
    """pid, uptime, CPU % and memory of each strategy whose bot process runs, by id.

    CPU % and memory (RSS, PSS, bytes) are what the monitoring sweep last measured
    (app/monitoring/bot_usage.py); they are None until a measurement of this very process
    exists (just started, a bot on a host the jobs do not run on, Redis down), so pages show
    "—" instead of a made-up 0. `measured_at` says when they were measured.
    """
    running = [s for s in strategies if s.pid and s.status in ACTIVE_STATUSES]
    usage = stored_usage(s.id for s in running)
    out = {}
    for strategy in running:
        sample = usage.get(strategy.id)
        if sample is not None and sample.get("pid") != strategy.pid:
            sample = None  # a measurement of the bot's previous process
        sample = sample or {}
        measured = sample.get("measured_at")
        out[strategy.id] = {
            "pid": strategy.pid,
            "uptime_seconds": uptime_seconds(strategy),
            "cpu_percent": sample.get("cpu_percent"),
            "memory_rss": sample.get("memory_rss"),
            "memory_pss": sample.get("memory_pss"),
            "measured_at": isoformat(datetime.fromtimestamp(measured, UTC).replace(tzinfo=None))
            if measured else None,
        }
    return out


def process_of(strategy: Strategy) -> dict | None:
    """process_figures() of one strategy; None when its bot process does not run."""
    return process_figures([strategy]).get(strategy.id)


def _bot_client(strategy: Strategy, timeout: float = 5.0):
    return BotClient.for_strategy(strategy, timeout=timeout)


def bot_summaries(strategies: Iterable[Strategy]) -> dict[int, dict]:
    """Profit and open trades of running bots for the list page, as the last status sweep saw
    them (app/monitoring/bot_status.py, every strategy_status_interval): the page never calls
    a bot. Each summary carries `measured_at` (ISO time); a bot the sweep could not ask
    gets {"error": message}; one not swept yet is left out."""
    running = [s for s in strategies if s.port and s.status in ("running", "stalled")]
    out: dict[int, dict] = {}
    for sid, status in cached_statuses([s.id for s in running]).items():
        try:
            at = status.get("summary_at") or status["last_update"]
            measured = isoformat(datetime.fromtimestamp(float(at), UTC).replace(tzinfo=None))
        except (KeyError, TypeError, ValueError, OverflowError, OSError):
            measured = None
        if isinstance(status.get("summary"), dict):
            out[sid] = {**status["summary"], "measured_at": measured}
        elif status.get("error"):
            out[sid] = {"error": str(status["error"]), "measured_at": measured}
    return out


def list_rows(strategies: list[Strategy] | None = None) -> list[dict]:
    """Strategies with their process figures and bot summary (what the list page shows)."""
    strategies = list_strategies() if strategies is None else strategies
    summaries = bot_summaries(strategies)
    processes = process_figures(strategies)
    rows = []
    for strategy in strategies:
        row = to_dict(strategy)
        row["process"] = processes.get(strategy.id)
        row["bot"] = summaries.get(strategy.id)
        rows.append(row)
    return rows


SORTS = ("id", "name", "profit", "health", "memory", "uptime")
PER_PAGE_DEFAULT, PER_PAGE_MAX = 50, 200
FAILING = ("error", "crashed", "stalled")


def _whole(raw: Any, name: str, default: int, low: int, high: int) -> int:
    if raw in (None, ""):
        return default
    try:
        value = int(str(raw))
    except ValueError:
        raise ServiceError(f"{name} must be a whole number {low}..{high}, got {str(raw)[:40]!r}."
                           ) from None
    if not low <= value <= high:
        raise ServiceError(f"{name} must be {low}..{high}, got {value}.")
    return value


def list_filters(args: Mapping) -> dict:
    """The list's query (q, status, host, sort, desc, page, per_page), checked; ServiceError (400)
    naming a bad one."""
    q = str(args.get("q") or "").strip()
    if len(q) > 100 or any(ord(c) < 32 for c in q):
        raise ServiceError("q: at most 100 printable characters.")
    status = str(args.get("status") or "")
    if status and status not in STATUSES:
        raise ServiceError(f"status: unknown {status[:40]!r}; one of {', '.join(STATUSES)}.")
    sort = str(args.get("sort") or "id")
    if sort not in SORTS:
        raise ServiceError(f"sort: unknown {sort[:40]!r}; one of {', '.join(SORTS)}.")
    host = str(args.get("host") or "")[:255]
    return {"q": q, "status": status, "host": host, "sort": sort,
            "desc": str(args.get("desc") or "") in ("1", "true", "yes"),
            "page": _whole(args.get("page"), "page", 1, 1, 10**6),
            "per_page": _whole(args.get("per_page"), "per_page", PER_PAGE_DEFAULT, 1,
                               PER_PAGE_MAX)}


def filtered_strategies(filters: Mapping) -> list[Strategy]:
    """Live strategies matching q (name, class or pair), status and host, by id."""
    query = select(Strategy).where(Strategy.deleted_at.is_(None)).order_by(Strategy.id)
    if filters.get("q"):
        needle = f"%{filters['q'].lower()}%"
        query = query.where(or_(func.lower(Strategy.name).like(needle),
                                func.lower(Strategy.strategy_class).like(needle),
                                func.lower(cast(Strategy.pairs, String)).like(needle)))
    if filters.get("status"):
        query = query.where(Strategy.status == filters["status"])
    if filters.get("host"):
        query = query.where(Strategy.host == filters["host"])
    return list(db.session.scalars(query))


def list_page(filters: Mapping) -> dict:
    """One page of the strategies list (see list_filters) with its rows, the totals of the
    whole fleet, the hosts, and the page count. Reads the database and what the status sweep
    cached; calls no bot."""
    matching = filtered_strategies(filters)
    sort, desc = filters["sort"], filters["desc"]
    if sort in ("profit", "memory"):
        if sort == "profit":
            figures = bot_summaries(matching)
            key = {sid: (f.get("profit_all_coin") or 0.0) for sid, f in figures.items()}
        else:
            usage = stored_usage(s.id for s in matching)
            key = {sid: (u.get("memory_pss") or u.get("memory_rss") or 0)
                   for sid, u in usage.items()}
        matching.sort(key=lambda s: (s.id in key, key.get(s.id, 0)), reverse=not desc)
        if desc:
            matching.reverse()
    elif sort == "name":
        matching.sort(key=lambda s: s.name.lower(), reverse=desc)
    elif sort == "health":
        matching.sort(key=lambda s: (s.health_score is not None, s.health_score or 0),
                      reverse=not desc)
    elif sort == "uptime":
        matching.sort(key=lambda s: (s.started_at is not None and s.status in ACTIVE_STATUSES,
                                     -(s.started_at.timestamp()) if s.started_at else 0),
                      reverse=not desc)
    elif desc:
        matching.reverse()
    per_page = filters["per_page"]
    pages = max(1, -(-len(matching) // per_page))
    page = min(filters["page"], pages)
    shown = matching[(page - 1) * per_page: page * per_page]
    counts = dict(db.session.execute(select(Strategy.status, func.count()).where(
        Strategy.deleted_at.is_(None)).group_by(Strategy.status)).all())
    hosts = sorted(h for h in db.session.scalars(select(Strategy.host).where(
        Strategy.deleted_at.is_(None), Strategy.host.is_not(None)).distinct()) if h)
    return {
        "rows": list_rows(shown), "matching": len(matching), "page": page, "pages": pages,
        "per_page": per_page, "filters": {**filters, "page": page},
        "total": sum(counts.values()), "running": counts.get("running", 0),
        "failing": sum(counts.get(s, 0) for s in FAILING), "hosts": hosts,
    }


BULK_ACTIONS = ("start", "stop", "restart")
BULK_KEY = "btcw:strategies:bulk:{id}"
BULK_TARGET = {"start": "running", "restart": "running", "stop": "stopped"}


def bulk_command(action: str, ids: Iterable[Any] | None = None,
                 filters: Mapping | None = None) -> dict:
    """Start, stop or restart the given strategies, or every one matching `filters`; each is
    requested at once (the supervisor works through them as fast as the host allows). Returns
    the operation with its id for bulk_progress; strategies that refuse (already stopped, no
    capacity) are listed with the reason, never half-done."""
    if action not in BULK_ACTIONS:
        raise ServiceError(f"action: one of {', '.join(BULK_ACTIONS)}, got {str(action)[:40]!r}.")
    if ids is not None:
        chosen = []
        for raw in ids:
            sid = _whole(raw, "ids[]", 0, 1, 2**63 - 1)
            chosen.append(get_strategy(sid))
    else:
        chosen = filtered_strategies(list_filters(filters or {}))
    if not chosen:
        raise ServiceError("No strategy is selected or matches the filter.")
    requested, refused = [], []
    for strategy in chosen:
        try:
            run_command(strategy.id, action)
            requested.append(strategy.id)
        except (ServiceError, RuntimeControlError) as exc:
            refused.append({"strategy_id": strategy.id, "name": strategy.name,
                            "reason": str(exc)})
    operation = {"id": secrets.token_hex(6), "action": action,
                 "requested": requested, "refused": refused, "at": utcnow().timestamp()}
    with contextlib.suppress(Exception):  # progress is a nicety; the commands are sent
        redis_store.client.set(BULK_KEY.format(id=operation["id"]), json.dumps(operation),
                               ex=3600)
    return {**operation, **bulk_progress(operation["id"], operation)}


def bulk_progress(operation_id: str, operation: dict | None = None) -> dict:
    """How far a bulk operation got: done (in its target state), failed, pending."""
    if operation is None:
        raw = None
        with contextlib.suppress(Exception):
            raw = redis_store.client.get(BULK_KEY.format(id=str(operation_id)[:40]))
        if not raw:
            raise ServiceError(f"Unknown or expired bulk operation {str(operation_id)[:40]!r}.",
                               status=404)
        operation = json.loads(raw)
    ids = operation["requested"]
    target = BULK_TARGET[operation["action"]]
    statuses = dict(db.session.execute(select(Strategy.id, Strategy.status).where(
        Strategy.id.in_(ids))).all()) if ids else {}
    done = sum(1 for s in statuses.values() if s == target)
    failed = sum(1 for s in statuses.values() if s in ("error", "crashed"))
    return {"id": operation["id"], "action": operation["action"], "total": len(ids),
            "done": done, "failed": failed, "pending": len(ids) - done - failed,
            "refused": operation.get("refused", []), "finished": done + failed == len(ids)}


def bot_details(strategy: Strategy, trades_limit: int = 50) -> dict:
    """The bot's own status, profit, balance, count and recent trades through its API.

    `reserve_percent` is the share of the dry-run wallet FreqTrade keeps back
    (tradable_balance_ratio): its balance's `starting_capital` is the wallet minus it.

    Never raises for a bot problem: a bot that is not running or does not answer gives
    {"bot": "not_running" | "unreachable" | "timeout", "message": …}.
    """
    if not strategy.port or strategy.status not in ("running", "stalled", "stopping"):
        return {"bot": "not_running",
                "message": f"{strategy.name} is {strategy.status}; its bot is not running."}
    try:
        client = _bot_client(strategy)
    except BotError as exc:
        return {"bot": "unreachable", "message": exc.message}
    out: dict[str, Any] = {"bot": "reachable", "errors": {}}
    calls = (("status", "status", None), ("profit", "profit", None),
             ("balance", "balance", None), ("count", "count", None),
             ("trades", "trades", {"limit": trades_limit}))
    for key, path, params in calls:
        try:
            out[key] = client.get(path, params=params)
        except (BotUnreachable, BotTimeout) as exc:
            state = "timeout" if isinstance(exc, BotTimeout) else "unreachable"
            return {"bot": state, "message": exc.message}
        except BotError as exc:
            out[key] = None
            out["errors"][key] = exc.message
    trades = (out.get("trades") or {}).get("trades") or []
    out["recent_trades"] = sorted(trades, key=lambda t: t.get("trade_id") or 0, reverse=True)
    out["reserve_percent"] = round((1 - TRADABLE_BALANCE_RATIO) * 100, 2)
    return out


def detailed_status(strategy_id: int) -> dict:
    """The design's detailed status: the record, the process, and the bot's own data."""
    strategy = get_strategy(strategy_id)
    details = bot_details(strategy)
    details.pop("recent_trades", None)
    return {
        "strategy_id": strategy.id,
        "basic_status": to_dict(strategy),
        "process": process_of(strategy),
        "detailed_data": details,
        "timestamp": isoformat(utcnow()),
    }


def recent_events(strategy_id: int, limit: int = 20) -> list[StrategyEvent]:
    """The strategy's latest lifecycle events, newest first."""
    return list(db.session.scalars(
        select(StrategyEvent).where(StrategyEvent.strategy_id == strategy_id)
        .order_by(StrategyEvent.id.desc()).limit(limit)))


# ------------------------------------------------------------------------------------ logs


def parse_limit(raw: Any, default: int = 100) -> int:
    """A log limit 1..1000; ServiceError naming `limit` otherwise."""
    if raw is None or raw == "":
        return default
    try:
        limit = int(str(raw).strip())
    except ValueError:
        raise ServiceError(f"limit must be a whole number from 1 to {LOG_LIMIT_MAX}, "
                           f"not {str(raw)[:20]!r}.") from None
    if not 1 <= limit <= LOG_LIMIT_MAX:
        raise ServiceError(f"limit must be from 1 to {LOG_LIMIT_MAX}, not {limit}.")
    return limit


def _line(text: str) -> dict:
    match = _LOG_LINE.match(text)
    if not match:
        return {"time": None, "logger": None, "level": None, "message": text}
    return match.groupdict()


def tail_file(path: Path, limit: int, block: int = 65536) -> list[str]:
    """The last `limit` lines of a file, reading backwards from its end."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, 2)
            end = fh.tell()
            data = b""
            while end > 0 and data.count(b"\n") <= limit:
                start = max(0, end - block)
                fh.seek(start)
                data = fh.read(end - start) + data
                end = start
    except OSError:
        return []
    lines = data.decode("utf-8", "replace").splitlines()
    return [line for line in lines if line.strip()][-limit:]


def log_files(strategy_id: int) -> list[Path]:
    """Where a bot's log lines are on disk: FreqTrade's --logfile, then the console output of
    its last launch (which holds the same lines when the log file was not written)."""
    return [paths.log_path(strategy_id), paths.bot_dir(strategy_id) / CONSOLE_LOG]


def strategy_logs(strategy_id: int, limit: int = 100) -> dict:
    """The bot's last `limit` log lines from its API, else from its log file (bot down).

    Lines come oldest first as {"time", "logger", "level", "message"}; "source" says where
    they came from and "note" why the file was used.
    """
    strategy = get_strategy(strategy_id)
    limit = parse_limit(limit)
    note = None
    if strategy.port and strategy.status in ("running", "stalled", "stopping"):
        try:
            answer = _bot_client(strategy).logs(limit=limit)
            lines = [
                {"time": row[0], "logger": row[2], "level": row[3],
                 "message": mask_secrets(str(row[4]), strategy)}
                for row in answer.get("logs", []) if isinstance(row, list) and len(row) >= 5
            ]
            return {"strategy_id": strategy.id, "limit": limit, "source": "bot",
                    "log_count": len(lines), "logs": lines[-limit:], "note": None}
        except BotError as exc:
            note = f"Bot API unavailable ({exc.message}); showing the log file."
    lines = []
    for path in log_files(strategy.id):
        lines = [_line(mask_secrets(text, strategy)) for text in tail_file(path, limit)]
        if lines:
            break
    if not lines and note is None:
        note = f"No log yet: {strategy.name} has not run on this host."
    return {"strategy_id": strategy.id, "limit": limit, "source": "file",
            "log_count": len(lines), "logs": lines, "note": note}


def mask_secrets(text: str, strategy: Strategy) -> str:
    """`text` with the bot's credentials and tokens replaced by ****: FreqTrade logs some of
    them (the ws_token among its startup lines), and a user must never read one."""
    for secret in (strategy.api_password, strategy.jwt_secret, strategy.ws_token,
                   strategy.webhook_token):
        if secret and len(secret) >= 8 and secret in text:
            text = text.replace(secret, "****")
    return text


# -------------------------------------------------------------------------------- overview


# The design's capacity block (SPEC §8); the values come from monitoring's one capacity figure.
CAPACITY_KEYS = ("max_strategies", "running_strategies", "available_slots", "utilization_percent",
                 "port_range", "can_start_more", "architecture")


def capacity() -> dict:
    """The design's capacity block, from the one capacity figure (monitoring's snapshot), so
    every page agrees on whether more bots can start."""
    snap = capacity_figures.snapshot(bots=last_measurement())
    info = snap.capacity_info()
    return {key: info[key] for key in CAPACITY_KEYS}


def is_healthy(strategy: Strategy) -> bool:
    """Running and not marked unhealthy by the monitor (health score ≥ 80 or not yet scored)."""
    return strategy.status == "running" and (
        strategy.health_score is None or strategy.health_score >= 80)


def overview() -> dict:
    """The design's GET /strategies/overview: summary by status, capacity, every strategy."""
    strategies = list_strategies()
    by_status = {status: 0 for status in STATUSES}
    for strategy in strategies:
        by_status[strategy.status] = by_status.get(strategy.status, 0) + 1
    running = [s for s in strategies if s.status in ACTIVE_STATUSES]
    healthy = [s for s in strategies if is_healthy(s)]
    if not running:
        gateway_status = "idle"
    elif len(healthy) == len([s for s in running if s.status == "running"]) == len(running):
        gateway_status = "healthy"
    else:
        gateway_status = "degraded"
    cap = capacity()
    now = isoformat(utcnow())
    processes = process_figures(strategies)
    rows = []
    for strategy in strategies:
        row = to_dict(strategy)
        row.update({
            "process": processes.get(strategy.id),
            "runtime_status": strategy.status,
            "is_running": strategy.status == "running",
            "upstream_url": (f"http://{strategy.host or '127.0.0.1'}:{strategy.port}"
                             if strategy.port else None),
            "last_check": now,
        })
        rows.append(row)
    return {
        "summary": {
            "total_strategies": len(strategies),
            "running_strategies": len(running),
            "healthy_strategies": len(healthy),
            "by_status": by_status,
            "gateway_status": gateway_status,
        },
        "capacity": cap,
        "port_pool": port_pool_status(cap["running_strategies"]),
        "strategies": rows,
        "gateway_info": {
            "port": current_settings().system.gateway.port,
            "routes_count": len([s for s in strategies if s.port]),
            "last_update": now,
        },
    }
