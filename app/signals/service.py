"""Reading signals: filters, keyset pages, CSV export, a signal's detail and its notifications.

Pages, the JSON API, the CSV export and the live WebSocket all use the same `SignalFilters`, so
"strategy 3, ETH/USDT, strong, last hour" means the same rows everywhere.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import select

from app.clock import isoformat
from app.errors import AppError
from app.extensions import db
from app.notifications.models import Notification
from app.signals import ingest
from app.signals.grading import LEVELS
from app.signals.ingest import ACTIONS, MESSAGE_TYPES
from app.signals.models import Signal
from app.signals.outbox import signal_event
from app.signals.strategy_messages import message_json
from app.strategies.models import Strategy

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
CSV_BATCH = 1000


class FilterError(AppError):
    """A bad filter or paging parameter; `param` names it."""

    def __init__(self, param: str, message: str):
        super().__init__(f"{param}: {message}", param=param)
        self.param = param


@dataclass(frozen=True)
class SignalFilters:
    """Which signals to show. Times are naive UTC; `until` is exclusive."""

    strategy_id: int | None = None
    pair: str | None = None
    levels: tuple[str, ...] = ()
    actions: tuple[str, ...] = ()
    message_type: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    # The parameters as given, to rebuild links and the live URL.
    raw: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def active(self) -> bool:
        """True when any filter narrows the list."""
        return any((self.strategy_id, self.pair, self.levels, self.actions, self.message_type,
                    self.since, self.until))

    def params(self, **extra: Any) -> dict[str, str]:
        """The filters as query parameters (plus `extra`, None values dropped)."""
        out = dict(self.raw)
        out.update({k: str(v) for k, v in extra.items() if v is not None})
        return {k: v for k, v in out.items() if v not in (None, "")}

    def matches(self, event: Mapping[str, Any]) -> bool:
        """True if a live event (outbox.live_event) passes these filters."""
        if self.strategy_id is not None and event.get("strategy_id") != self.strategy_id:
            return False
        if self.pair is not None and event.get("pair") != self.pair:
            return False
        if self.levels and event.get("level") not in self.levels:
            return False
        if self.actions and event.get("action") not in self.actions:
            return False
        if self.message_type is not None and event.get("type") != self.message_type:
            return False
        if self.since is not None or self.until is not None:
            received = _parse_time(event.get("received_at") or "")
            if received is None:
                return False
            if self.since is not None and received < self.since:
                return False
            if self.until is not None and received >= self.until:
                return False
        return True


def _parse_time(text: str) -> datetime | None:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


def _parse_bound(param: str, text: str, end: bool) -> datetime:
    """A date (YYYY-MM-DD: the whole day) or an ISO date-time (no offset means UTC)."""
    text = text.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            start = datetime(day.year, day.month, day.day)
            return start + timedelta(days=1) if end else start
        value = _parse_time(text.replace(" ", "T", 1))
    except ValueError:
        value = None
    if value is None:
        raise FilterError(param, f"must be a date (YYYY-MM-DD) or an ISO date-time, got {text!r}")
    # A date-time `to` includes that minute/second: compare with < on the next instant.
    return value + timedelta(microseconds=1) if end else value


def _choices(param: str, text: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
    """A comma list of allowed values, each once, in the order given; FilterError naming
    the first unknown one."""
    chosen = tuple(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
    bad = [c for c in chosen if c not in allowed]
    if bad:
        raise FilterError(param, f"unknown {param} {bad[0]!r}; use {', '.join(allowed)} "
                                 "(several separated by commas)")
    return chosen


def parse_filters(args: Mapping[str, str]) -> SignalFilters:
    """Filters from query parameters: strategy_id, pair, level and action (comma lists), type,
    from, to. Raises FilterError naming the parameter."""
    raw: dict[str, str] = {}
    values: dict[str, Any] = {}
    text = {k: (args.get(k) or "").strip() for k in
            ("strategy_id", "pair", "level", "action", "type", "from", "to")}
    if text["strategy_id"]:
        try:
            values["strategy_id"] = int(text["strategy_id"])
        except ValueError:
            raise FilterError("strategy_id",
                              f"must be a whole number, got {text['strategy_id']!r}") from None
        raw["strategy_id"] = text["strategy_id"]
    if text["pair"]:
        if len(text["pair"]) > 64:
            raise FilterError("pair", "must be at most 64 characters")
        values["pair"] = raw["pair"] = text["pair"]
    if text["level"]:
        values["levels"] = _choices("level", text["level"].lower(), LEVELS)
        raw["level"] = ",".join(values["levels"])
    if text["action"]:
        values["actions"] = _choices("action", text["action"], ACTIONS)
        raw["action"] = ",".join(values["actions"])
    if text["type"]:
        if text["type"] not in MESSAGE_TYPES:
            raise FilterError("type", f"unknown message type {text['type']!r}; "
                                      f"use one of {', '.join(MESSAGE_TYPES)}")
        values["message_type"] = raw["type"] = text["type"]
    if text["from"]:
        values["since"] = _parse_bound("from", text["from"], end=False)
        raw["from"] = text["from"]
    if text["to"]:
        values["until"] = _parse_bound("to", text["to"], end=True)
        raw["to"] = text["to"]
    if values.get("since") and values.get("until") and values["since"] >= values["until"]:
        raise FilterError("to", "must be later than from")
    return SignalFilters(raw=raw, **values)


def parse_page(args: Mapping[str, str]) -> tuple[int | None, int]:
    """(before_id, limit) from query parameters; FilterError naming a bad one."""
    before_id = None
    text = (args.get("before_id") or "").strip()
    if text:
        try:
            before_id = int(text)
        except ValueError:
            raise FilterError("before_id", f"must be a whole number, got {text!r}") from None
        if before_id < 1:
            raise FilterError("before_id", "must be 1 or more")
    limit = DEFAULT_LIMIT
    text = (args.get("limit") or "").strip()
    if text:
        try:
            limit = int(text)
        except ValueError:
            raise FilterError("limit", f"must be a whole number, got {text!r}") from None
        if not 1 <= limit <= MAX_LIMIT:
            raise FilterError("limit", f"must be between 1 and {MAX_LIMIT}")
    return before_id, limit


def _filtered(filters: SignalFilters, before_id: int | None = None):
    stmt = select(Signal, Strategy.name).join(Strategy, Strategy.id == Signal.strategy_id)
    if filters.strategy_id is not None:
        stmt = stmt.where(Signal.strategy_id == filters.strategy_id)
    if filters.pair is not None:
        stmt = stmt.where(Signal.pair == filters.pair)
    if filters.levels:
        stmt = stmt.where(Signal.strength_level.in_(filters.levels))
    if filters.actions:
        stmt = stmt.where(Signal.action.in_(filters.actions))
    if filters.message_type is not None:
        stmt = stmt.where(Signal.message_type == filters.message_type)
    if filters.since is not None:
        stmt = stmt.where(Signal.received_at >= filters.since)
    if filters.until is not None:
        stmt = stmt.where(Signal.received_at < filters.until)
    if before_id is not None:
        stmt = stmt.where(Signal.id < before_id)
    return stmt.order_by(Signal.id.desc())


@dataclass
class SignalPage:
    """One keyset page: rows newest first, and the before_id of the next (older) page."""

    items: list[dict[str, Any]]
    next_before_id: int | None
    before_id: int | None
    newest_id: int | None = None


def list_signals(filters: SignalFilters, before_id: int | None = None,
                 limit: int = DEFAULT_LIMIT) -> SignalPage:
    """A page of signals (as live-event dicts) matching the filters, newest first."""
    rows = db.session.execute(_filtered(filters, before_id).limit(limit + 1)).all()
    items = [signal_event(signal, name) for signal, name in rows[:limit]]
    next_before = items[-1]["id"] if len(rows) > limit and items else None
    return SignalPage(items, next_before, before_id, items[0]["id"] if items else None)


def list_signals_after(filters: SignalFilters, after_id: int, limit: int) -> list[dict[str, Any]]:
    """Up to `limit` of the newest matching signals with an id above `after_id`, newest first."""
    stmt = _filtered(filters).where(Signal.id > after_id).limit(limit)
    return [signal_event(signal, name) for signal, name in db.session.execute(stmt).all()]


def signal_json(signal: Signal, strategy_name: str) -> dict[str, Any]:
    """Everything stored about a signal, for the JSON API."""
    return {
        "id": signal.id,
        "strategy_id": signal.strategy_id,
        "strategy": strategy_name,
        "type": signal.message_type,
        "pair": signal.pair,
        "action": signal.action,
        "direction": signal.direction,
        "rate": signal.rate,
        "profit_ratio": signal.profit_ratio,
        "profit_amount": signal.profit_amount,
        "trade_id": signal.trade_id,
        "open_date": isoformat(signal.open_date),
        "close_date": isoformat(signal.close_date),
        "enter_tag": signal.enter_tag,
        "exit_reason": signal.exit_reason,
        "indicators": signal.indicators or {},
        "strength": {"raw": signal.strength_raw, "level": signal.strength_level,
                     "priority": signal.priority},
        "payload": signal.payload or {},
        "received_at": isoformat(signal.received_at),
        "related_signal_id": signal.related_signal_id,
        "published_at": isoformat(signal.published_at),
        "dispatched_at": isoformat(signal.dispatched_at),
    }


def list_signals_json(filters: SignalFilters, before_id: int | None = None,
                      limit: int = DEFAULT_LIMIT) -> dict[str, Any]:
    """The JSON API page: {"items": [...], "next_before_id": N|null, "count": n}."""
    rows = db.session.execute(_filtered(filters, before_id).limit(limit + 1)).all()
    items = [signal_json(signal, name) for signal, name in rows[:limit]]
    next_before = items[-1]["id"] if len(rows) > limit and items else None
    return {"items": items, "count": len(items), "next_before_id": next_before}


CSV_COLUMNS = (
    "id", "received_at", "strategy_id", "strategy", "type", "pair", "action", "direction",
    "rate", "strength", "level", "priority", "trade_id", "open_date", "close_date",
    "profit_ratio", "profit_amount", "enter_tag", "exit_reason", "indicators",
)


def _csv_safe(value: Any) -> Any:
    """Keep spreadsheets from running text as a formula (=, +, -, @ at the start)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def csv_lines(filters: SignalFilters) -> Iterator[str]:
    """The matching signals as CSV text, header first, newest first, read in keyset batches.

    Plain column rows (no ORM objects), so an export of millions of rows stays small in memory.
    """
    columns = (
        Signal.id, Signal.received_at, Signal.strategy_id, Strategy.name, Signal.message_type,
        Signal.pair, Signal.action, Signal.direction, Signal.rate, Signal.strength_raw,
        Signal.strength_level, Signal.priority, Signal.trade_id, Signal.open_date,
        Signal.close_date, Signal.profit_ratio, Signal.profit_amount, Signal.enter_tag,
        Signal.exit_reason, Signal.indicators,
    )
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    yield buffer.getvalue()
    before_id = None
    while True:
        stmt = _filtered(filters, before_id).with_only_columns(*columns).limit(CSV_BATCH)
        rows = db.session.execute(stmt).all()
        if not rows:
            break
        buffer.seek(0)
        buffer.truncate()
        for row in rows:
            values = list(row)
            for index in (1, 13, 14):
                values[index] = isoformat(values[index])
            values[19] = json.dumps(values[19] or {}, ensure_ascii=False, sort_keys=True)
            writer.writerow([_csv_safe(v) for v in values])
        yield buffer.getvalue()
        before_id = rows[-1][0]
        if len(rows) < CSV_BATCH:
            break


def get_signal(signal_id: int) -> tuple[Signal, str] | None:
    """A signal and its strategy's name, or None."""
    row = db.session.execute(
        select(Signal, Strategy.name).join(Strategy, Strategy.id == Signal.strategy_id)
        .where(Signal.id == signal_id)
    ).first()
    return (row[0], row[1]) if row else None


@dataclass
class SignalPair:
    """A mixin signal and the entry/exit order it became, as the detail page shows them."""

    other: Signal  # the other half
    is_order: bool  # True when the signal shown is the order (entry/exit)
    not_handed_on: bool  # the signal shown was not handed to notifications: `other` was


def signal_pair(signal: Signal) -> SignalPair | None:
    """The other half of a signal's mixin signal / order pair (ingest._paired_insert), or None.

    The half that arrived second holds `related_signal_id`; the first is found through the
    partial index on that column.
    """
    if signal.message_type not in ("strategy_msg", "entry", "exit"):
        return None
    if signal.related_signal_id is not None:
        other = db.session.get(Signal, signal.related_signal_id)
    else:
        other = db.session.scalar(select(Signal).where(Signal.related_signal_id == signal.id)
                                  .order_by(Signal.id).limit(1))
    if other is None:
        return None
    second = signal.related_signal_id is not None
    not_handed_on = second and signal.priority != "IGNORE" and other.priority != "IGNORE"
    return SignalPair(other, signal.message_type != "strategy_msg", not_handed_on)


def notifications_for(signal_id: int) -> list:
    """The notifications made for a signal, each with its deliveries (channel, status, …)."""
    from sqlalchemy.orm import selectinload

    return list(db.session.scalars(
        select(Notification).where(Notification.signal_id == signal_id)
        .options(selectinload(Notification.deliveries)).order_by(Notification.id)
    ))


def strategy_choices() -> list[tuple[int, str]]:
    """(id, name) of every strategy, deleted ones too (their signals stay), for filter menus."""
    rows = db.session.execute(select(Strategy.id, Strategy.name, Strategy.deleted_at)
                              .order_by(Strategy.name)).all()
    return [(sid, name + (" (deleted)" if deleted else "")) for sid, name, deleted in rows]


def pair_choices(strategy_id: int | None = None) -> list[str]:
    """The pairs the strategies (or one strategy) trade, for the pair filter's suggestions.

    Taken from the strategies' pair lists, not from the signals table, which grows forever.
    """
    stmt = select(Strategy.pairs)
    if strategy_id is not None:
        stmt = stmt.where(Strategy.id == strategy_id)
    pairs: set[str] = set()
    for value in db.session.scalars(stmt):
        pairs.update(p for p in (value or []) if isinstance(p, str))
    return sorted(pairs)


# The detail page shows at most this much of a payload (a stored row from before the shape
# bound, or a long message, must not stall a web worker).
DISPLAY_LIMIT = 64 * 1024


def pretty_json(value: Any, limit: int = DISPLAY_LIMIT) -> str:
    """Indented JSON for the detail page, cut after `limit` characters with a note saying so
    (compact instead of indented when the indented form would be far larger)."""
    compact = json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    shallow = _depth(value) <= ingest.MAX_DEPTH
    text = (json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)
            if shallow and len(compact) <= limit else compact)
    if len(text) > limit:
        return (text[:limit] + f"\n… cut here: {len(text) // 1024} KiB in all "
                "(the JSON API has the whole payload)")
    return text


def _depth(value: Any) -> int:
    """How deep lists and objects nest in a value (iteratively: any depth is safe)."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
    return deepest


def payload_for_display(payload: dict) -> tuple[str, bool]:
    """The payload as indented JSON, with a strategy message's JSON text unpacked in place;
    (text, whether msg was unpacked)."""
    shown = dict(payload or {})
    decoded = message_json(shown.get("msg"))
    if decoded is not None:
        shown["msg"] = decoded
        return pretty_json(shown), True
    return pretty_json(shown), False
