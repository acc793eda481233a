"""The webhook receiver's logic: authenticate, validate, grade, store once, then hand on.

The path is kept lean because a FreqTrade bot posts its webhooks synchronously inside its trading
loop (see FREQTRADE_NOTES.md): the strategy's token and thresholds come from a small per-process
cache, the signal is written with one autocommit `INSERT … ON CONFLICT DO NOTHING RETURNING id` on
one of a few long-lived connections of the process (no ORM unit of work, no pool checkout), and
publishing plus the notification job go to Redis in one pipelined transaction. Nothing is written
when validation fails.

A signal that becomes an order arrives twice: the btcw_signals mixin's strategy message and the
order's `entry`/`exit` webhook (in either order; FreqTrade posts the order's webhook during its
loop and the strategy messages at the end of it, so the order usually comes first). The INSERT
of either reads the newest of the two kinds for its strategy, pair and action (one probe of a
partial index, inside the same statement: `_paired_insert`); if that is the other kind, unpaired,
within the pairing window and carries the same tag, the two are one real signal: the newcomer is
stored graded, linked by `related_signal_id`, and not handed to notifications again.

The payload contract (the webhook blocks `app.runtime.ft_config.webhook_payloads` writes into each
bot's config, and the strategy messages of user_data/strategies/btcw_signals.py) is documented in
docs/signals.md.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import threading
import time
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import DateTime, String, bindparam, case, exists, func, null, select, text
from sqlalchemy.exc import DBAPIError

from app.clock import utcnow
from app.errors import AppError
from app.extensions import db
from app.signals import outbox
from app.signals.grading import IGNORE, Grade, Thresholds, grade
from app.signals.models import PAIRING_PREDICATE, Signal
from app.signals.strategy_messages import message_json
from app.strategies.models import Strategy

MAX_BODY_BYTES = 1024 * 1024
STRATEGY_CACHE_SECONDS = 2.0
TEXT_DEDUPE_WINDOW = 60  # seconds: identical status / text messages within it are one message

ENTRY_TYPES = ("entry", "entry_fill", "entry_cancel")
EXIT_TYPES = ("exit", "exit_fill", "exit_cancel")
ORDER_TYPES = ENTRY_TYPES + EXIT_TYPES
STATUS_TYPES = ("status", "startup", "warning", "exception")
MESSAGE_TYPES = ORDER_TYPES + STATUS_TYPES + ("strategy_msg",)
# Order events whose strength is graded; fills and cancels confirm an order whose signal (the
# strategy message or the entry/exit) was graded already, so they are recorded, not graded.
GRADED_ORDER_TYPES = ("entry", "exit")
# A mixin signal (strategy_msg) pairs with the entry/exit order it became (see _paired_insert).
PAIRING_TYPES = ("strategy_msg",) + GRADED_ORDER_TYPES
SIGNAL_ACTIONS = ("enter_long", "exit_long", "enter_short", "exit_short")
ACTIONS = SIGNAL_ACTIONS + ("status", "message")
# A mixin signal and an entry/exit order pair up if they arrive within 2 candles of the
# strategy's timeframe of each other, or 5 minutes, whichever is longer.
PAIRING_CANDLES = 2
PAIRING_MIN_SECONDS = 300
# FreqTrade's exit_reason of a signal exit whose strategy set no exit tag.
_UNTAGGED_EXIT = "exit_signal"
_TIMEFRAME = re.compile(r"\s*(\d{1,4})([smhdwM])\s*")
_TIMEFRAME_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "M": 2592000}

MAX_PAIR = 64
MAX_TAG = 255
MAX_TEXT = 10_000
MAX_INDICATORS = 100
_NULL_TEXT = frozenset(("", "None", "none", "null", "NaN", "nan"))
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")  # no database stores these in text
_STRENGTH_IN_TAG = re.compile(r"(?:^|\s)s=([-+]?(?:\d+\.?\d*|\.\d+))(?=\s|$)")


class WebhookError(AppError):
    """A rejected webhook: HTTP status, a message for the bot's log, and the field at fault."""

    def __init__(self, status: int, message: str, field: str | None = None):
        super().__init__(message, status=status, field=field)
        self.field = field


def _invalid(field: str, problem: str) -> WebhookError:
    return WebhookError(422, f"{field}: {problem}", field)


# ----------------------------------------------------------------------------- strategies


@dataclass(frozen=True)
class StrategyAuth:
    """What the receiver needs to know about a strategy: token, name, thresholds, pairing window."""

    id: int
    name: str
    token: str
    thresholds: Thresholds
    pairing_window: float = PAIRING_MIN_SECONDS  # seconds, see pairing_window()


def timeframe_seconds(timeframe: str | None) -> int | None:
    """'1m' -> 60, '4h' -> 14400, '1M' -> 30 days; None for what is not a FreqTrade timeframe."""
    match = _TIMEFRAME.fullmatch(timeframe or "")
    if not match:
        return None
    return int(match.group(1)) * _TIMEFRAME_UNITS[match.group(2)]


def pairing_window(timeframe: str | None) -> float:
    """Seconds within which a mixin signal and its order pair up: 2 candles, at least 5 min."""
    return float(max(PAIRING_CANDLES * (timeframe_seconds(timeframe) or 0), PAIRING_MIN_SECONDS))


def _strategy_cache() -> dict[int, tuple[float, StrategyAuth]]:
    """The current app's cache: strategy id -> (expiry on the monotonic clock, StrategyAuth)."""
    return current_app.extensions.setdefault("btcw_strategy_auth_cache", {})


def _load_strategy(strategy_id: int) -> StrategyAuth | None:
    stmt = select(
        Strategy.name, Strategy.webhook_token, Strategy.strong_threshold,
        Strategy.medium_threshold, Strategy.weak_threshold, Strategy.timeframe,
    ).where(Strategy.id == strategy_id, Strategy.deleted_at.is_(None))
    with db.engine.connect() as conn:
        row = conn.execute(stmt).first()
    cache = _strategy_cache()
    if row is None:
        cache.pop(strategy_id, None)
        return None
    auth = StrategyAuth(strategy_id, row[0], row[1] or "",
                        Thresholds(float(row[2]), float(row[3]), float(row[4])),
                        pairing_window(row[5]))
    if len(cache) > 10_000:
        cache.clear()
    cache[strategy_id] = (time.monotonic() + STRATEGY_CACHE_SECONDS, auth)
    return auth


def strategy_auth(strategy_id: int, fresh: bool = False) -> StrategyAuth | None:
    """The live (not deleted) strategy's token, thresholds and pairing window, cached a couple
    of seconds.

    Threshold edits and deletions reach the receiver within STRATEGY_CACHE_SECONDS (each
    gunicorn worker keeps its own cache); unknown ids are not cached.
    """
    cached = _strategy_cache().get(strategy_id)
    if not fresh and cached is not None and cached[0] > time.monotonic():
        return cached[1]
    return _load_strategy(strategy_id)


def forget_strategy(strategy_id: int | None = None) -> None:
    """Drop this process's cached strategy data (all of it when no id is given)."""
    if strategy_id is None:
        _strategy_cache().clear()
    else:
        _strategy_cache().pop(strategy_id, None)


def _token_matches(auth: StrategyAuth, given: bytes) -> bool:
    # compare_digest takes the same time wherever the two tokens differ.
    return bool(auth.token) and hmac.compare_digest(given, auth.token.encode())


def authenticate(strategy_id: int, token: str | None) -> StrategyAuth:
    """The strategy if `token` is its webhook token: 404 unknown/deleted, 401 wrong or missing.

    A token that does not match the cached one is checked once more against the database, so a
    freshly rotated token works at once.
    """
    auth = strategy_auth(strategy_id)
    if auth is None:
        raise WebhookError(404, f"No strategy with id {strategy_id}.")
    given = (token or "").encode()
    if not _token_matches(auth, given):
        auth = strategy_auth(strategy_id, fresh=True)
        if auth is None:
            raise WebhookError(404, f"No strategy with id {strategy_id}.")
        if not _token_matches(auth, given):
            raise WebhookError(401, "Missing or wrong webhook token for this strategy.")
    return auth


# ------------------------------------------------------------------------------ field readers


def _is_null(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip() in _NULL_TEXT)


def _given(data: dict, name: str, required: bool, prefix: str) -> tuple[Any, str]:
    """A field's value (None when missing or null; an error if it is required) and its name
    for messages."""
    value = data.get(name)
    field = prefix + name
    if _is_null(value):
        if required:
            raise _invalid(field, "is required")
        return None, field
    return value, field


def read_text(data: dict, name: str, *, required: bool = False, max_len: int = MAX_TEXT,
              prefix: str = "") -> str | None:
    """A string field (FreqTrade's "None" counts as missing)."""
    value, field = _given(data, name, required, prefix)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _invalid(field, f"must be a string, got {type(value).__name__}")
    value = value.strip()
    if len(value) > max_len:
        raise _invalid(field, f"must be at most {max_len} characters, got {len(value)}")
    if _UNSTORABLE.search(value):
        raise _invalid(field, "must not contain NUL characters or unpaired surrogates")
    return value


STRENGTH_DOMAIN = (0.0, 1.0)  # signal_strength, as the btcw_signals mixin reports it


def read_number(data: dict, name: str, *, required: bool = False, prefix: str = "",
                domain: tuple[float, float] | None = None,
                positive: bool = False) -> float | None:
    """A finite number, given as a JSON number or as the text FreqTrade formats it to; within
    `domain` (inclusive) and above 0 when `positive` (a price), else a 422 naming the field."""
    value, field = _given(data, name, required, prefix)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise _invalid(field, f"must be a number, got {type(value).__name__}")
    try:
        number = float(value)
    except (ValueError, OverflowError):
        raise _invalid(field, f"must be a number, got {str(value)[:40]!r}") from None
    if not math.isfinite(number):
        raise _invalid(field, "must be a finite number")
    if positive and number <= 0:
        raise _invalid(field, f"must be more than 0, got {number:g}")
    if domain is not None and not domain[0] <= number <= domain[1]:
        raise _invalid(field, f"must be from {domain[0]:g} to {domain[1]:g}, got {number:g}")
    return number


def read_integer(data: dict, name: str, *, required: bool = False, prefix: str = "",
                 minimum: int | None = None) -> int | None:
    """A whole number (JSON integer or its text), at least `minimum` when given."""
    value, field = _given(data, name, required, prefix)
    if value is None:
        return None
    if isinstance(value, bool):
        raise _invalid(field, "must be an integer, got bool")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and re.fullmatch(r"\s*[-+]?\d{1,18}\s*", value):
        number = int(value)
    else:
        raise _invalid(field, f"must be an integer, got {str(value)[:40]!r}")
    if not -(2**31) <= number < 2**31:
        raise _invalid(field, "is out of range")
    if minimum is not None and number < minimum:
        raise _invalid(field, f"must be at least {minimum}, got {number}")
    return number


def read_datetime(data: dict, name: str, *, required: bool = False,
                  prefix: str = "") -> datetime | None:
    """An ISO 8601 date-time (any offset; none means UTC) as naive UTC."""
    value, field = _given(data, name, required, prefix)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _invalid(field, f"must be an ISO 8601 date-time string, got {type(value).__name__}")
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise _invalid(field, f"must be an ISO 8601 date-time, got {value[:40]!r}") from None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed


def read_pair(data: dict, name: str = "pair", *, prefix: str = "") -> str:
    """A trading pair BASE/QUOTE or BASE/QUOTE:SETTLE.

    Unicode letters are accepted (exchanges list tokens with non-Latin names); whitespace, control
    and invisible formatting characters are not. The pair is stored NFC-normalised.
    """
    field = prefix + name
    value = read_text(data, name, required=True, max_len=MAX_PAIR, prefix=prefix)
    pair = unicodedata.normalize("NFC", value)
    for char in pair:
        category = unicodedata.category(char)
        if category[0] in "CZ":  # control, format, surrogate, unassigned; any kind of space
            raise _invalid(field, f"contains a forbidden character U+{ord(char):04X}")
    market, _, settle = pair.partition(":")
    base, slash, quote = market.partition("/")
    if not slash or not base or not quote or "/" in quote or (":" in pair and not settle):
        raise _invalid(field, f"must look like BASE/QUOTE or BASE/QUOTE:SETTLE, got {pair!r}")
    return pair


def read_indicators(data: dict, name: str = "indicators", *, prefix: str = "") -> dict:
    """A flat JSON object of indicator name -> number, string, bool or null."""
    value = data.get(name)
    field = prefix + name
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _invalid(field, f"must be a JSON object, got {type(value).__name__}")
    if len(value) > MAX_INDICATORS:
        raise _invalid(field, f"must have at most {MAX_INDICATORS} entries")
    for key, item in value.items():
        if len(key) > 64:
            raise _invalid(field, f"key {key[:20]!r}… is longer than 64 characters")
        if isinstance(item, float) and not math.isfinite(item):
            raise _invalid(f"{field}.{key}", "must be a finite number")
        if isinstance(item, str) and len(item) > 255:
            raise _invalid(f"{field}.{key}", "must be at most 255 characters")
        if item is not None and not isinstance(item, (int, float, str, bool)):
            raise _invalid(f"{field}.{key}", "must be a number, string, boolean or null")
    return value


def strength_in_tag(tag: str | None) -> tuple[str | None, float | None]:
    """'rsi_oversold s=0.83' -> ('rsi_oversold', 0.83); a tag without 's=' is returned as is."""
    if not tag:
        return tag, None
    match = _STRENGTH_IN_TAG.search(tag)
    if not match:
        return tag, None
    value = float(match.group(1))
    clean = (tag[:match.start()] + tag[match.end():]).strip() or None
    return clean, _clip_strength(value)


def _clip_strength(value: float) -> float | None:
    """A strength read from a tag or the indicators, clipped into 0..1 as the mixin writes it
    (None when not finite). The `signal_strength` field itself is refused outside 0..1."""
    return min(max(value, 0.0), 1.0) if math.isfinite(value) else None


# ------------------------------------------------------------------------------- parsing


@dataclass
class ParsedWebhook:
    """A validated webhook: the Signal columns (minus grading and ids) and its dedupe identity."""

    columns: dict[str, Any]
    identity: list[Any]
    graded: bool
    strength: float | None
    text_message: bool = False


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    """A JSON number that a float can hold: 1e400 would be stored as Infinity, which no JSON
    answer can carry, so it is refused wherever it stands."""
    value = float(text)
    if not math.isfinite(value):
        raise WebhookError(422, f"body: the number {text[:40]} is too large to store", "body")
    return value


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def parse_body(body: bytes) -> dict:
    """The JSON object of a webhook body, or a 422 naming the problem.

    Strict JSON: NaN/Infinity, unpaired UTF-16 surrogate escapes and absurd nesting are refused,
    since the databases cannot store them.
    """
    try:
        data = json.loads(body, parse_constant=_reject_constant, parse_float=_finite_float)
        if _SURROGATE_ESCAPE.search(body):  # rare: only then pay for the full check
            json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise WebhookError(422, "body: contains an unpaired UTF-16 surrogate escape",
                           "body") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise WebhookError(422, f"body: not valid JSON ({exc})", "body") from None
    except RecursionError:
        raise WebhookError(422, "body: nested too deeply", "body") from None
    if not isinstance(data, dict):
        raise WebhookError(422, f"body: must be a JSON object, got {type(data).__name__}", "body")
    check_shape(data)
    return data


# What a stored payload may hold: small to send can be huge to show (an indented view of deeply
# nested arrays grows with depth × items), so the shape is bounded, not only the byte count.
MAX_DEPTH = 16
MAX_NODES = 20_000


def check_shape(data: Any, path: str = "") -> None:
    """Refuse a payload nested deeper than MAX_DEPTH or holding more than MAX_NODES values
    (a 422 naming where), before anything is stored."""
    count = 0
    stack: list[tuple[Any, str, int]] = [(data, path, 0)]
    while stack:
        value, where, depth = stack.pop()
        count += 1
        if count > MAX_NODES:
            raise _invalid("body", f"holds more than {MAX_NODES} values")
        if isinstance(value, dict | list):
            if depth >= MAX_DEPTH:
                raise _invalid(where or "body", f"nested deeper than {MAX_DEPTH} levels")
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, child in items:
                child_path = (f"{where}[{key}]" if isinstance(value, list)
                              else f"{where}.{key}" if where else str(key))
                stack.append((child, child_path[:120], depth + 1))


def parse_webhook(data: dict) -> ParsedWebhook:
    """Validate one webhook payload (any of MESSAGE_TYPES) into Signal columns."""
    kind = data.get("type")
    if _is_null(kind):
        raise _invalid("type", f"is required (one of {', '.join(MESSAGE_TYPES)})")
    if not isinstance(kind, str) or kind not in MESSAGE_TYPES:
        raise _invalid("type", f"unknown message type {str(kind)[:40]!r}; "
                               f"one of {', '.join(MESSAGE_TYPES)}")
    payload_strength = read_number(data, "signal_strength", domain=STRENGTH_DOMAIN)
    if kind in ORDER_TYPES:
        parsed = _parse_order(kind, data)
    elif kind in STATUS_TYPES:
        text = read_text(data, "status", required=True)
        parsed = ParsedWebhook({"action": "status", "pair": ""}, [text], False, None,
                               text_message=True)
    else:
        parsed = _parse_strategy_msg(data)
    if payload_strength is not None:
        parsed.strength = payload_strength
    if parsed.strength is None:
        strength = parsed.columns.get("indicators", {}).get("signal_strength")
        if isinstance(strength, (int, float)) and not isinstance(strength, bool):
            parsed.strength = _clip_strength(float(strength))
    parsed.columns["message_type"] = kind
    parsed.columns["strength_raw"] = parsed.strength
    return parsed


def _parse_order(kind: str, data: dict) -> ParsedWebhook:
    pair = read_pair(data)
    trade_id = read_integer(data, "trade_id", required=True, minimum=0)
    direction = (read_text(data, "direction", max_len=8) or "long").lower()
    if direction not in ("long", "short"):
        raise _invalid("direction", f"must be long or short, got {direction!r}")
    is_exit = kind in EXIT_TYPES
    enter_tag, enter_strength = strength_in_tag(read_text(data, "enter_tag", max_len=MAX_TAG))
    exit_reason, exit_strength = strength_in_tag(read_text(data, "exit_reason", max_len=MAX_TAG))
    rates = ("close_rate", "order_rate", "current_rate") if is_exit else (
        "order_rate", "open_rate", "current_rate")
    rate = None
    for name in rates:
        value = read_number(data, name, positive=True)
        if rate is None and value is not None:
            rate = value
    for name in ("amount", "stake_amount"):
        read_number(data, name, domain=(0, math.inf))
    read_text(data, "reason", max_len=MAX_TAG)
    columns = {
        "pair": pair,
        "action": f"{'exit' if is_exit else 'enter'}_{direction}",
        "direction": direction,
        "rate": rate,
        "trade_id": trade_id,
        "open_date": read_datetime(data, "open_date"),
        "close_date": read_datetime(data, "close_date"),
        "profit_ratio": read_number(data, "profit_ratio"),
        "profit_amount": read_number(data, "profit_amount"),
        "enter_tag": enter_tag,
        "exit_reason": exit_reason,
        "indicators": read_indicators(data),
    }
    strength = exit_strength if is_exit else enter_strength
    identity = [
        trade_id, pair, direction, data.get("open_date"), data.get("close_date"),
        data.get("amount"), data.get("order_rate"), data.get("close_rate"),
        data.get("sub_trade"), data.get("enter_tag"), data.get("exit_reason"), data.get("reason"),
    ]
    return ParsedWebhook(columns, identity, kind in GRADED_ORDER_TYPES, strength)


def _parse_strategy_msg(data: dict) -> ParsedWebhook:
    msg = data.get("msg")
    if _is_null(msg):
        raise _invalid("msg", "is required")
    message: Any = msg
    if isinstance(msg, str):
        stripped = msg.strip()
        if len(stripped) > MAX_TEXT:
            raise _invalid("msg", f"must be at most {MAX_TEXT} characters, got {len(stripped)}")
        message = message_json(stripped) or stripped  # else text that starts with a brace
    elif not isinstance(msg, dict):
        raise _invalid("msg", f"must be a string or a JSON object, got {type(msg).__name__}")
    if isinstance(message, dict) and "btcw" in message:
        return _parse_btcw_signal(message)
    text = message if isinstance(message, str) else json.dumps(message, sort_keys=True)
    return ParsedWebhook({"action": "message", "pair": ""}, [text], False, None,
                         text_message=True)


def _parse_btcw_signal(message: dict) -> ParsedWebhook:
    """A signal reported by the btcw_signals strategy mixin (docs/signals.md)."""
    p = "msg."
    if message.get("btcw") != 1:
        raise _invalid("msg.btcw", f"unsupported message version {message.get('btcw')!r}; "
                                   "this BTC Watcher understands 1")
    if message.get("kind") != "signal":
        raise _invalid("msg.kind", f"unknown kind {message.get('kind')!r}; expected 'signal'")
    pair = read_pair(message, prefix=p)
    action = read_text(message, "action", required=True, max_len=16, prefix=p)
    if action not in SIGNAL_ACTIONS:
        raise _invalid("msg.action", f"must be one of {', '.join(SIGNAL_ACTIONS)}, "
                                     f"got {action!r}")
    candle = read_datetime(message, "candle", required=True, prefix=p)
    timeframe = read_text(message, "timeframe", max_len=8, prefix=p)
    tag_name = "enter_tag" if action.startswith("enter") else "exit_tag"
    tag, tag_strength = strength_in_tag(read_text(message, tag_name, max_len=MAX_TAG, prefix=p))
    strength = read_number(message, "signal_strength", prefix=p, domain=STRENGTH_DOMAIN)
    columns = {
        "pair": pair,
        "action": action,
        "direction": "short" if action.endswith("short") else "long",
        "rate": read_number(message, "rate", prefix=p, positive=True),
        "open_date": candle,
        "enter_tag": tag if tag_name == "enter_tag" else None,
        "exit_reason": tag if tag_name == "exit_tag" else None,
        "indicators": read_indicators(message, prefix=p),
    }
    return ParsedWebhook(columns, ["signal", pair, action, candle.isoformat(), timeframe], True,
                         strength if strength is not None else tag_strength)


def dedupe_key(strategy_id: int, message_type: str, identity: list[Any]) -> str:
    """The deterministic key under which a message is stored once (sha256, 64 hex digits)."""
    text = json.dumps([strategy_id, message_type, *identity], separators=(",", ":"),
                      sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


# -------------------------------------------------------------------------------- storing


@dataclass
class IngestResult:
    """What happened to one webhook."""

    id: int
    duplicate: bool
    grade: Grade
    strength: float | None
    published: bool = False
    handed_on: bool = False
    # The other half of a mixin signal / order pair, and whether this one is to be handed to
    # notifications (graded, and not the second half of a pair whose first was handed on).
    related_signal_id: int | None = None
    notify: bool = False

    def as_json(self) -> dict[str, Any]:
        """The webhook's response body."""
        return {
            "stored": True, "id": self.id, "duplicate": self.duplicate,
            "level": self.grade.level, "priority": self.grade.priority,
            "signal_strength": self.strength, "published": self.published,
            "handed_on": self.handed_on, "related_signal_id": self.related_signal_id,
        }


_insert_statements: dict[str, Any] = {}
DB_SLOTS = 2


class ReceiverConnections:
    """A few long-lived autocommit connections of one process, for the receiver's INSERTs.

    At most DB_SLOTS receivers of a process talk to the database at a time: under gevent the
    driver yields while it waits, and without a bound every waiting greenlet would hold its own
    connection and the database would spend the CPU switching between them. Keeping the
    connections (instead of a pool checkout per signal) also saves the pool's liveness ping and
    reset; a connection the database dropped is replaced and the statement tried once more.
    """

    def __init__(self, engine, size: int = DB_SLOTS) -> None:
        self.engine = engine
        self._slots = threading.BoundedSemaphore(size)
        self._idle: list[Any] = []
        self.replaced = 0  # connections found dropped and replaced

    def run(self, work):
        """work(connection) on one of the connections; its result."""
        with self._slots:
            conn = self._idle.pop() if self._idle else None
            for attempt in (1, 2):
                if conn is None:
                    conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
                try:
                    result = work(conn)
                except DBAPIError as exc:
                    conn.close()
                    conn = None
                    if attempt == 2 or not exc.connection_invalidated:
                        raise
                    self.replaced += 1
                    continue
                except BaseException:
                    conn.close()
                    raise
                self._idle.append(conn)
                return result
        raise AssertionError("unreachable")  # pragma: no cover


def receiver_connections() -> ReceiverConnections:
    """This process's ReceiverConnections for the current app's engine."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    found = app.extensions.get("btcw_receiver_connections")
    if found is None or found.engine is not db.engine:
        found = app.extensions["btcw_receiver_connections"] = ReceiverConnections(db.engine)
    return found


def _dialect_insert(dialect: str):
    """The insert() of the dialect, which has on_conflict_do_nothing()."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    else:  # pragma: no cover - only SQLite and PostgreSQL are supported
        raise RuntimeError(f"unsupported database dialect {dialect}")
    return dialect_insert


def _insert_statement(dialect: str):
    """INSERT … ON CONFLICT (dedupe_key) DO NOTHING RETURNING id, built once per dialect."""
    stmt = _insert_statements.get(dialect)
    if stmt is None:
        table = Signal.__table__
        stmt = (_dialect_insert(dialect)(table)
                .on_conflict_do_nothing(index_elements=["dedupe_key"]).returning(table.c.id))
        _insert_statements[dialect] = stmt
    return stmt


def _existing_id(conn, key: str) -> int | None:
    return conn.execute(select(Signal.id).where(Signal.dedupe_key == key)).scalar()


def pairing_tag(action: str, enter_tag: str | None, exit_reason: str | None) -> str:
    """The tag a mixin signal and its order share ('' for none): the enter tag of entries, the
    exit tag of exits (FreqTrade names an exit signal without a tag 'exit_signal', the mixin
    sends none)."""
    if action.startswith("enter"):
        return enter_tag or ""
    return "" if exit_reason == _UNTAGGED_EXIT else (exit_reason or "")


_paired_inserts: dict[tuple[str, bool, bool, bool], Any] = {}


def _paired_insert(dialect: str, mixin: bool, enter: bool, notified: bool):
    """The INSERT of a mixin signal or entry/exit that finds its pair partner in the same statement.

    The partner (see docs/signals.md, "One notification per real signal") is the newest mixin
    signal or entry/exit of the strategy, pair and action — one backward probe of the partial
    index ix_signals_pairing, whose predicate the subquery repeats word for word so that both
    databases use it — if it is of the other kind, not paired already, received since
    `p_cutoff` and tagged `p_tag`. The row gets the partner's id as `related_signal_id`; a graded
    row (`notified`) leaves the notification outbox at once (`dispatched_at` = `p_now`) when the
    partner was graded to be handed on. One statement, so pairing costs no extra round trip.
    Built once per dialect and kind; RETURNING id, related_signal_id, dispatched_at.
    """
    key = (dialect, mixin, enter, notified)
    stmt = _paired_inserts.get(key)
    if stmt is not None:
        return stmt
    table = Signal.__table__
    older = table.alias("older")
    newest = (
        select(older.c.id, older.c.message_type, older.c.received_at, older.c.related_signal_id,
               older.c.enter_tag, older.c.exit_reason, older.c.strength_level)
        .where(older.c.strategy_id == bindparam("p_strategy_id"),
               older.c.pair == bindparam("p_pair"), older.c.action == bindparam("p_action"),
               text(PAIRING_PREDICATE.replace("message_type", "older.message_type")))
        .order_by(older.c.id.desc()).limit(1).subquery("newest")
    )
    if enter:
        tag = func.coalesce(newest.c.enter_tag, "")
    else:
        tag = case((newest.c.exit_reason == _UNTAGGED_EXIT, ""),
                   else_=func.coalesce(newest.c.exit_reason, ""))
    other_kind = (newest.c.message_type != "strategy_msg" if mixin
                  else newest.c.message_type == "strategy_msg")
    partner = select(newest.c.id).where(
        newest.c.related_signal_id.is_(None), other_kind,
        newest.c.received_at >= bindparam("p_cutoff", type_=DateTime),
        tag == bindparam("p_tag", type_=String),
    )
    values: dict[str, Any] = {"related_signal_id": partner.scalar_subquery()}
    if notified:
        handed_on = exists(partner.where(newest.c.strength_level != IGNORE.level))
        values["dispatched_at"] = case((handed_on, bindparam("p_now", type_=DateTime)),
                                       else_=null())
    stmt = (_dialect_insert(dialect)(table).values(values)
            .on_conflict_do_nothing(index_elements=["dedupe_key"])
            .returning(table.c.id, table.c.related_signal_id, table.c.dispatched_at))
    _paired_inserts[key] = stmt
    return stmt


def store(auth: StrategyAuth, data: dict) -> tuple[IngestResult, dict[str, Any] | None]:
    """Validate, grade and insert one webhook; (result, the stored columns or None if duplicate).

    Returns only after the transaction committed. Raises WebhookError on invalid input.
    """
    parsed = parse_webhook(data)
    kind = parsed.columns["message_type"]
    now = utcnow()
    result_grade = grade(parsed.strength, auth.thresholds) if parsed.graded else IGNORE
    identity = parsed.identity
    previous_key = None
    if parsed.text_message:
        bucket = int(now.replace(tzinfo=UTC).timestamp()) // TEXT_DEDUPE_WINDOW
        identity = [*identity, bucket]
        previous_key = dedupe_key(auth.id, kind, [*parsed.identity, bucket - 1])
    key = dedupe_key(auth.id, kind, identity)
    columns = {
        "strategy_id": auth.id,
        "dedupe_key": key,
        "pair": "",
        "direction": "long",
        "rate": None,
        "profit_ratio": None,
        "profit_amount": None,
        "trade_id": None,
        "open_date": None,
        "close_date": None,
        "enter_tag": None,
        "exit_reason": None,
        "indicators": {},
        **parsed.columns,
        "strength_level": result_grade.level,
        "priority": result_grade.priority,
        "payload": data,
        "received_at": now,
        "related_signal_id": None,
        "published_at": None,
        # Nothing to hand on for an ungraded signal (or the second half of a mixin signal /
        # order pair, see _paired_insert), so it leaves the notification outbox at once.
        "dispatched_at": None if result_grade.notified else now,
    }
    dialect = db.engine.dialect.name
    action = columns["action"]
    if kind in PAIRING_TYPES and action in SIGNAL_ACTIONS:
        mixin = kind == "strategy_msg"
        insert_statement = _paired_insert(dialect, mixin, action.startswith("enter"),
                                          result_grade.notified)
        params = {name: value for name, value in columns.items()
                  if name not in ("related_signal_id", "dispatched_at")}
        if not result_grade.notified:
            params["dispatched_at"] = now
        params.update(p_strategy_id=auth.id, p_pair=columns["pair"], p_action=action,
                      p_cutoff=now - timedelta(seconds=auth.pairing_window), p_now=now,
                      p_tag=pairing_tag(action, columns["enter_tag"], columns["exit_reason"]))
    else:
        insert_statement = _insert_statement(dialect)
        params = columns

    def write(conn) -> tuple[Any, int | None]:
        """(the new row's RETURNING, None) or (None, id of the signal stored before)."""
        if previous_key is not None:
            earlier = conn.execute(
                select(Signal.id, Signal.received_at).where(Signal.dedupe_key == previous_key)
            ).first()
            if earlier is not None and (now - earlier[1]).total_seconds() < TEXT_DEDUPE_WINDOW:
                return None, earlier[0]
        inserted = conn.execute(insert_statement, params).first()
        return (inserted, None) if inserted is not None else (None, _existing_id(conn, key))

    inserted, existing = receiver_connections().run(write)
    if inserted is None:
        return IngestResult(existing or 0, True, result_grade, parsed.strength), None
    columns["id"] = inserted[0]
    if len(inserted) > 1:  # a pairable kind: what the statement decided
        columns["related_signal_id"], columns["dispatched_at"] = inserted[1], inserted[2]
    return IngestResult(columns["id"], False, result_grade, parsed.strength,
                        related_signal_id=columns["related_signal_id"],
                        notify=columns["dispatched_at"] is None), columns


def ingest_webhook(auth: StrategyAuth, body: bytes) -> IngestResult:
    """Validate and store + commit one authenticated webhook, then publish it and hand it on.

    Redis trouble never fails the webhook: what could not be published or handed on stays in
    the outbox (published_at / dispatched_at NULL) for the sweeper.
    """
    result, columns = store(auth, parse_body(body))
    if columns is not None:
        result.published, result.handed_on = outbox.deliver_new(columns, auth.name,
                                                                result.notify)
    return result
