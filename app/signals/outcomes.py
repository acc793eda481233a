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

import contextlib
import json
import logging
import math
import statistics
from collections import defaultdict
from datetime import UTC, datetime

import requests
from sqlalchemy import case, func, insert, or_, select, update

from app.clock import utcnow
from app.errors import AppError
from app.extensions import db, redis_store
from app.runtime.control import record_event
from app.runtime.launcher import relay_url, simulator_url
from app.signals.ingest import SIGNAL_ACTIONS
from app.signals.models import Signal, SignalOutcome
from app.simulator.market import INTERVAL_MINUTES
from app.strategies.models import Strategy
from app.system.settings import current_settings

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
        self.span: tuple[int, int] | None = None  # what ensure() has loaded

    def ensure(self, start_ms: int, end_ms: int) -> None:
        """Load [start, end] unless it is loaded already (only the missing ends are asked)."""
        start_ms -= start_ms % self.step
        if self.span is None:
            self.load(start_ms, end_ms)
            self.span = (start_ms, end_ms)
            return
        low, high = self.span
        if start_ms < low:
            self.load(start_ms, low - self.step)
        if end_ms > high:
            self.load(high + self.step, end_ms)
        self.span = (min(low, start_ms), max(high, end_ms))

    def load(self, start_ms: int, end_ms: int) -> None:
        """Fetch [start, end] in pages of MAX_KLINES."""
        cursor = start_ms - start_ms % self.step
        while cursor <= end_ms and not self.error:
            try:
                answer = self.session.get(f"{market_data_url()}/api/v3/klines", params={
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


def market_data_url() -> str:
    """Where candles come from: this host's exchange relay when it is on (one rate budget with
    the bots), else the simulator itself."""
    relayed = relay_url("simulator")
    return relayed or simulator_url()


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


def compute(limit: int | None = None, now: datetime | None = None, after_id: int = 0,
            candles: dict | None = None) -> dict:
    """Score every signal that needs it (up to `limit`, ids above `after_id`); counts, upstream
    requests and the last id looked at. Rows are read and written in bulk (one query per
    BATCH_SIGNALS), so a backfill of millions is bound by the candles, not by round trips;
    `candles` ({(pair, timeframe): Klines}) keeps candles between calls (the backfill's)."""
    now = now or utcnow()
    now_ms = _ms(now)
    timeframes = dict(db.session.execute(select(Strategy.id, Strategy.timeframe)).all())
    session = requests.Session()
    summary = {"done": 0, "pending": 0, "unavailable": 0, "requests": 0, "last_id": after_id}
    query = (eligible().with_only_columns(
        Signal.id, Signal.strategy_id, Signal.pair, Signal.action, Signal.rate,
        Signal.open_date, Signal.received_at, SignalOutcome.signal_id.label("scored"))
        .where(Signal.id > after_id).order_by(Signal.id))
    if limit:
        query = query.limit(limit)
    signals = db.session.execute(query).all()
    if signals:
        summary["last_id"] = signals[-1].id
    summary["strategy_ids"] = sorted({s.strategy_id for s in signals})
    groups: dict[tuple[str, str], list] = defaultdict(list)
    for signal in signals:
        timeframe = timeframes.get(signal.strategy_id) or "1m"
        if timeframe not in INTERVAL_MINUTES:
            continue
        groups[(signal.pair, timeframe)].append(signal)
    columns = ("status", "reason", "base_price", "return_1", "return_4", "return_24",
               "max_favourable", "max_adverse")
    inserts: list[dict] = []
    updates: list[dict] = []

    def flush() -> None:
        if inserts:
            db.session.execute(insert(SignalOutcome), inserts)
        if updates:
            db.session.execute(update(SignalOutcome), updates)
        db.session.commit()
        inserts.clear()
        updates.clear()

    candles = {} if candles is None else candles
    for (pair, timeframe), members in groups.items():
        klines = candles.get((pair, timeframe))
        if klines is None:
            klines = candles[(pair, timeframe)] = Klines(session, pair, timeframe)
        before = klines.requests
        times = [_ms(_signal_time(s)) for s in members]
        klines.ensure(min(times), min(max(times) + 25 * klines.step, now_ms))
        summary["requests"] += klines.requests - before
        for signal in members:
            values = score(signal, timeframe, klines, now_ms)
            row = {key: values.get(key) for key in columns}
            row["reason"] = row["reason"] or ""
            row.update(signal_id=signal.id, computed_at=now)
            if signal.scored is None:
                inserts.append({**row, "strategy_id": signal.strategy_id})
            else:
                updates.append(row)
            summary[row["status"]] += 1
            if len(inserts) + len(updates) >= BATCH_SIGNALS:
                flush()
    flush()
    return summary


def backfill(batch: int = 50_000) -> dict:
    """Score every old signal, in batches of ids; the totals."""
    total = {"done": 0, "pending": 0, "unavailable": 0, "requests": 0}
    last = 0
    candles: dict = {}  # each pair's candles are fetched once for the whole backfill
    while True:
        result = compute(limit=batch, after_id=last, candles=candles)
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


QUALITY_KEY = "btcw:signals:quality:{scope}:{horizon}"
QUALITY_TTL = 600


def quality(strategy_id: int | None = None, horizon: int = 4, fresh: bool = False) -> dict:
    """quality_now(), as the outcome job last stored it (it recomputes after each run that
    scored signals), else computed now and stored; `computed_at` says when."""
    if horizon not in HORIZONS:
        raise OutcomeError(f"horizon must be one of {HORIZONS}, got {horizon!r}", status=400,
                           field="horizon")
    key = QUALITY_KEY.format(scope=strategy_id if strategy_id is not None else "all",
                             horizon=horizon)
    return _stored(key, lambda: quality_now(strategy_id, horizon), fresh)


def _stored(key: str, compute, fresh: bool) -> dict:
    """`compute()`'s report as stored in Redis under `key` (QUALITY_TTL), else computed now and
    stored, with `computed_at`."""
    if not fresh:
        with contextlib.suppress(Exception):
            raw = redis_store.client.get(key)
            if raw:
                return json.loads(raw)
    report = compute()
    report["computed_at"] = utcnow().isoformat() + "Z"
    with contextlib.suppress(Exception):
        redis_store.client.set(key, json.dumps(report), ex=QUALITY_TTL)
    return report


def refresh_quality(strategy_ids: set[int]) -> None:
    """Recompute the stored quality, overview and calibration suggestions of these strategies
    and of all (the outcome job, after a run that scored signals)."""
    horizon_cfg = current_settings().system.signals.calibration.horizon
    for horizon in HORIZONS:
        quality(None, horizon, fresh=True)
        quality_overview(horizon, fresh=True)
        for strategy_id in strategy_ids:
            quality(strategy_id, horizon, fresh=True)
    for strategy_id in strategy_ids:
        with contextlib.suppress(OutcomeError):
            calibration(strategy_id, horizon_cfg, fresh=True)


def quality_now(strategy_id: int | None = None, horizon: int = 4) -> dict:
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


# ------------------------------------------------------------------------- calibration

LEVEL_ORDER = ("strong", "medium", "weak")


def wilson(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a hit rate."""
    if n == 0:
        return 0.0, 1.0
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def suggest_thresholds(pairs: list[tuple[float, float]], targets: dict[str, float],
                       min_signals: int, min_per_level: int) -> dict:
    """Cut-points from scored (strength_raw, return) pairs: for each level the lowest strength
    c such that the signals at or above c were right (return > 0) at least `targets[level]` of
    the time, with at least `min_per_level` of them; strong ≥ medium ≥ weak. A level no
    cut-point reaches gets none, with the reason."""
    n = len(pairs)
    if n < min_signals:
        return {"n": n, "levels": {}, "reason": f"only {n} scored signals with a strength; "
                f"a suggestion needs {min_signals} (system.signals.calibration.min_signals)"}
    ordered = sorted(pairs, key=lambda p: p[0], reverse=True)
    # Going down the strengths: hits and count of the signals at or above each distinct value.
    cuts = []  # (strength, count at or above, hits at or above)
    hits = 0
    for index, (strength, ret) in enumerate(ordered):
        hits += ret > 0
        last = index + 1 == n or ordered[index + 1][0] != strength
        if last:
            cuts.append((strength, index + 1, hits))
    levels: dict[str, dict] = {}
    ceiling = math.inf
    for level in LEVEL_ORDER:
        target = targets[level] / 100
        # Lowest strength meeting the target = the last qualifying cut going down.
        best = None
        for strength, count, hit in cuts:
            if strength > ceiling or count < min_per_level:
                continue
            if hit / count >= target:
                best = (strength, count, hit)
        if best is None:
            levels[level] = {"threshold": None, "target": targets[level],
                             "reason": f"no cut-point reaches {targets[level]} % right with "
                                       f"{min_per_level}+ signals"}
            continue
        strength, count, hit = best
        low, high = wilson(hit, count)
        levels[level] = {"threshold": round(strength, 6), "target": targets[level], "n": count,
                         "hit_rate": hit / count, "ci_low": low, "ci_high": high}
        ceiling = strength
    return {"n": n, "levels": levels, "reason": ""}


CALIBRATION_KEY = "btcw:signals:calibration:{strategy_id}:{horizon}"


def calibration(strategy_id: int, horizon: int | None = None, fresh: bool = False) -> dict:
    """The suggested thresholds of a strategy from its scored signals (see suggest_thresholds),
    beside the thresholds it has; the suggestion as the outcome job last stored it, else
    computed now (`fresh` recomputes)."""
    cfg = current_settings().system.signals.calibration
    horizon = horizon or cfg.horizon
    if horizon not in HORIZONS:
        raise OutcomeError(f"horizon must be one of {HORIZONS}, got {horizon!r}", status=400,
                           field="horizon")
    strategy = db.session.get(Strategy, strategy_id)
    if strategy is None or strategy.deleted_at is not None:
        raise OutcomeError(f"No strategy with id {strategy_id}.", status=404)
    key = CALIBRATION_KEY.format(strategy_id=strategy_id, horizon=horizon)
    result = dict(_stored(key, lambda: _suggestion(strategy_id, horizon, cfg), fresh))
    result.update(strategy_id=strategy_id, horizon=horizon, current={
        "strong": strategy.strong_threshold, "medium": strategy.medium_threshold,
        "weak": strategy.weak_threshold})
    return result


def _suggestion(strategy_id: int, horizon: int, cfg) -> dict:
    column = getattr(SignalOutcome, f"return_{horizon}")
    rows = db.session.execute(
        select(Signal.strength_raw, column).join(SignalOutcome, SignalOutcome.signal_id ==
                                                 Signal.id)
        .where(Signal.strategy_id == strategy_id, column.is_not(None),
               Signal.strength_raw.is_not(None))).all()
    pairs = [(float(s), float(r)) for s, r in rows if math.isfinite(s) and math.isfinite(r)]
    return suggest_thresholds(pairs, {"strong": cfg.strong_target,
                                      "medium": cfg.medium_target, "weak": cfg.weak_target},
                              cfg.min_signals, cfg.min_per_level)


def apply_calibration(strategy_id: int, horizon: int | None = None, by: str = "") -> dict:
    """Set the suggested thresholds (levels without a suggestion keep theirs) for new signals,
    and record the change as a strategy event."""
    suggestion = calibration(strategy_id, horizon, fresh=True)
    found = {lv: v["threshold"] for lv, v in suggestion["levels"].items()
             if v.get("threshold") is not None}
    if not found:
        raise OutcomeError("Nothing to apply: " + (suggestion["reason"] or "no level has a "
                           "suggested threshold."), status=409)
    strategy = db.session.get(Strategy, strategy_id)
    new = dict(suggestion["current"])
    new.update(found)
    # strong >= medium >= weak stays true when only some levels moved
    new["medium"] = min(new["medium"], new["strong"])
    new["weak"] = min(new["weak"], new["medium"])
    before = dict(suggestion["current"])
    strategy.strong_threshold, strategy.medium_threshold, strategy.weak_threshold = (
        new["strong"], new["medium"], new["weak"])
    record_event(strategy_id, "thresholds_calibrated",
                 f"{before} → {new} from {suggestion['n']} scored signals "
                 f"({suggestion['horizon']} candles)" + (f" by {by}" if by else ""))
    db.session.commit()
    return {"strategy_id": strategy_id, "before": before, "after": new,
            "n": suggestion["n"], "horizon": suggestion["horizon"]}


# ------------------------------------------------------------------------- charts

LEVEL_OF_TRADE = {"entry_fill": "entry", "exit_fill": "exit"}


def _outcome_json(outcome: SignalOutcome | None) -> dict | None:
    if outcome is None:
        return None
    return {"status": outcome.status, "reason": outcome.reason,
            **{f"return_{h}": _finite(getattr(outcome, f"return_{h}")) for h in HORIZONS},
            "max_favourable": _finite(outcome.max_favourable),
            "max_adverse": _finite(outcome.max_adverse)}


def _finite(value) -> float | None:
    return value if isinstance(value, float) and math.isfinite(value) else None


def chart(strategy_id: int, pair: str | None = None, candles: int = 200,
          signal_id: int | None = None) -> dict:
    """Candles of one of the strategy's pairs (the latest `candles`, or around `signal_id`:
    10 before, 30 after) with its signals as markers (level, outcome) and its trades' fills."""
    strategy = db.session.get(Strategy, strategy_id)
    if strategy is None or strategy.deleted_at is not None:
        raise OutcomeError(f"No strategy with id {strategy_id}.", status=404)
    if not 10 <= candles <= MAX_KLINES:
        raise OutcomeError(f"candles must be 10..{MAX_KLINES}.", status=400, field="candles")
    timeframe = strategy.timeframe
    if timeframe not in INTERVAL_MINUTES:
        raise OutcomeError(f"timeframe {timeframe!r} has no candles here.", status=422)
    step = INTERVAL_MINUTES[timeframe] * 60_000
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    anchor = None
    if signal_id is not None:
        anchor = db.session.get(Signal, signal_id)
        if anchor is None or anchor.strategy_id != strategy_id:
            raise OutcomeError(f"No signal {signal_id} of this strategy.", status=404)
        pair = anchor.pair
        start = _ms(_signal_time(anchor))
        start -= start % step
        first, last = start - 10 * step, min(start + 30 * step, now_ms)
    else:
        pairs = list(strategy.pairs or [])
        pair = pair or (pairs[0] if pairs else None)
        if not pair:
            raise OutcomeError("The strategy has no pair.", status=422)
        last = now_ms
        first = now_ms - now_ms % step - (candles - 1) * step
    klines = Klines(requests.Session(), pair, timeframe)
    klines.load(first, last)
    rows = [[t, *klines.candles[t]] for t in sorted(klines.candles) if first <= t <= last]
    since = datetime.fromtimestamp(first / 1000, UTC).replace(tzinfo=None)
    found = db.session.execute(
        select(Signal, SignalOutcome).outerjoin(SignalOutcome, SignalOutcome.signal_id ==
                                                Signal.id)
        .where(Signal.strategy_id == strategy_id, Signal.pair == pair,
               Signal.rate.is_not(None), or_(Signal.open_date >= since,
                                             Signal.received_at >= since))
        .order_by(Signal.id.desc()).limit(500)).all()
    markers, trades = [], []
    for signal, outcome in found:
        at = _ms(_signal_time(signal))
        at -= at % step
        rate = _finite(signal.rate)
        if rate is None or at < first:
            continue
        item = {"id": signal.id, "time": at, "rate": rate, "action": signal.action,
                "level": signal.strength_level, "strength": _finite(signal.strength_raw),
                "message_type": signal.message_type}
        if signal.message_type in LEVEL_OF_TRADE:
            trades.append({**item, "side": LEVEL_OF_TRADE[signal.message_type]})
        elif signal.action in SIGNAL_ACTIONS:
            markers.append({**item, "outcome": _outcome_json(outcome)})
    horizons = []
    if anchor is not None:
        start = _ms(_signal_time(anchor))
        start -= start % step
        horizons = [{"candles": h, "time": start + h * step} for h in HORIZONS]
    return {"strategy_id": strategy_id, "pair": pair, "timeframe": timeframe,
            "candles": rows, "signals": markers[::-1], "trades": trades[::-1],
            "horizons": horizons, "error": klines.error,
            "signal_id": signal_id, "step_ms": step}


def quality_overview(horizon: int = 4, fresh: bool = False) -> dict:
    """The Signal quality page: every strategy's scored signals by level (count, % right, mean
    return — SQL aggregates, exact at any size) with its stored IC, and the whole fleet's
    quality (by level, by decile); as the outcome job last stored it, else computed now."""
    return _stored(f"btcw:signals:quality-overview:{horizon}",
                   lambda: _overview_now(horizon), fresh)


def _overview_now(horizon: int) -> dict:
    column = getattr(SignalOutcome, f"return_{horizon}")
    rows = db.session.execute(
        select(Signal.strategy_id, Signal.strength_level, func.count(column),
               func.sum(case((column > 0, 1), else_=0)), func.avg(column))
        .join(SignalOutcome, SignalOutcome.signal_id == Signal.id)
        .where(column.is_not(None))
        .group_by(Signal.strategy_id, Signal.strength_level)).all()
    names = dict(db.session.execute(select(Strategy.id, Strategy.name)).all())
    table: dict[int, dict] = {}
    for sid, level, count, hits, mean in rows:
        entry = table.setdefault(sid, {"strategy_id": sid, "name": names.get(sid, f"#{sid}"),
                                       "count": 0, "levels": {}})
        entry["count"] += count
        entry["levels"][level] = {"count": count, "hit_rate": (hits or 0) / count if count
                                  else None, "mean": mean}
    stored = {}
    with contextlib.suppress(Exception):
        keys = [QUALITY_KEY.format(scope=sid, horizon=horizon) for sid in table]
        for sid, raw in zip(table, redis_store.client.mget(keys) if keys else [], strict=True):
            if raw:
                stored[sid] = json.loads(raw).get("information_coefficient")
    for sid, entry in table.items():
        entry["information_coefficient"] = stored.get(sid)
    return {"horizon": horizon, "strategies": sorted(table.values(), key=lambda e: -e["count"]),
            "overall": quality(None, horizon)}
