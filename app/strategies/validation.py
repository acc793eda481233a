"""Validation of strategy input (JSON API, HTML form, CLI): clean values or {field: message}.

`clean_strategy(data, current)` checks only the fields present in `data` (all of them on
create) plus the fields each one depends on, so a PATCH of the thresholds never fails on an
unrelated field: class and file go together, exchange/timeframe/pairs/stake currency go
together, the three thresholds go together, stake amount and wallet go together.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from app.extensions import db
from app.proxies.models import Proxy
from app.runtime import versions
from app.simulator.market import INTERVAL_MINUTES
from app.strategies import library
from app.strategies.models import Strategy
from app.system.settings import current_settings

NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,63}")
CLASS_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
PAIR_RE = re.compile(r"[A-Z0-9]{1,20}/[A-Z0-9]{1,20}(:[A-Z0-9]{1,20})?")
CURRENCY_RE = re.compile(r"[A-Z0-9]{2,16}")
LABEL_RE = re.compile(r"[A-Za-z0-9_.+-]{1,32}")
MAX_PAIRS = 50
MAX_OPEN_TRADES = 1000
MAX_WALLET = 1e12
THRESHOLD_MAX = 100.0
SIMULATOR = "simulator"

EDITABLE = (
    "name", "description", "strategy_file", "strategy_class", "exchange", "timeframe", "pairs",
    "stake_currency", "stake_amount", "max_open_trades", "dry_run_wallet", "proxy_id",
    "strong_threshold", "medium_threshold", "weak_threshold", "version_label",
    "freqtrade_version",
)
REQUIRED = ("name", "strategy_class", "pairs")
# Fields validated together: touching one re-checks the group against the merged values.
GROUPS = (
    ("strategy_file", "strategy_class"),
    ("exchange", "timeframe", "pairs", "stake_currency"),
    ("strong_threshold", "medium_threshold", "weak_threshold"),
    ("stake_amount", "dry_run_wallet", "stake_currency"),
)
DEFAULTS: dict[str, Any] = {
    "description": "", "exchange": SIMULATOR, "timeframe": "1m", "stake_currency": "USDT",
    "stake_amount": "unlimited", "max_open_trades": 3, "dry_run_wallet": 1000.0,
    "proxy_id": None, "strong_threshold": 0.8, "medium_threshold": 0.6, "weak_threshold": 0.4,
    "version_label": "v1", "freqtrade_version": None,
}
READ_ONLY = (
    "id", "status", "desired_state", "status_message", "host", "port", "pid", "started_at",
    "stopped_at", "health_score", "last_processed_at", "api_username", "api_password",
    "jwt_secret", "ws_token", "webhook_token", "created_at", "updated_at", "deleted_at",
)

# Ignored on input: a form's CSRF token, create's auto_start, the upload checkbox.
IGNORED = ("csrf_token", "auto_start", "overwrite")


class Invalid(ValueError):
    """One field's problem; the message is shown next to the field."""


# ------------------------------------------------------------------------------ exchanges


def exchange_ids() -> list[str]:
    """Every exchange a strategy may use: the market simulator, then ccxt's exchange ids."""
    import ccxt

    return [SIMULATOR, *sorted(ccxt.exchanges)]


def timeframes_for(exchange: str) -> list[str]:
    """FreqTrade timeframes the exchange offers (ccxt's list; the simulator's own intervals)."""
    if exchange == SIMULATOR:
        try:
            return list(INTERVAL_MINUTES)
        except ImportError:  # pragma: no cover - the simulator ships with the app
            return ["1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d",
                    "3d", "1w"]
    import ccxt

    klass = getattr(ccxt, exchange, None)
    try:
        frames = list((klass().describe().get("timeframes") or {}) if klass else [])
    except Exception:  # noqa: BLE001 - a ccxt class that cannot describe itself
        frames = []
    return frames or ["1m", "5m", "15m", "30m", "1h", "4h", "1d"]


def simulator_pairs() -> list[str]:
    """The pairs the market simulator serves (system.simulator.pairs)."""
    return list(current_settings().system.simulator.pairs)


# -------------------------------------------------------------------------------- parsers


def _text(value: Any, label: str, max_length: int, allow_empty: bool = False) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise Invalid(f"{label} must be text.")
    if "\x00" in value:
        raise Invalid(f"{label} contains a NUL byte.")
    value = value.strip()
    if not value and not allow_empty:
        raise Invalid(f"{label} is required.")
    if len(value) > max_length:
        raise Invalid(f"{label} is {len(value)} characters long; at most {max_length}.")
    return value


def _number(value: Any, label: str, minimum: float, maximum: float) -> float:
    if isinstance(value, bool) or value is None or value == "":
        raise Invalid(f"{label} is required and must be a number.")
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise Invalid(f"{label} must be a number, not {value.strip()[:20]!r}.") from None
    else:
        raise Invalid(f"{label} must be a number.")
    if not math.isfinite(number):
        raise Invalid(f"{label} must be a finite number.")
    if not minimum <= number <= maximum:
        raise Invalid(f"{label} must be between {minimum:g} and {maximum:g}.")
    return number


def _integer(value: Any, label: str, minimum: int, maximum: int) -> int:
    number = _number(value, label, minimum, maximum)
    if not number.is_integer():
        raise Invalid(f"{label} must be a whole number.")
    return int(number)


def clean_name(value: Any) -> str:
    """A strategy name: 1–64 of A-Z a-z 0-9 _ -, so it is safe in file and folder names."""
    if isinstance(value, str) and "\x00" in value:
        raise Invalid("The name contains a NUL byte.")
    name = _text(value, "The name", 10_000)
    if "/" in name or "\\" in name or ".." in name:
        raise Invalid("The name must not contain a path (/, \\ or ..).")
    if len(name) > 64:
        raise Invalid(f"The name is {len(name)} characters long; at most 64.")
    if not NAME_RE.fullmatch(name):
        raise Invalid("The name may use only letters A-Z, digits, _ and - (no spaces), "
                      "and cannot start with -.")
    return name


def clean_pairs(value: Any) -> list[str]:
    """A pair whitelist from a list or a comma/space separated string: 1..50 unique BASE/QUOTE."""
    if isinstance(value, str):
        items = [p for p in re.split(r"[\s,]+", value) if p]
    elif isinstance(value, list | tuple):
        items = value
    else:
        raise Invalid("Pairs must be a list such as [\"BTC/USDT\", \"ETH/USDT\"].")
    if not items:
        raise Invalid("Give at least one pair, such as BTC/USDT.")
    if len(items) > MAX_PAIRS:
        raise Invalid(f"{len(items)} pairs given; at most {MAX_PAIRS}.")
    pairs: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise Invalid("Every pair must be text such as BTC/USDT.")
        pair = item.strip().upper()
        if not PAIR_RE.fullmatch(pair):
            raise Invalid(f"{item[:40]!r} is not a pair; write BASE/QUOTE such as BTC/USDT.")
        if pair in pairs:
            raise Invalid(f"{pair} is listed twice.")
        pairs.append(pair)
    return pairs


def clean_stake_amount(value: Any) -> str:
    """'unlimited' or a positive number (kept as text, as FreqTrade's config takes both)."""
    if isinstance(value, str) and value.strip().lower() == "unlimited":
        return "unlimited"
    amount = _number(value, "The stake amount", 0, MAX_WALLET)
    if amount <= 0:
        raise Invalid("The stake amount must be more than 0, or 'unlimited'.")
    return f"{amount:g}" if amount < 1e15 else str(amount)


def clean_proxy_id(value: Any) -> int | None:
    """An existing proxy's id, or None for a direct connection."""
    if value is None or value == "":
        return None
    proxy_id = _integer(value, "The proxy", 1, 2**31 - 1)

    if db.session.get(Proxy, proxy_id) is None:
        raise Invalid(f"No proxy with id {proxy_id}.")
    return proxy_id


# ------------------------------------------------------------------------------- the form


def _field_value(field: str, value: Any) -> Any:
    """One field on its own (no cross-field rules)."""
    if field == "name":
        return clean_name(value)
    if field == "description":
        return _text(value, "The description", 2000, allow_empty=True)
    if field == "strategy_file":
        try:
            return library.check_file_name(value, "strategy_file")
        except library.LibraryError as exc:
            raise Invalid(exc.message) from None
    if field == "strategy_class":
        name = _text(value, "The strategy class", 128)
        if not CLASS_RE.fullmatch(name):
            raise Invalid(f"{name[:40]!r} is not a Python class name.")
        return name
    if field == "exchange":
        exchange = _text(value, "The exchange", 32).lower()
        if exchange not in exchange_ids():
            raise Invalid(f"Unknown exchange {exchange!r}: use simulator or a ccxt exchange "
                          "id such as binance, kraken or okx.")
        return exchange
    if field == "timeframe":
        return _text(value, "The timeframe", 8)
    if field == "pairs":
        return clean_pairs(value)
    if field == "stake_currency":
        currency = _text(value, "The stake currency", 16).upper()
        if not CURRENCY_RE.fullmatch(currency):
            raise Invalid("The stake currency must be 2–16 letters or digits, such as USDT.")
        return currency
    if field == "stake_amount":
        return clean_stake_amount(value)
    if field == "max_open_trades":
        trades = _integer(value, "Max open trades", -1, MAX_OPEN_TRADES)
        return trades
    if field == "dry_run_wallet":
        wallet = _number(value, "The dry-run wallet", 0, MAX_WALLET)
        if wallet <= 0:
            raise Invalid("The dry-run wallet must be more than 0.")
        return wallet
    if field == "proxy_id":
        return clean_proxy_id(value)
    if field.endswith("_threshold"):
        label = field.split("_")[0].capitalize() + " threshold"
        return _number(value, label, 0, THRESHOLD_MAX)
    if field == "version_label":
        label = _text(value, "The version label", 32)
        if not LABEL_RE.fullmatch(label):
            raise Invalid("The version label may use letters, digits and . _ + - only.")
        return label
    if field == "freqtrade_version":
        if value in (None, "", "default"):
            return None
        try:
            version = versions.parse(value)
        except versions.VersionError as exc:
            raise Invalid(exc.message) from exc
        if not versions.is_installed(version):
            raise Invalid(f"FreqTrade {version} is not installed; install it on the FreqTrade "
                          f"versions page (or: flask freqtrade install {version}).")
        return None if version == versions.default_version() else version
    raise Invalid("Unknown field.")  # pragma: no cover - EDITABLE lists every field


def _cross_checks(merged: dict, clean: dict, errors: dict, touched: set[str]) -> None:
    """Rules between fields, on the merged (current + new) values; only touched groups."""

    def ok(*fields: str) -> bool:
        return all(f not in errors and merged.get(f) is not None for f in fields)

    if touched & {"strategy_file", "strategy_class"} and ok("strategy_class"):
        cls = merged["strategy_class"]
        folder = library.library_dir()
        if not merged.get("strategy_file"):
            files = library.find_class(cls, folder)
            if len(files) == 1:
                clean["strategy_file"] = merged["strategy_file"] = files[0]
            elif not files:
                errors["strategy_class"] = (f"No strategy class {cls} in the strategy library; "
                                            "upload its file first.")
            else:
                errors["strategy_file"] = (f"{cls} is defined in {', '.join(files)}; "
                                           "choose the file.")
        elif ok("strategy_file"):
            file_name = merged["strategy_file"]
            if not (folder / file_name).is_file():
                errors["strategy_file"] = f"{file_name} is not in the strategy library."
            else:
                classes = library.classes_in(file_name, folder)
                if not classes:
                    errors["strategy_file"] = (f"{file_name} does not define any strategy class "
                                               "(no class derives from IStrategy).")
                elif cls not in classes:
                    found = ", ".join(classes) or "no strategy class"
                    errors["strategy_class"] = (f"{file_name} does not define a strategy class "
                                                f"{cls} (it has: {found}).")
    if touched & {"exchange", "timeframe"} and ok("exchange", "timeframe"):
        frames = timeframes_for(merged["exchange"])
        if merged["timeframe"] not in frames:
            errors["timeframe"] = (f"{merged['timeframe']!r} is not a timeframe of "
                                   f"{merged['exchange']}; use one of {', '.join(frames)}.")
    if touched & {"exchange", "pairs", "stake_currency"} and ok("pairs", "stake_currency"):
        currency = merged["stake_currency"]
        wrong = [p for p in merged["pairs"] if p.split("/")[1].split(":")[0] != currency]
        if wrong:
            errors["pairs"] = (f"{', '.join(wrong[:5])} not quoted in the stake currency "
                               f"{currency}; FreqTrade trades only {currency} pairs.")
        elif ok("exchange") and merged["exchange"] == SIMULATOR:
            served = simulator_pairs()
            missing = [p for p in merged["pairs"] if p not in served]
            if missing:
                errors["pairs"] = (f"The market simulator does not serve {', '.join(missing[:5])}"
                                   f"; it serves {', '.join(served)}.")
    levels = ("strong_threshold", "medium_threshold", "weak_threshold")
    if touched & set(levels) and ok(*levels):
        strong, medium, weak = (merged[f] for f in levels)
        if medium > strong:
            errors["medium_threshold"] = (f"The medium threshold ({medium:g}) must not be above "
                                          f"the strong one ({strong:g}).")
        if weak > medium:
            errors["weak_threshold"] = (f"The weak threshold ({weak:g}) must not be above the "
                                        f"medium one ({medium:g}).")
    if touched & {"stake_amount", "dry_run_wallet"} and ok("stake_amount", "dry_run_wallet"):
        if merged["stake_amount"] != "unlimited" and (
                float(merged["stake_amount"]) > merged["dry_run_wallet"]):
            errors["stake_amount"] = (f"The stake amount ({merged['stake_amount']}) is more "
                                      f"than the dry-run wallet ({merged['dry_run_wallet']:g}).")


def current_values(strategy) -> dict:
    """The editable fields of an existing strategy."""
    return {field: getattr(strategy, field) for field in EDITABLE}


def clean_strategy(data: Mapping, current=None) -> tuple[dict, dict[str, str]]:
    """Validate input for a new strategy (current None) or changes to one.

    Returns (values to set, errors as {field: message}). Unknown and read-only fields are
    errors too, so a typo never passes silently.
    """
    errors: dict[str, str] = {}
    clean: dict[str, Any] = {}
    if not isinstance(data, Mapping):
        return {}, {"body": "Send a JSON object with the strategy's fields."}
    for key in data:
        if key in IGNORED or key in EDITABLE:
            continue
        errors[str(key)[:64]] = ("Set by BTC Watcher; it cannot be changed here."
                                 if key in READ_ONLY else "Unknown field.")
    given = {k: data[k] for k in EDITABLE if k in data}
    if current is None:
        for field in REQUIRED:
            if given.get(field) in (None, "", []):
                errors[field] = {
                    "name": "The name is required.",
                    "strategy_class": "Choose the strategy class to run.",
                    "pairs": "Give at least one pair, such as BTC/USDT.",
                }[field]
        given = {**{k: v for k, v in DEFAULTS.items() if k not in given}, **given}
        given.setdefault("strategy_file", None)
    for field, value in given.items():
        if field in errors:
            continue
        if field == "strategy_file" and value in (None, ""):
            clean[field] = None  # found from the class below
            continue
        try:
            clean[field] = _field_value(field, value)
        except Invalid as exc:
            errors[field] = str(exc)
    touched = set(given)
    for group in GROUPS:
        if touched & set(group):
            touched |= set(group)
    merged = {**(current_values(current) if current is not None else {}), **clean}
    _cross_checks(merged, clean, errors, touched)
    if "strategy_file" in clean and clean["strategy_file"] is None:
        clean.pop("strategy_file")
        if "strategy_class" not in errors and "strategy_file" not in errors:
            errors["strategy_file"] = "Choose the library file that defines the strategy class."
    _unique_name(clean, errors, current)
    return clean, errors


def _unique_name(clean: dict, errors: dict, current) -> None:
    """A live strategy's name is unique (deleted strategies free theirs)."""
    name = clean.get("name")
    if not name or "name" in errors:
        return
    from sqlalchemy import func, select

    query = select(Strategy.id).where(func.lower(Strategy.name) == name.lower(),
                                      Strategy.deleted_at.is_(None))
    if current is not None:
        query = query.where(Strategy.id != current.id)
    if db.session.scalar(query) is not None:
        errors["name"] = f"A strategy named {name} already exists."
