"""The exchange relay's engine: shared answers, one rate budget per upstream IP (no Flask, no DB).

Bots ask ``GET /<exchange>/api/v3/<endpoint>?<query>`` (``exchange`` is ``simulator`` or
``binance``); the relay answers with the exchange's own bytes, status and content type. It
shares: identical requests in flight collapse into one upstream call, and answers are reused —
klines whose candles are all closed and can no longer change (a pinned range) until evicted,
the latest candles for ``forming_ttl`` seconds but never past the candle they were fetched in
(so a new candle is never hidden), tickers, prices and order books for ``ticker_ttl``,
exchangeInfo for ``exchange_info_ttl``. It budgets: each upstream (this host's own IP, or a
proxy) has the exchange's per-IP weight limit; the relay reads ``X-MBX-USED-WEIGHT-1M`` from
every answer, adds what it sends, and keeps each upstream under ``weight_share`` % of the limit,
choosing the least used one. A 429 or 418 stops that upstream for its ``Retry-After``; the
request goes to another upstream or is answered from the cache (stale) — one ban avoided for
every bot at once. With nothing left it answers 429 itself, in Binance's format.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

import requests
from requests.adapters import HTTPAdapter

from app.simulator.limits import INTERVAL_MINUTES, request_weight

log = logging.getLogger(__name__)

MINUTE = 60
PINNED_TTL = 24 * 3600.0  # closed candles never change; the LRU evicts them first if space runs out
PASSED_HEADERS = ("Content-Type", "Retry-After")
LATENCY_SAMPLES = 2000


@dataclass
class Answer:
    """One answer as the exchange gave it (or as the relay makes it, in the same format)."""

    status: int
    body: bytes
    headers: dict[str, str]
    source: str = "miss"  # miss | hit | shared | stale | relay

    @classmethod
    def binance_error(cls, status: int, code: int, msg: str, retry_after: int | None = None):
        headers = {"Content-Type": "application/json;charset=UTF-8"}
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        body = json.dumps({"code": code, "msg": msg}, separators=(",", ":")).encode()
        return cls(status, body, headers, "relay")


@dataclass
class _Entry:
    answer: Answer
    expires: float  # epoch seconds

    @property
    def size(self) -> int:
        return len(self.answer.body) + 200


class AnswerCache:
    """Answers by request key, least recently used evicted past `max_bytes`."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.bytes = 0
        self.entries: OrderedDict[str, _Entry] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: str) -> _Entry | None:
        with self.lock:
            entry = self.entries.get(key)
            if entry is not None:
                self.entries.move_to_end(key)
            return entry

    def put(self, key: str, answer: Answer, expires: float) -> None:
        entry = _Entry(answer, expires)
        if entry.size > self.max_bytes:
            return
        with self.lock:
            old = self.entries.pop(key, None)
            if old is not None:
                self.bytes -= old.size
            self.entries[key] = entry
            self.bytes += entry.size
            while self.bytes > self.max_bytes and self.entries:
                _, dropped = self.entries.popitem(last=False)
                self.bytes -= dropped.size


@dataclass
class Upstream:
    """One way out to the exchange: this host's own IP (``direct``) or a proxy."""

    key: str  # "direct" or "proxy:<id>"
    name: str
    proxy_url: str | None = None  # holds credentials: never shown
    shown_url: str = ""
    session: requests.Session = field(default_factory=requests.Session)
    minute: int = 0
    used: int = 0  # weight used this minute (the exchange's header, plus what is in flight)
    blocked_until: float = 0.0  # 429/418: no call before this
    blocked_status: int = 0
    failing_until: float = 0.0  # unreachable: rested briefly
    sent: deque = field(default_factory=lambda: deque(maxlen=100_000))  # call times
    counts: dict = field(default_factory=lambda: {"requests": 0, "weight": 0, "429": 0,
                                                   "418": 0, "errors": 0})
    last_error: str = ""

    def __post_init__(self) -> None:
        if self.proxy_url:
            self.session.proxies = {"http": self.proxy_url, "https": self.proxy_url}
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=64)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.trust_env = False

    def used_now(self, now: float) -> int:
        return self.used if int(now // MINUTE) == self.minute else 0

    def state(self, now: float, cap: int) -> str:
        if now < self.blocked_until:
            return "banned" if self.blocked_status == 418 else "rate-limited"
        if now < self.failing_until:
            return "failing"
        if self.used_now(now) >= cap:
            return "at budget"
        return "ok"

    def add_weight(self, now: float, weight: int) -> None:
        minute = int(now // MINUTE)
        if minute != self.minute:
            self.minute, self.used = minute, 0
        self.used += weight

    def as_dict(self, now: float, cap: int, limit: int) -> dict:
        recent = sum(1 for t in self.sent if t >= now - MINUTE)
        return {
            "key": self.key, "name": self.name, "url": self.shown_url,
            "state": self.state(now, cap),
            "blocked_for": max(0, round(self.blocked_until - now, 1)),
            "requests_per_min": recent, "weight_used": self.used_now(now),
            "weight_budget": cap, "weight_limit": limit,
            "last_error": self.last_error, **self.counts,
        }


@dataclass
class RelayConfig:
    exchanges: dict[str, str]  # name -> upstream base URL
    weight_limit: int = 6000
    weight_share: int = 80
    forming_ttl: float = 5.0
    ticker_ttl: float = 1.0
    exchange_info_ttl: float = 300.0
    cache_mb: int = 64
    timeout: float = 10.0

    @property
    def budget(self) -> int:
        return max(1, self.weight_limit * self.weight_share // 100)


class _Flight:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.answer: Answer | None = None


class Relay:
    """The shared, budgeted door to the exchange. `upstreams` is replaced as the pool changes."""

    def __init__(self, config: RelayConfig, clock: Callable[[], float] = time.time):
        self.config = config
        self.clock = clock
        self.cache = AnswerCache(config.cache_mb * 1024 * 1024)
        self.upstreams: list[Upstream] = []
        self.inflight: dict[str, _Flight] = {}
        self.lock = threading.Lock()
        self.counts = {"requests": 0, "hit": 0, "shared": 0, "stale": 0, "miss": 0, "relay": 0}
        self.overhead_ms: deque[float] = deque(maxlen=LATENCY_SAMPLES)
        self.started = clock()

    # ------------------------------------------------------------------ the pool

    def set_upstreams(self, wanted: Iterable[tuple[str, str, str | None, str]]) -> None:
        """Make the pool (key, name, proxy URL, shown URL); known upstreams keep their counts."""
        with self.lock:
            known = {u.key: u for u in self.upstreams}
            pool = []
            for key, name, proxy_url, shown in wanted:
                current = known.get(key)
                if current is None or current.proxy_url != proxy_url:
                    current = Upstream(key, name, proxy_url, shown)
                current.name, current.shown_url = name, shown
                pool.append(current)
            self.upstreams = pool

    def _choose(self, weight: int, tried: set[str]) -> Upstream | None:
        now = self.clock()
        cap = self.config.budget
        with self.lock:
            usable = [u for u in self.upstreams
                      if u.key not in tried and u.state(now, cap) == "ok"
                      and u.used_now(now) + weight <= cap]
            if not usable:
                return None
            chosen = min(usable, key=lambda u: u.used_now(now))
            chosen.add_weight(now, weight)  # reserved before the answer says so
            return chosen

    # ------------------------------------------------------------------ requests

    def handle(self, method: str, path: str, query: str) -> Answer:
        """Answer one bot request (see the module docstring)."""
        started = time.perf_counter()
        self.counts["requests"] += 1
        if method not in ("GET", "HEAD"):
            return self._count(Answer.binance_error(
                405, -1000, f"The relay serves the exchange's public GET endpoints, not {method}."))
        exchange, _, rest = path.lstrip("/").partition("/")
        base = self.config.exchanges.get(exchange)
        if base is None:
            names = ", ".join(sorted(self.config.exchanges)) or "none"
            return self._count(Answer.binance_error(
                404, -1000, f"Unknown exchange {exchange!r}; the relay serves: {names}."))
        rest = "/" + rest
        if not rest.startswith(("/api/v3/", "/api/v1/")):
            return self._count(Answer.binance_error(404, -1000, "Unknown path."))
        params = dict(parse_qsl(query, keep_blank_values=True))
        key = f"{exchange}{rest}?" + "&".join(f"{k}={v}" for k, v in sorted(params.items()))

        entry = self.cache.get(key)
        if entry is not None and entry.expires > self.clock():
            self._note_overhead(started, 0.0)
            return self._count(_as(entry.answer, "hit"))
        with self.lock:
            flight = self.inflight.get(key)
            leader = flight is None
            if leader:
                flight = self.inflight[key] = _Flight()
        if not leader:
            waited = time.perf_counter()
            flight.done.wait(self.config.timeout * 2 + 1)
            if flight.answer is not None:  # the wait is the exchange's time, not the relay's
                self._note_overhead(started, time.perf_counter() - waited)
                return self._count(_as(flight.answer, "shared"))
        answer = None
        upstream_seconds = 0.0
        try:
            answer, upstream_seconds = self._fetch(base, rest, query, params, key, entry)
        finally:
            if leader:
                flight.answer = answer
                flight.done.set()
                with self.lock:
                    self.inflight.pop(key, None)
        self._note_overhead(started, upstream_seconds)
        return self._count(answer)

    def _fetch(self, base: str, rest: str, query: str, params: dict, key: str,
               entry: _Entry | None) -> tuple[Answer, float]:
        weight = request_weight(rest, params)
        tried: set[str] = set()
        unreachable = False
        spent = 0.0
        url = base.rstrip("/") + rest + (f"?{query}" if query else "")
        while True:
            upstream = self._choose(weight, tried)
            if upstream is None:
                break
            tried.add(upstream.key)
            sent = time.perf_counter()
            try:
                response = upstream.session.get(url, timeout=self.config.timeout)
            except requests.RequestException as exc:
                spent += time.perf_counter() - sent
                upstream.counts["errors"] += 1
                upstream.last_error = type(exc).__name__
                upstream.failing_until = self.clock() + 5
                unreachable = True
                log.warning("relay: %s unreachable (%s)", upstream.name, type(exc).__name__)
                continue
            spent += time.perf_counter() - sent
            answer = self._observe(upstream, response, weight)
            if answer.status in (418, 429):
                continue
            if answer.status == 200:
                ttl = self._ttl(rest, params, answer)
                if ttl > 0:
                    self.cache.put(key, answer, ttl)
            return answer, spent
        if entry is not None:
            return _as(entry.answer, "stale"), spent
        if unreachable:
            return Answer.binance_error(
                503, -1001, "The exchange relay cannot reach the exchange (every upstream "
                "failed); try again.", retry_after=5), spent
        wait = self._seconds_until_free()
        return Answer.binance_error(
            429, -1003, "The exchange relay has no upstream with weight left or unbanned; "
            f"retry after {wait} s.", retry_after=wait), spent

    def _observe(self, upstream: Upstream, response: requests.Response, weight: int) -> Answer:
        now = self.clock()
        with self.lock:
            upstream.sent.append(now)
            upstream.counts["requests"] += 1
            upstream.counts["weight"] += weight
            header = response.headers.get("X-MBX-USED-WEIGHT-1M")
            if header and header.isdigit():
                upstream.add_weight(now, 0)
                upstream.used = max(upstream.used, int(header))
            if response.status_code in (418, 429):
                upstream.counts[str(response.status_code)] += 1
                retry = response.headers.get("Retry-After", "")
                seconds = int(retry) if retry.isdigit() else MINUTE
                upstream.blocked_until = now + max(1, seconds)
                upstream.blocked_status = response.status_code
                upstream.last_error = f"HTTP {response.status_code}"
                log.warning("relay: %s answered %s; resting it %s s", upstream.name,
                            response.status_code, seconds)
            else:
                upstream.last_error = ""
        headers = {h: response.headers[h] for h in PASSED_HEADERS if h in response.headers}
        return Answer(response.status_code, response.content, headers, "miss")

    def _ttl(self, rest: str, params: dict, answer: Answer) -> float:
        """Until when (epoch seconds) an answer may be reused; 0 = not at all."""
        now = self.clock()
        name = rest.rsplit("/", 1)[-1] if "/ticker/" not in rest else "ticker"
        cfg = self.config
        if name in ("klines", "uiKlines"):
            minutes = INTERVAL_MINUTES.get(params.get("interval", ""), 0)
            if not minutes:
                return 0
            span = minutes * MINUTE
            try:
                rows = json.loads(answer.body)
                last_close = rows[-1][6] / 1000 if rows else None
                limit = int(params.get("limit", "500"))
            except (ValueError, IndexError, TypeError):
                return 0
            if last_close is not None and last_close < now and (
                    "endTime" in params or ("startTime" in params and len(rows) >= limit)):
                return now + PINNED_TTL  # a closed range: it can never change
            candle_end = (now // span + 1) * span
            return min(now + cfg.forming_ttl, candle_end)
        if name in ("ticker", "depth", "avgPrice", "trades", "aggTrades", "ping"):
            return now + cfg.ticker_ttl
        if name == "exchangeInfo":
            return now + cfg.exchange_info_ttl
        return 0

    def _seconds_until_free(self) -> int:
        now = self.clock()
        waits = [max(u.blocked_until - now, 0) or (MINUTE - now % MINUTE) for u in self.upstreams]
        return int(min(waits, default=MINUTE)) + 1

    def _count(self, answer: Answer) -> Answer:
        self.counts[answer.source] = self.counts.get(answer.source, 0) + 1
        return answer

    def _note_overhead(self, started: float, upstream_seconds: float) -> None:
        self.overhead_ms.append((time.perf_counter() - started - upstream_seconds) * 1000)

    # ------------------------------------------------------------------ figures

    def stats(self) -> dict:
        """Counters, cache, overhead and every upstream's state (nothing secret)."""
        now = self.clock()
        counts = dict(self.counts)
        served = counts["hit"] + counts["shared"] + counts["stale"] + counts["miss"]
        samples = sorted(self.overhead_ms)
        with self.lock:
            upstreams = [u.as_dict(now, self.config.budget, self.config.weight_limit)
                         for u in self.upstreams]
        return {
            "at": now,
            "uptime": round(now - self.started, 1),
            "counts": counts,
            "hit_rate": round((counts["hit"] + counts["shared"]) / served * 100, 1)
            if served else None,
            "cache": {"entries": len(self.cache.entries), "bytes": self.cache.bytes,
                      "max_bytes": self.cache.max_bytes},
            "overhead_ms": {"p50": _quantile(samples, 0.5), "p99": _quantile(samples, 0.99)},
            "upstreams": upstreams,
            "exchanges": sorted(self.config.exchanges),
        }


def _as(answer: Answer, source: str) -> Answer:
    return Answer(answer.status, answer.body, answer.headers, source)


def _quantile(samples: list[float], q: float) -> float | None:
    if not samples:
        return None
    return round(samples[min(len(samples) - 1, int(q * len(samples)))], 3)


def wsgi_app(relay: Relay, extra: Callable[[str], tuple[int, bytes] | None] | None = None):
    """The relay as a WSGI callable; `extra(path)` may answer non-exchange paths (/_relay/...)."""

    def app(environ, start_response):
        path = environ.get("PATH_INFO", "/")
        if extra is not None and path.startswith("/_relay"):
            found = extra(path)
            if found is not None:
                status, body = found
                start_response(f"{status} {'OK' if status == 200 else 'Error'}",
                               [("Content-Type", "application/json"),
                                ("Content-Length", str(len(body)))])
                return [body]
        answer = relay.handle(environ.get("REQUEST_METHOD", "GET"), path,
                              environ.get("QUERY_STRING", ""))
        headers = [(k, v) for k, v in answer.headers.items()]
        headers.append(("X-BTCW-Relay", answer.source))
        body = b"" if environ.get("REQUEST_METHOD") == "HEAD" else answer.body
        headers.append(("Content-Length", str(len(body))))
        start_response(f"{answer.status} {_REASONS.get(answer.status, 'Status')}", headers)
        return [body]

    return app


_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            418: "I'm a teapot", 429: "Too Many Requests", 500: "Internal Server Error",
            502: "Bad Gateway", 503: "Service Unavailable"}
