"""Signal outcomes and quality: every graded signal scored by what the market did next.

Outcome of a signal that has a pair, an action, a rate and a time (mixin signals and entry/exit
orders; status messages have none): the direction-aware return after 1, 4 and 24 candles of its
strategy's timeframe — (close − rate) / rate for `enter_long` / `exit_short`, the negative for
`exit_long` / `enter_short` (right when the price falls) — and the maximum favourable and
adverse excursion (high/low) within 24 candles. Candles come from the exchange's public klines
(the market simulator here), fetched per (pair, timeframe) over the span of the signals that
need them, so the cost grows with pairs and time, not with signals. A pair the exchange does
not list, or a gap in the candles, leaves the outcome `unavailable` with the reason — never a
made-up number. A horizon still ahead leaves the outcome `pending`; the periodic job comes back.

Quality (per strategy × strength level, and by strength decile): count, hit rate (return > 0),
mean and median return per horizon, and the information coefficient — Spearman's rank
correlation of `strength_raw` with the 4-candle return — with its t-statistic.
"""

from __future__ import annotations

import logging
import math
import statistics
from collections import defaultdict
from datetime import UTC, datetime

import requests
from sqlalchemy import or_, select

from app.clock import utcnow
from app.errors import AppError
from app.extensions import db
from app.runtime.launcher import simulator_url
from app.signals.ingest import SIGNAL_ACTIONS
from app.signals.models import Signal, SignalOutcome
from app.simulator.market import INTERVAL_MINUTES
from app.strategies.models import Strategy

log = logging.getLogger(__name__)

HORIZONS = (1, 4, 24)
FALLING = ("exit_long", "enter_short")
BATCH_SIGNALS = 2000
MAX_KLINES = 1000  # Binance's limit per klines request


class OutcomeError(AppError):
    status = 422


def _symbol(pair: str) -> str:
    return pair.split(":")[0].replace("/", "").upper()


def _ms(value: datetime) -> int:
    return int(value.replace(tzinfo=UTC).timestamp() * 1000)


class Klines:
    """Closed candles of one (pair, timeframe) fetched in ranges: {open time ms: (o,h,l,c)}."""

    def __init__(self, session: requests.Session, pair: str, timeframe: str):
        self.session, self.pair, self.timeframe = session, pair, timeframe
        self.step = INTERVAL_MINUTES[timeframe] * 60_000
        self.candles: dict[int, tuple[float, float, float, float]] = {}
        self.error = ""
        self.requests = 0

    def load(self, start_ms: int, end_ms: int) -> None:
        """Fetch [start, end] in pages of MAX_KLINES."""
        cursor = start_ms - start_ms % self.step
        while cursor <= end_ms and not self.error:
            try:
                answer = self.session.get(f"{simulator_url()}/api/v3/klines", params={
                    "symbol": _symbol(self.pair), "interval": self.timeframe,
                    "startTime": cursor, "endTime": end_ms, "limit": MAX_KLINES}, timeout=30)
            except requests.RequestException as exc:
                self.error = f"the exchange did not answer ({type(exc).__name__})"
                return
            self.requests += 1
            if answer.status_code != 200:
                body = answer.text[:200]
                self.error = (f"{self.pair} is not listed on the exchange" if "-1121" in body
                              else f"the exchange answered {answer.status_code}: {body}")
                return
            rows = answer.json()
            if not rows:
                return
            for row in rows:
                self.candles[int(row[0])] = (float(row[1]), float(row[2]), float(row[3]),
                                             float(row[4]))
            cursor = int(rows[-1][0]) + self.step


def _signal_time(signal: Signal) -> datetime:
    return signal.open_date or signal.received_at


def score(signal: Signal, timeframe: str, klines: Klines, now_ms: int) -> dict:
    """The outcome columns of one signal from its pair's candles."""
    step = klines.step
    if klines.error:
        return {"status": "unavailable", "reason": klines.error}
    start = _ms(_signal_time(signal))
    start -= start % step  # the candle the signal belongs to
    sign = -1.0 if signal.action in FALLING else 1.0
    rate = float(signal.rate)
    values: dict = {"base_price": rate, "status": "done", "reason": ""}
    for horizon in HORIZONS:
        at = start + horizon * step
        if at + step > now_ms:  # that candle has not closed yet
            values["status"] = "pending"
            continue
        candle = klines.candles.get(at)
        if candle is None:
            when = datetime.fromtimestamp(at / 1000, UTC)
            return {"status": "unavailable",
                    "reason": f"no {timeframe} candle at {when:%Y-%m-%d %H:%M} (a gap)"}
        values[f"return_{horizon}"] = sign * (candle[3] - rate) / rate
    window = [klines.candles.get(start + k * step) for k in range(1, 25)]
    closed = [c for k, c in enumerate(window, start=1) if start + k * step + step <= now_ms]
    if closed and all(c is not None for c in closed):
        highs = [(c[1] - rate) / rate for c in closed]
        lows = [(c[2] - rate) / rate for c in closed]
        favourable, adverse = (max(highs), min(lows)) if sign > 0 else (-min(lows), -max(highs))
        values["max_favourable"], values["max_adverse"] = favourable, adverse
    return values


def eligible():
    """Signals that can have an outcome and have none final yet."""
    return (select(Signal).outerjoin(SignalOutcome, SignalOutcome.signal_id == Signal.id)
            .where(Signal.priority != "IGNORE", Signal.pair != "",
                   Signal.action.in_(SIGNAL_ACTIONS), Signal.rate.is_not(None),
                   Signal.rate > 0,
                   or_(SignalOutcome.signal_id.is_(None), SignalOutcome.status == "pending")))


def compute(limit: int | None = None, now: datetime | None = None, after_id: int = 0) -> dict:
    """Score every signal that needs it (up to `limit`, ids above `after_id`); counts, upstream
    requests and the last id looked at."""
    now = now or utcnow()
    now_ms = _ms(now)
    timeframes = dict(db.session.execute(select(Strategy.id, Strategy.timeframe)).all())
    session = requests.Session()
    summary = {"done": 0, "pending": 0, "unavailable": 0, "requests": 0, "last_id": after_id}
    query = eligible().where(Signal.id > after_id).order_by(Signal.id)
    if limit:
        query = query.limit(limit)
    signals = list(db.session.scalars(query))
    if signals:
        summary["last_id"] = signals[-1].id
    groups: dict[tuple[str, str], list[Signal]] = defaultdict(list)
    for signal in signals:
        timeframe = timeframes.get(signal.strategy_id) or "1m"
        if timeframe not in INTERVAL_MINUTES:
            continue
        groups[(signal.pair, timeframe)].append(signal)
    for (pair, timeframe), members in groups.items():
        klines = Klines(session, pair, timeframe)
        times = [_ms(_signal_time(s)) for s in members]
        klines.load(min(times), min(max(times) + 25 * klines.step, now_ms))
        summary["requests"] += klines.requests
        for number, signal in enumerate(members, start=1):
            values = score(signal, timeframe, klines, now_ms)
            row = db.session.get(SignalOutcome, signal.id) or SignalOutcome(
                signal_id=signal.id, strategy_id=signal.strategy_id)
            for key in ("status", "reason", "base_price", "return_1", "return_4", "return_24",
                        "max_favourable", "max_adverse"):
                setattr(row, key, values.get(key))
            row.reason = row.reason or ""
            row.computed_at = now
            db.session.add(row)
            summary[row.status] += 1
            if number % BATCH_SIGNALS == 0:
                db.session.commit()
        db.session.commit()
    return summary


def backfill(batch: int = 50_000) -> dict:
    """Score every old signal, in batches of ids; the totals."""
    total = {"done": 0, "pending": 0, "unavailable": 0, "requests": 0}
    last = 0
    while True:
        result = compute(limit=batch, after_id=last)
        for key in total:
            total[key] += result[key]
        if result["last_id"] == last:
            return total
        last = result["last_id"]


# ---------------------------------------------------------------------------------- quality


def _ranks(values: list[float]) -> list[float]:
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def information_coefficient(strengths: list[float], returns: list[float]) -> dict:
    """Spearman's rank correlation and its t-statistic ({"ic": None} below 3 pairs)."""
    n = len(strengths)
    if n < 3:
        return {"ic": None, "t": None, "n": n}
    a, b = _ranks(strengths), _ranks(returns)
    ma, mb = statistics.fmean(a), statistics.fmean(b)
    cov = sum((x - ma) * (y - mb) for x, y in zip(a, b, strict=True))
    var = math.sqrt(sum((x - ma) ** 2 for x in a) * sum((y - mb) ** 2 for y in b))
    if var == 0:
        return {"ic": None, "t": None, "n": n}
    ic = cov / var
    t = ic * math.sqrt((n - 2) / (1 - ic * ic)) if abs(ic) < 1 else math.copysign(math.inf, ic)
    return {"ic": ic, "t": t if math.isfinite(t) else None, "n": n}


def _stats(rows: list[tuple], horizon: int) -> dict:
    values = [r[2] for r in rows if r[2] is not None]
    if not values:
        return {"count": 0, "hit_rate": None, "mean": None, "median": None}
    return {"count": len(values), "hit_rate": sum(v > 0 for v in values) / len(values),
            "mean": statistics.fmean(values), "median": statistics.median(values)}


def quality(strategy_id: int | None = None, horizon: int = 4) -> dict:
    """Quality of the scored signals (of one strategy, or all): by level, by decile, IC."""
    if horizon not in HORIZONS:
        raise OutcomeError(f"horizon must be one of {HORIZONS}, got {horizon!r}", status=400,
                           field="horizon")
    column = getattr(SignalOutcome, f"return_{horizon}")
    query = (select(Signal.strength_level, Signal.strength_raw, column, Signal.strategy_id)
             .join(SignalOutcome, SignalOutcome.signal_id == Signal.id)
             .where(column.is_not(None)))
    if strategy_id is not None:
        query = query.where(Signal.strategy_id == strategy_id)
    rows = db.session.execute(query).all()
    by_level = {level: _stats([r for r in rows if r[0] == level], horizon)
                for level in ("strong", "medium", "weak")}
    graded = sorted((r for r in rows if r[1] is not None), key=lambda r: r[1])
    deciles = []
    if graded:
        size = len(graded)
        for d in range(10):
            part = graded[d * size // 10:(d + 1) * size // 10]
            if part:
                deciles.append({"decile": d + 1, "from": part[0][1], "to": part[-1][1],
                                **_stats(part, horizon)})
    ic = information_coefficient([r[1] for r in graded], [r[2] for r in graded])
    return {"strategy_id": strategy_id, "horizon": horizon, "signals": len(rows),
            "by_level": by_level, "by_decile": deciles, "information_coefficient": ic}
