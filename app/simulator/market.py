"""A deterministic market: every pair's price at every minute is a pure function of the inputs.

Synthetic pairs follow a regime-switching model. Each UTC day of a pair is one *chunk* whose random
draws come from ``numpy.random.default_rng([seed, pair key, day])``; the log price is a slow
deterministic swing (sum of sines, the "anchor") plus a fast mean-reverting part driven by regimes
that change every few minutes (rally, sell-off, ranging swings, volatile chop). The fast part of day
``d`` is computed from the start of day ``d - 1`` with the state zeroed: its mean reversion forgets
the starting state within hours (to 1e-19 after a day), so chunks are independent yet join
seamlessly, and any minute can be computed without replaying history from the epoch.

Replay pairs take their 1m path from a CSV (``timestamp_ms,open,high,low,close,volume``), one row
per minute whatever the file's own interval, rescaled so the last close equals the pair's price
level and shifted so the file's last row is the minute before ``anchor_ms`` (the simulator's start).
Time before and after the file plays it back and forth (ping-pong), which keeps prices continuous.

Candles of every supported interval aggregate the 1m path; the candle holding "now" is partial, and
so is the current minute: its close moves from the minute's open toward its final close in
5-second steps (steps keep the ticker and the order book identical for a few seconds, so dry-run
orders priced from one fill against the other).
"""

from __future__ import annotations

import csv
import math
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.signal import lfilter

from app.simulator.limits import INTERVAL_MINUTES

MINUTE_MS = 60_000
DAY_MINUTES = 1440
# First minute the market exists: 2024-01-01T00:00:00Z. Older candles are simply not there.
EPOCH_MINUTE = 1_704_067_200_000 // MINUTE_MS
EPOCH_DAY = EPOCH_MINUTE // DAY_MINUTES
# 1970-01-01 was a Thursday; Binance weekly candles open on Monday.
WEEK_OFFSET_DAYS = 4
PARTIAL_STEP_SECONDS = 5

# Binance kline intervals served, in minutes (1s and 1M are not simulated).

DEFAULT_PAIRS = ("BTC/USDT", "ETH/USDT", "SOL/USDT", "ADA/USDT", "DOT/USDT")

# Mean reversion of the fast part per minute: half-life ~23 min; a day forgets all but 1e-19.
REVERSION_PER_MINUTE = 0.03
# Regimes (see MarketModel._day_draws). Short legs with a strong drift make a zigzag market in
# which ordinary 1m strategies (MA / MACD crosses, RSI and Bollinger extremes) signal within minutes
# of a bot starting; drifts are in units of the pair's 1m volatility.
LEG_MINUTES = (3, 6)
LEG_TARGET = (3.0, 8.0)  # a leg ends this far (in 1m volatilities) beyond the anchor
LEG_STEEPNESS = (1.8, 2.8)  # a leg's drift per minute: steep legs make clear reversals
LEG_MAX_DRIFT = 3.0  # a leg too long for LEG_MINUTES at this drift runs longer instead
TREND_CHANCE = 0.9  # else a ranging swing (SWING_CHANCE) or a volatile chop
SWING_CHANCE = 0.06
LEG_NOISE = 0.6  # noise on top of the drift, in 1m volatilities


@dataclass(frozen=True)
class PairProfile:
    """How one market looks: price level, exchange precision and per-minute volatility."""

    pair: str
    base: str
    quote: str
    price_level: float
    tick_size: float
    step_size: float
    volatility: float  # standard deviation of 1m log returns in a quiet regime
    minute_volume: float  # typical base-asset volume per minute

    @property
    def symbol(self) -> str:
        """The Binance market id, e.g. BTCUSDT."""
        return f"{self.base}{self.quote}"

    @property
    def price_decimals(self) -> int:
        """Decimals of a price rounded to the tick size."""
        return _decimals(self.tick_size)


KNOWN_PROFILES: dict[str, tuple[float, float, float, float, float]] = {
    # pair: (price level, tick size, step size, 1m volatility, base volume per minute)
    "BTC/USDT": (97_000.0, 0.01, 0.00001, 0.0005, 12.0),
    "ETH/USDT": (3_400.0, 0.01, 0.0001, 0.0006, 140.0),
    "SOL/USDT": (180.0, 0.01, 0.001, 0.0008, 1_600.0),
    "ADA/USDT": (0.75, 0.0001, 0.1, 0.0008, 350_000.0),
    "DOT/USDT": (6.5, 0.001, 0.01, 0.0008, 22_000.0),
    "BNB/USDT": (640.0, 0.01, 0.001, 0.0006, 300.0),
    "XRP/USDT": (2.2, 0.0001, 0.1, 0.0008, 250_000.0),
    "ETH/BTC": (0.035, 0.00001, 0.0001, 0.0005, 40.0),
}


def _decimals(step: float) -> int:
    """Number of decimals needed to write a step like 0.001 (3)."""
    return max(0, round(-math.log10(step))) if step < 1 else 0


def pair_key(pair: str) -> int:
    """A stable 32-bit number for a pair name (seeds its random streams)."""
    return zlib.crc32(pair.upper().encode())


def split_pair(pair: str) -> tuple[str, str]:
    """'BTC/USDT' -> ('BTC', 'USDT'); raises ValueError for anything else."""
    parts = pair.upper().split("/")
    if len(parts) != 2 or not all(p.isalnum() for p in parts):
        raise ValueError(f"not a spot pair like BTC/USDT: {pair!r}")
    return parts[0], parts[1]


def profile_for(pair: str, price_level: float | None = None) -> PairProfile:
    """The profile of a pair: a realistic one for known pairs, a derived one for others."""
    base, quote = split_pair(pair)
    name = f"{base}/{quote}"
    if name in KNOWN_PROFILES:
        level, tick, step, vol, volume = KNOWN_PROFILES[name]
    else:
        level = 1 + (pair_key(name) % 20_000) / 100  # 1 .. 201
        tick, step, vol = 10 ** (math.floor(math.log10(level)) - 4), 0.01, 0.0008
        volume = 50_000 / level
    if price_level is not None and price_level > 0:
        if not level / 10 < price_level < level * 10:
            tick = 10 ** (math.floor(math.log10(price_level)) - 5)
        level = float(price_level)
    return PairProfile(name, base, quote, level, tick, step, vol, volume)


@dataclass
class MinutePath:
    """Consecutive 1m candles starting at ``first_minute`` (Unix minutes)."""

    first_minute: int
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    def __len__(self) -> int:
        return len(self.close)


@dataclass
class CandleSeries:
    """Aggregated candles of one interval: open times (ms) and OHLCV columns."""

    open_time: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    quote_volume: np.ndarray

    def __len__(self) -> int:
        return len(self.open_time)

    def slice(self, start: int, stop: int) -> CandleSeries:
        """Rows ``start:stop`` as a new series."""
        return CandleSeries(*(getattr(self, f)[start:stop] for f in _SERIES_FIELDS))


_SERIES_FIELDS = ("open_time", "open", "high", "low", "close", "volume", "quote_volume")


def _empty_series() -> CandleSeries:
    return CandleSeries(*(np.empty(0) for _ in _SERIES_FIELDS))


def _concat(parts: list[CandleSeries]) -> CandleSeries:
    if not parts:
        return _empty_series()
    return CandleSeries(*(np.concatenate([getattr(p, f) for p in parts]) for f in _SERIES_FIELDS))


def _aggregate(path: MinutePath, group_minutes: int) -> CandleSeries:
    """Aggregate a group-aligned minute path into candles; the last group may be partial."""
    n = len(path)
    if n == 0:
        return _empty_series()
    starts = np.arange(0, n, group_minutes)
    ends = np.append(starts[1:], n)
    quote = path.volume * (path.open + path.high + path.low + path.close) / 4
    open_minutes = path.first_minute + starts
    return CandleSeries(
        open_time=open_minutes.astype(np.int64) * MINUTE_MS,
        open=path.open[starts],
        high=np.maximum.reduceat(path.high, starts),
        low=np.minimum.reduceat(path.low, starts),
        close=path.close[ends - 1],
        volume=np.add.reduceat(path.volume, starts),
        quote_volume=np.add.reduceat(quote, starts),
    )


@dataclass
class ReplaySeries:
    """A CSV of 1m candles played as a pair's path (see the module docstring)."""

    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    source: str = ""

    @classmethod
    def from_csv(cls, path: str | Path) -> ReplaySeries:
        """Read ``timestamp_ms,open,high,low,close,volume`` rows (header required)."""
        rows: list[list[float]] = []
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            missing = {"open", "high", "low", "close", "volume"} - set(reader.fieldnames or ())
            if missing:
                raise ValueError(f"{path}: missing columns {sorted(missing)}")
            for row in reader:
                rows.append([float(row[k]) for k in ("open", "high", "low", "close", "volume")])
        if len(rows) < 2:
            raise ValueError(f"{path}: needs at least two candles")
        data = np.asarray(rows, dtype=float)
        if (data[:, :4] <= 0).any():
            raise ValueError(f"{path}: prices must be positive")
        return cls(*(data[:, i].copy() for i in range(5)), source=str(path))

    def rescaled(self, last_close: float) -> ReplaySeries:
        """The same candles scaled so the final close equals ``last_close``."""
        factor = last_close / self.close[-1]
        return ReplaySeries(
            self.open * factor,
            self.high * factor,
            self.low * factor,
            self.close * factor,
            self.volume.copy(),
            self.source,
        )


@dataclass
class MarketSettings:
    """Inputs of the market: seed, pairs, optional replays and price levels, the clock."""

    seed: int = 42
    pairs: tuple[str, ...] = DEFAULT_PAIRS
    replays: dict[str, str | Path] = field(default_factory=dict)
    price_levels: dict[str, float] = field(default_factory=dict)
    anchor_ms: int | None = None  # replay alignment; defaults to the clock at creation
    clock: Callable[[], float] = time.time  # seconds since the Unix epoch


class MarketModel:
    """Prices, candles, tickers and order books of the simulated exchange."""

    def __init__(self, settings: MarketSettings | None = None) -> None:
        self.settings = settings or MarketSettings()
        self.seed = int(self.settings.seed)
        self.clock = self.settings.clock
        pairs = list(dict.fromkeys(p.upper() for p in self.settings.pairs))
        for pair in self.settings.replays:
            if pair.upper() not in pairs:
                pairs.append(pair.upper())
        levels = {k.upper(): v for k, v in self.settings.price_levels.items()}
        self.profiles: dict[str, PairProfile] = {p: profile_for(p, levels.get(p)) for p in pairs}
        self.by_symbol = {prof.symbol: prof for prof in self.profiles.values()}
        anchor_ms = self.settings.anchor_ms
        if anchor_ms is None:
            anchor_ms = int(self.clock() * 1000)
        self.anchor_minute = anchor_ms // MINUTE_MS
        self.replays: dict[str, ReplaySeries] = {}
        for pair, source in self.settings.replays.items():
            series = ReplaySeries.from_csv(source)
            self.replays[pair.upper()] = series.rescaled(self.profiles[pair.upper()].price_level)
        self._lock = threading.RLock()
        self._chunks: OrderedDict[tuple[str, int], MinutePath] = OrderedDict()
        self._draws: OrderedDict[tuple[str, int], dict[str, np.ndarray]] = OrderedDict()
        self._day_candles: OrderedDict[tuple[str, int, int], CandleSeries] = OrderedDict()

    # ------------------------------------------------------------------ time

    def now_ms(self) -> int:
        """The market's current time in milliseconds."""
        return int(self.clock() * 1000)

    # ------------------------------------------------------------------ the 1m path

    def _anchor(self, pair: str, minutes: np.ndarray) -> np.ndarray:
        """Slow deterministic log-price swings around the pair's level (hours to weeks)."""
        rng = np.random.default_rng([self.seed, pair_key(pair), 7919])
        phases = rng.uniform(0, 2 * np.pi, 4)
        t = minutes.astype(float)
        swing = (
            0.006 * np.sin(2 * np.pi * t / 377 + phases[0])
            + 0.02 * np.sin(2 * np.pi * t / 2_441 + phases[1])
            + 0.05 * np.sin(2 * np.pi * t / 12_967 + phases[2])
            + 0.09 * np.sin(2 * np.pi * t / 53_899 + phases[3])
        )
        return math.log(self.profiles[pair].price_level) + swing

    def _day_draws(self, pair: str, day: int) -> dict[str, np.ndarray]:
        """The random draws of one pair-day: innovations of the fast part, wicks, volume noise.

        The drift draws a zigzag: each trend leg runs from the previous leg's target to a new one
        on the other side of the anchor, so every leg is a real reversal. Between legs there may be
        a ranging swing (fast oscillations around the level) or a volatile chop (no direction,
        two volatilities of noise). Noise of LEG_NOISE volatilities per minute comes on top.
        """
        prof = self.profiles[pair]
        sigma = prof.volatility
        rng = np.random.default_rng([self.seed, pair_key(pair), day])
        drift = np.zeros(DAY_MINUTES)
        scale = np.full(DAY_MINUTES, LEG_NOISE * sigma)
        position = 0
        target = float(rng.uniform(-1, 1)) * LEG_TARGET[1]
        low, high = LEG_MINUTES
        while position < DAY_MINUTES:
            pick = rng.random()
            length = int(rng.integers(low, high + 1))
            if pick < TREND_CHANCE:  # a leg to a new target on the other side
                new_target = -np.sign(target or 1.0) * float(rng.uniform(*LEG_TARGET))
                move = new_target - target
                steepness = float(rng.uniform(*LEG_STEEPNESS))
                length = min(max(math.ceil(abs(move) / steepness), low), high)
                length = max(length, math.ceil(abs(move) / LEG_MAX_DRIFT))
                stop = min(position + length, DAY_MINUTES)
                drift[position:stop] = move / length * sigma
                target = new_target
            elif pick < TREND_CHANCE + SWING_CHANCE:  # ranging swing around the current level
                stop = min(position + length, DAY_MINUTES)
                period = float(rng.uniform(3.5, 6.0))
                wave = np.sin(2 * np.pi * np.arange(stop - position) / period)
                drift[position:stop] = 2.0 * sigma * wave
                scale[position:stop] = 0.6 * sigma
            else:  # volatile chop
                stop = min(position + length, DAY_MINUTES)
                scale[position:stop] = 2.0 * sigma
            position = stop
        shocks = rng.standard_normal(DAY_MINUTES)
        wicks = np.abs(rng.standard_normal((2, DAY_MINUTES)))
        volume_noise = rng.standard_normal(DAY_MINUTES)
        return {
            "innovation": drift + scale * shocks,
            "scale": scale,
            "wicks": wicks,
            "volume_noise": volume_noise,
        }

    def _cached_draws(self, pair: str, day: int) -> dict[str, np.ndarray]:
        """``_day_draws`` with a small memory: consecutive days share one day's draws."""
        key = (pair, day)
        with self._lock:
            draws = self._draws.get(key)
            if draws is None:
                draws = self._draws[key] = self._day_draws(pair, day)
                while len(self._draws) > 8 * max(1, len(self.profiles)):
                    self._draws.popitem(last=False)
            return draws

    def _synthetic_day(self, pair: str, day: int) -> MinutePath:
        prof = self.profiles[pair]
        before = self._cached_draws(pair, day - 1)
        draws = self._cached_draws(pair, day)
        innovations = np.concatenate([before["innovation"], draws["innovation"]])
        fast = lfilter([1.0], [1.0, -(1.0 - REVERSION_PER_MINUTE)], innovations)
        minutes = np.arange(day * DAY_MINUTES - 1, (day + 1) * DAY_MINUTES)
        # log close of the last minute of day-1 and of every minute of this day
        log_close = self._anchor(pair, minutes) + fast[DAY_MINUTES - 1 :]
        closes = np.exp(log_close)
        close = closes[1:]
        open_ = closes[:-1]
        scale = draws["scale"]
        top = np.maximum(open_, close) * np.exp(0.5 * scale * draws["wicks"][0])
        bottom = np.minimum(open_, close) * np.exp(-0.5 * scale * draws["wicks"][1])
        moves = np.abs(np.log(close / open_)) / prof.volatility
        volume = prof.minute_volume * np.exp(0.35 * draws["volume_noise"]) * (0.6 + 0.5 * moves)
        tick = prof.tick_size
        return MinutePath(
            first_minute=day * DAY_MINUTES,
            open=_to_tick(open_, tick),
            high=_to_tick(top, tick),
            low=np.maximum(_to_tick(bottom, tick), tick),
            close=_to_tick(close, tick),
            volume=np.round(volume, _decimals(prof.step_size)),
        )

    def _replay_day(self, pair: str, day: int) -> MinutePath:
        series = self.replays[pair]
        n = len(series.close)
        minutes = np.arange(day * DAY_MINUTES, (day + 1) * DAY_MINUTES)
        # the file's last row is the minute before the anchor; ping-pong around it
        k = np.mod(minutes - (self.anchor_minute - n), 2 * n)
        forward = k < n
        rows = np.where(forward, k, 2 * n - 1 - k)
        open_ = np.where(forward, series.open[rows], series.close[rows])
        close = np.where(forward, series.close[rows], series.open[rows])
        high = np.maximum(series.high[rows], np.maximum(open_, close))
        low = np.minimum(series.low[rows], np.minimum(open_, close))
        tick = self.profiles[pair].tick_size
        return MinutePath(
            first_minute=day * DAY_MINUTES,
            open=_to_tick(open_, tick),
            high=_to_tick(high, tick),
            low=np.maximum(_to_tick(low, tick), tick),
            close=_to_tick(close, tick),
            volume=series.volume[rows].copy(),
        )

    def day_path(self, pair: str, day: int) -> MinutePath:
        """All 1440 one-minute candles of a UTC day (future minutes included; cached)."""
        key = (pair, day)
        with self._lock:
            chunk = self._chunks.get(key)
            if chunk is not None:
                self._chunks.move_to_end(key)
                return chunk
            if pair in self.replays:
                chunk = self._replay_day(pair, day)
            else:
                chunk = self._synthetic_day(pair, day)
            self._chunks[key] = chunk
            while len(self._chunks) > 64 * max(1, len(self.profiles)):
                self._chunks.popitem(last=False)
            return chunk

    def minute_path(self, pair: str, first_minute: int, stop_minute: int) -> MinutePath:
        """Final 1m candles for minutes ``[first_minute, stop_minute)`` (no partial handling)."""
        first_minute = max(first_minute, EPOCH_MINUTE)
        if stop_minute <= first_minute:
            empty = np.empty(0)
            return MinutePath(first_minute, empty, empty, empty, empty, empty)
        parts = []
        for day in range(first_minute // DAY_MINUTES, (stop_minute - 1) // DAY_MINUTES + 1):
            chunk = self.day_path(pair, day)
            lo = max(first_minute - chunk.first_minute, 0)
            hi = min(stop_minute - chunk.first_minute, DAY_MINUTES)
            parts.append((chunk, lo, hi))
        return MinutePath(
            first_minute,
            *(
                np.concatenate([getattr(c, f)[lo:hi] for c, lo, hi in parts])
                for f in ("open", "high", "low", "close", "volume")
            ),
        )

    def _partial_minute(self, pair: str, now_ms: int) -> MinutePath:
        """The current minute as seen at ``now_ms``: the close walks toward its final value."""
        minute = now_ms // MINUTE_MS
        final = self.minute_path(pair, minute, minute + 1)
        seconds = (now_ms % MINUTE_MS) / 1000
        fraction = (seconds // PARTIAL_STEP_SECONDS) * PARTIAL_STEP_SECONDS / 60
        tick = self.profiles[pair].tick_size
        o, h, low, c = final.open[0], final.high[0], final.low[0], final.close[0]
        close = float(_to_tick(np.array([o + (c - o) * fraction]), tick)[0])
        high = max(o, close) + (h - max(o, c)) * fraction
        low_ = min(o, close) - (min(o, c) - low) * fraction
        return MinutePath(
            minute,
            np.array([o]),
            _to_tick(np.array([max(high, o, close)]), tick),
            _to_tick(np.array([min(low_, o, close)]), tick),
            np.array([close]),
            np.array([final.volume[0] * fraction]),
        )

    def path_until(self, pair: str, first_minute: int, now_ms: int) -> MinutePath:
        """1m candles from ``first_minute`` up to and including the partial minute of ``now_ms``."""
        minute = now_ms // MINUTE_MS
        done = self.minute_path(pair, first_minute, minute)
        if minute < max(first_minute, EPOCH_MINUTE):
            return done
        current = self._partial_minute(pair, now_ms)
        return MinutePath(
            done.first_minute if len(done) else minute,
            *(
                np.concatenate([getattr(done, f), getattr(current, f)])
                for f in ("open", "high", "low", "close", "volume")
            ),
        )

    # ------------------------------------------------------------------ candles

    def _complete_day_candles(self, pair: str, day: int, minutes: int) -> CandleSeries:
        """Candles of ``minutes`` (dividing a day) for a finished day (cached)."""
        key = (pair, day, minutes)
        with self._lock:
            cached = self._day_candles.get(key)
            if cached is not None:
                self._day_candles.move_to_end(key)
                return cached
            series = _aggregate(self.day_path(pair, day), minutes)
            self._day_candles[key] = series
            while len(self._day_candles) > 4096:
                self._day_candles.popitem(last=False)
            return series

    def _intraday_candles(
        self, pair: str, minutes: int, first_day: int, last_day: int, now_ms: int
    ) -> CandleSeries:
        today = now_ms // MINUTE_MS // DAY_MINUTES
        parts = []
        for day in range(max(first_day, EPOCH_DAY), min(last_day, today) + 1):
            if day < today:
                parts.append(self._complete_day_candles(pair, day, minutes))
            else:
                parts.append(_aggregate(self.path_until(pair, day * DAY_MINUTES, now_ms), minutes))
        return _concat(parts)

    def candles(
        self,
        pair: str,
        interval: str,
        *,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int = 500,
        now_ms: int | None = None,
    ) -> CandleSeries:
        """Candles like Binance klines: open time in [start, end], at most ``limit``, oldest first.

        Without ``start_ms`` the newest ``limit`` candles up to ``end_ms`` (or now) are returned.
        The candle holding ``now_ms`` is partial; later candles do not exist yet.
        """
        pair = pair.upper()
        minutes = INTERVAL_MINUTES[interval]
        now_ms = self.now_ms() if now_ms is None else now_ms
        span_ms = minutes * MINUTE_MS
        current_open = _floor_open(now_ms, minutes)
        last_open = current_open
        if end_ms is not None:
            last_open = min(current_open, _floor_open(end_ms, minutes))
        if start_ms is not None:
            first_open = _ceil_open(start_ms, minutes)
            last_open = min(last_open, first_open + (limit - 1) * span_ms)
        else:
            first_open = last_open - (limit - 1) * span_ms
        first_open = max(first_open, _ceil_open(EPOCH_MINUTE * MINUTE_MS, minutes))
        if last_open < first_open:
            return _empty_series()
        if minutes <= DAY_MINUTES:
            series = self._intraday_candles(
                pair,
                minutes,
                first_open // MINUTE_MS // DAY_MINUTES,
                last_open // MINUTE_MS // DAY_MINUTES,
                now_ms,
            )
        else:
            first_day = first_open // MINUTE_MS // DAY_MINUTES
            last_day = (last_open + span_ms) // MINUTE_MS // DAY_MINUTES - 1
            days = self._intraday_candles(pair, DAY_MINUTES, first_day, last_day, now_ms)
            series = _regroup_days(days, minutes // DAY_MINUTES)
        keep = (series.open_time >= first_open) & (series.open_time <= last_open)
        index = np.flatnonzero(keep)
        if len(index) == 0:
            return _empty_series()
        return series.slice(int(index[0]), int(index[-1]) + 1)

    # ------------------------------------------------------------------ quotes

    def last_price(self, pair: str, now_ms: int | None = None) -> float:
        """The last traded price (close of the partial current minute)."""
        now_ms = self.now_ms() if now_ms is None else now_ms
        return float(self._partial_minute(pair.upper(), now_ms).close[0])

    def quote(self, pair: str, now_ms: int | None = None) -> dict[str, float]:
        """Best bid/ask and last price; the bid is the last price, the ask one spread above."""
        prof = self.profiles[pair.upper()]
        now_ms = self.now_ms() if now_ms is None else now_ms
        last = self.last_price(pair, now_ms)
        spread = self.spread(prof, last)
        return {
            "last": last,
            "bid": last,
            "ask": round(last + spread, prof.price_decimals),
            "bid_qty": self._level_quantity(prof, now_ms, 0, "bid"),
            "ask_qty": self._level_quantity(prof, now_ms, 0, "ask"),
        }

    @staticmethod
    def spread(prof: PairProfile, price: float) -> float:
        """Quoted spread: about 0.2 bp of the price, at least one tick, a whole number of ticks."""
        ticks = max(1, round(price * 0.00002 / prof.tick_size))
        return ticks * prof.tick_size

    def _level_quantity(
        self, prof: PairProfile, now_ms: int | None, level: int, side: str
    ) -> float:
        now_ms = self.now_ms() if now_ms is None else now_ms
        bucket = now_ms // (PARTIAL_STEP_SECONDS * 1000)
        rng = np.random.default_rng([self.seed, pair_key(prof.pair), bucket, level, side == "ask"])
        notional_minute = prof.minute_volume * 0.08 * (1 + level * 0.35)
        qty = notional_minute * float(rng.lognormal(0, 0.5))
        return round(max(qty, prof.step_size), _decimals(prof.step_size))

    def order_book(self, pair: str, limit: int, now_ms: int | None = None) -> dict:
        """A ``limit``-level book around the current quote, deterministic per 5-second step."""
        now_ms = self.now_ms() if now_ms is None else now_ms
        prof = self.profiles[pair.upper()]
        q = self.quote(pair, now_ms)
        step = max(prof.tick_size, self.spread(prof, q["last"]))
        decimals = prof.price_decimals
        bids, asks = [], []
        for level in range(limit):
            bid = round(q["bid"] - level * step, decimals)
            if bid > 0:
                bids.append((bid, self._level_quantity(prof, now_ms, level, "bid")))
            asks.append(
                (
                    round(q["ask"] + level * step, decimals),
                    self._level_quantity(prof, now_ms, level, "ask"),
                )
            )
        return {
            "update_id": now_ms // (PARTIAL_STEP_SECONDS * 1000),
            "bids": bids,
            "asks": asks,
        }

    def rolling_day(self, pair: str, now_ms: int | None = None) -> dict[str, float]:
        """The 24-hour rolling window that Binance's ticker/24hr reports."""
        now_ms = self.now_ms() if now_ms is None else now_ms
        minute = now_ms // MINUTE_MS
        path = self.path_until(pair.upper(), minute - DAY_MINUTES + 1, now_ms)
        volume = float(path.volume.sum())
        quote = float((path.volume * (path.high + path.low + path.close) / 3).sum())
        return {
            "open": float(path.open[0]),
            "high": float(path.high.max()),
            "low": float(path.low.min()),
            "last": float(path.close[-1]),
            "prev_close": float(path.open[0]),
            "volume": volume,
            "quote_volume": quote,
            "open_time": now_ms - DAY_MINUTES * MINUTE_MS,
            "count": int(len(path) * 37),
        }


def _to_tick(values: np.ndarray, tick: float) -> np.ndarray:
    """Round prices to the tick size (and to its decimals, so they print cleanly)."""
    return np.round(np.round(values / tick) * tick, _decimals(tick))


def _floor_open(ms: int, minutes: int) -> int:
    """Open time of the candle of ``minutes`` that holds ``ms`` (weeks open on Monday)."""
    offset = WEEK_OFFSET_DAYS * DAY_MINUTES if minutes == 7 * DAY_MINUTES else 0
    minute = ms // MINUTE_MS - offset
    return ((minute // minutes) * minutes + offset) * MINUTE_MS


def _ceil_open(ms: int, minutes: int) -> int:
    """Open time of the first candle opening at or after ``ms``."""
    floor = _floor_open(ms, minutes)
    return floor if floor == ms else floor + minutes * MINUTE_MS


def _regroup_days(days: CandleSeries, n_days: int) -> CandleSeries:
    """Group daily candles into 3d (epoch-aligned) or 1w (Monday) candles."""
    if len(days) == 0:
        return days
    offset = WEEK_OFFSET_DAYS if n_days == 7 else 0
    day_index = days.open_time // MINUTE_MS // DAY_MINUTES - offset
    group = day_index // n_days
    starts = np.flatnonzero(np.diff(group, prepend=group[0] - 1))
    ends = np.append(starts[1:], len(days))
    return CandleSeries(
        open_time=((group[starts] * n_days + offset) * DAY_MINUTES * MINUTE_MS).astype(np.int64),
        open=days.open[starts],
        high=np.maximum.reduceat(days.high, starts),
        low=np.minimum.reduceat(days.low, starts),
        close=days.close[ends - 1],
        volume=np.add.reduceat(days.volume, starts),
        quote_volume=np.add.reduceat(days.quote_volume, starts),
    )
