"""Binance's request weights and its per-IP limit, as the simulator enforces them.

The weights are Binance spot's published ones (developers.binance.com, spot REST API, market data
endpoints): one table, used by the simulator to charge each request and by the exchange relay to
budget before it sends one. The limit works like Binance's: every IP has `weight_limit` request
weight per minute; the answer carries `X-MBX-USED-WEIGHT-1M`; a request over the limit gets HTTP 429
with `Retry-After` (seconds to the next minute); an IP that keeps calling while told to back off
gets HTTP 418 and a ban that doubles with each repeat (`ban_seconds`, 2 minutes on Binance).
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

MINUTE = 60
# Binance's kline intervals, in minutes.
INTERVAL_MINUTES: dict[str, int] = {
    "1m": 1,
    "3m": 3,
    "5m": 5,
    "15m": 15,
    "30m": 30,
    "1h": 60,
    "2h": 120,
    "4h": 240,
    "6h": 360,
    "8h": 480,
    "12h": 720,
    "1d": 1440,
    "3d": 3 * 1440,
    "1w": 7 * 1440,
}
DEFAULT_WEIGHT_LIMIT = 6000
DEFAULT_BAN_SECONDS = 120
MAX_BAN_SECONDS = 3 * 24 * 3600


def _symbols_count(params: dict[str, str]) -> int | None:
    """How many symbols `symbols=[...]` names; None when absent or unreadable."""
    raw = params.get("symbols")
    if raw is None:
        return None
    try:
        names = json.loads(raw)
    except ValueError:
        return None
    return len(names) if isinstance(names, list) else None


def request_weight(path: str, params: dict[str, str]) -> int:
    """The weight Binance charges for a GET of `path` (``/api/v3/...``) with `params`."""
    name = path.rsplit("/api/v3/", 1)[-1]
    single = "symbol" in params
    if name in ("klines", "uiKlines", "avgPrice", "ticker/bookTicker", "ticker/price"):
        if name.startswith("ticker/") and not single:
            return 4
        return 2
    if name == "exchangeInfo":
        return 20
    if name == "depth":
        try:
            limit = int(params.get("limit", "100"))
        except ValueError:
            limit = 100
        return 5 if limit <= 100 else 25 if limit <= 500 else 50 if limit <= 1000 else 250
    if name == "ticker/24hr":
        if single:
            return 2
        count = _symbols_count(params)
        if count is None:
            return 80
        return 2 if count <= 20 else 40 if count <= 100 else 80
    if name in ("trades", "historicalTrades"):
        return 25
    if name == "aggTrades":
        return 4
    return 1


def weight_of_query(path: str, query: str) -> int:
    """`request_weight` for a raw query string."""
    return request_weight(path, dict(parse_qsl(query, keep_blank_values=True)))


@dataclass
class _Ip:
    minute: int = 0
    used: int = 0
    backoff_until: float = 0.0  # told 429: calls before this earn a 418
    banned_until: float = 0.0  # 418: every call refused until then
    bans: int = 0


@dataclass
class Verdict:
    """What the limiter decided for one request: status 200 (go on), 429 or 418."""

    status: int
    used: int
    retry_after: int = 0
    message: str = ""


@dataclass
class WeightLimiter:
    """Per-IP request weight per minute; 0 as the limit turns it off (weights still counted)."""

    weight_limit: int = 0
    ban_seconds: int = DEFAULT_BAN_SECONDS
    clock: object = time.time
    ips: dict[str, _Ip] = field(default_factory=dict)
    refused: Counter = field(default_factory=Counter)  # 429 / 418 answers given
    total_weight: int = 0  # the weight of every request since the last reset, refused or not
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        with self.lock:
            self.ips.clear()
            self.refused.clear()
            self.total_weight = 0

    def charge(self, ip: str, weight: int) -> Verdict:
        """Count `weight` for `ip` now and say whether the request may be served."""
        now = float(self.clock())  # type: ignore[operator]
        minute = int(now // MINUTE)
        with self.lock:
            state = self.ips.setdefault(ip, _Ip())
            if state.minute != minute:
                state.minute, state.used = minute, 0
            self.total_weight += weight  # asked for, served or refused
            if now < state.banned_until or (self.weight_limit and now < state.backoff_until):
                # Still calling while told to stop: banned, longer each time (Binance's 418).
                state.bans += 1
                seconds = min(self.ban_seconds * 2 ** (state.bans - 1), MAX_BAN_SECONDS)
                state.banned_until = max(state.banned_until, now + seconds)
                until_ms = int(state.banned_until * 1000)
                self.refused[418] += 1
                return Verdict(418, state.used, int(state.banned_until - now) + 1,
                               f"Way too much request weight used; IP banned until {until_ms}. "
                               "Please use WebSocket Streams for live updates to avoid bans.")
            state.used += weight
            if self.weight_limit and state.used > self.weight_limit:
                retry = (minute + 1) * MINUTE - now
                state.backoff_until = now + retry
                self.refused[429] += 1
                return Verdict(429, state.used, int(retry) + 1,
                               f"Too much request weight used; current limit is "
                               f"{self.weight_limit} request weight per 1 MINUTE. Please use "
                               "WebSocket Streams for live updates to avoid polling the API.")
            return Verdict(200, state.used)

    def snapshot(self) -> dict:
        """Settings, answers refused, and each IP's use this minute."""
        now = float(self.clock())  # type: ignore[operator]
        minute = int(now // MINUTE)
        with self.lock:
            return {
                "weight_limit": self.weight_limit,
                "ban_seconds": self.ban_seconds,
                "refused": {str(k): v for k, v in self.refused.items()},
                "total_weight": self.total_weight,
                "ips": {
                    ip: {
                        "used": s.used if s.minute == minute else 0,
                        "banned_for": max(0, round(s.banned_until - now, 1)),
                        "bans": s.bans,
                    }
                    for ip, s in self.ips.items()
                },
            }
