"""The strategy status sweep: every running bot probed concurrently, scored, checked for stalls.

One probe asks a bot through its BotClient: `/api/v1/health` (FreqTrade's loop timestamp; the
call's duration is the response time the score uses), `/api/v1/show_config` (the bot's state,
version and max_open_trades), `/api/v1/profit` (profit and open trades, for the pages) and
`/api/v1/pair_candles?limit=1` for its first pair (the newest candle it analysed; stall.py).
Only health is asked every sweep: for the same bot process (pid, port, start) the last sweep's
answers are reused — show_config for 5 minutes, profit for 55 s, and the candle while no newer
one can have closed, then until the bot's turn (at most CANDLE_EVERY) unless it is half a stall
window old, so a stall is judged on a fresh answer only. A process's first asks put odd ids half
a period earlier, so each sweep asks about half the fleet's profits and candles. Probes run
concurrently (gevent greenlets in a gevent-patched process, threads elsewhere) with the same
per-call timeout and overall budget that `fetch_all` uses.

After the probes the sweep measures the CPU % and memory of the bot processes on this machine
(bot_usage.measure_bots, which stores them for the strategy pages), stores each
bot's score on Strategy.health_score and Strategy.last_processed_at (close time of the newest
analysed candle), marks stalls and recoveries, caches each bot's status in Redis
(`btcw:strategy:status:<id>`) with a summary (`btcw:strategies:summary`), and writes
MetricSamples: one per bot (score, CPU %, RSS, PSS) when its score changes or at least every
5 minutes, plus one summary sample per sweep.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from redis.exceptions import RedisError
from sqlalchemy import bindparam, select, update

from app.clock import utcnow
from app.extensions import db, redis_store
from app.monitoring import stall
from app.monitoring.bot_usage import measure_bots
from app.monitoring.health_score import health_score
from app.monitoring.models import MetricSample
from app.monitoring.store import publish_live
from app.runtime.bot_client import (
    BotClient,
    BotError,
    BotTimeout,
    BotUnreachable,
    run_concurrently,
)
from app.strategies.models import Strategy
from app.system.settings import current_settings

log = logging.getLogger(__name__)

SWEPT_STATUSES = ("running", "stalled")
STATUS_KEY = "btcw:strategy:status:{id}"
SUMMARY_KEY = "btcw:strategies:summary"
SAMPLE_EVERY = 300  # seconds: a bot whose score did not change is sampled this often


@dataclass(frozen=True)
class BotTarget:
    """What a probe needs from a Strategy row (a plain copy, safe to hand to other threads)."""

    id: int
    name: str
    host: str | None
    port: int | None
    api_username: str
    api_password: str
    timeframe: str
    pair: str | None
    status: str
    started_at: datetime | None
    health_score: int | None
    pid: int | None = None

    @property
    def process(self) -> str:
        """Which bot process this is: a restart (new pid, port or start time) is a new one."""
        started = self.started_at.isoformat() if self.started_at else ""
        return f"{self.pid}:{self.port}:{started}"

    @classmethod
    def of(cls, strategy: Strategy) -> BotTarget:
        """The target for a Strategy row."""
        pairs = strategy.pairs or []
        return cls(strategy.id, strategy.name, strategy.host, strategy.port,
                   strategy.api_username, strategy.api_password, strategy.timeframe,
                   pairs[0] if pairs else None, strategy.status, strategy.started_at,
                   strategy.health_score, strategy.pid)


@dataclass
class Observation:
    """What one probe saw."""

    strategy_id: int
    status: str = "healthy"  # healthy | unreachable | timeout | error
    response_time: float | None = None  # seconds, of the health call
    state: str | None = None
    freqtrade_version: str | None = None  # as the bot reports it (show_config)
    max_open_trades: int | None = None  # show_config's (-1: no limit)
    config_checked_at: float | None = None  # when show_config was last asked (epoch seconds)
    last_process_ts: float | None = None
    candle_close_ts: float | None = None
    summary: dict | None = None  # profit and open trades, for the pages (they never call bots)
    summary_at: float | None = None
    summary_due_at: float | None = None  # when profit is asked again (epoch seconds)
    candle_due_at: float | None = None  # when the newest candle may be asked again
    error: str = ""
    notes: list[str] = field(default_factory=list)


def _connection_status(exc: BotError) -> str:
    if isinstance(exc, BotUnreachable):
        return "unreachable"
    if isinstance(exc, BotTimeout):
        return "timeout"
    return "error"


CONFIG_EVERY = 300  # seconds a bot process's show_config (state, version) is reused
SUMMARY_EVERY = 55  # seconds its profit and open trades are reused (every other sweep asks)
CANDLE_EVERY = 115  # seconds its newest candle is reused at most (a 1m bot: every other minute)


def _ask_summary(client: BotClient, timeout: float, obs: Observation) -> None:
    """Profit and open trades of the bot, for the pages (they never ask bots themselves): one
    call, /profit (open trades = all − closed; the limit is show_config's max_open_trades)."""
    try:
        profit = client.get("profit", timeout=timeout)
        total, closed = profit.get("trade_count"), profit.get("closed_trade_count")
        obs.summary = {
            "profit_all_coin": profit.get("profit_all_coin"),
            "profit_all_percent": profit.get("profit_all_percent"),
            "profit_closed_coin": profit.get("profit_closed_coin"),
            "trade_count": total,
            "open_trades": total - closed if isinstance(total, int) and isinstance(closed, int)
            else None,
            "max_open_trades": obs.max_open_trades,
        }
        obs.summary_at = time.time()
    except BotError as exc:
        obs.notes.append(f"profit: {exc.message}")
    except AttributeError:  # not the objects FreqTrade answers with
        obs.notes.append("profit: unexpected answer")


def _int_or_none(value) -> int | None:
    """A whole number from a bot's JSON (FreqTrade sends max_open_trades as 3.0), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e9:
        return int(value)
    return None


def _next_due(target: BotTarget, every: float, first: bool) -> float:
    """When a figure asked now is due again. A process's first ask puts half the bots (odd
    ids) half a period earlier, so the fleet's asks spread over the sweeps instead of all
    falling on the same one."""
    return time.time() + (every / 2 if first and target.id % 2 else every)


def _epoch(value) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _reused_candle(target: BotTarget, previous: dict | None, window: float) -> float | None:
    """The last sweep's newest candle close of the same process, when it may stand for this
    sweep: no newer candle can have closed yet (the one after it closes a timeframe later), or
    one may have but it is not this bot's turn (`candle_due_at`, CANDLE_EVERY) and the reused
    candle is younger than half the stall window — a stall is only ever judged on a fresh
    answer. None: ask the bot."""
    close = _epoch((previous.get("data") or {}).get("last_candle_close")) if previous else None
    if close is None:
        return None
    now = time.time()
    try:
        newer_possible = now >= close + stall.timeframe_seconds(target.timeframe)
    except ValueError:
        return None
    if not newer_possible:
        return close
    due = _epoch(previous.get("candle_due_at"))
    if due is None or now >= due or now - close >= window / 2:
        return None
    return close


def probe(target: BotTarget, client: BotClient | None, timeout: float,
          setup_error: BotError | None = None, previous: dict | None = None,
          stall_window: float = 600.0) -> Observation:
    """Ask one bot for its health, state, profit and newest candle; never raises for a bot
    problem. `previous` (the last sweep's cached status) spares calls to the same process:
    show_config (state, version) for CONFIG_EVERY seconds, profit for SUMMARY_EVERY, and
    pair_candles while no newer candle can have closed, or for up to CANDLE_EVERY while the
    reused one is younger than half `stall_window`. A steady sweep asks one to three."""
    obs = Observation(target.id)
    if client is None:
        obs.status = _connection_status(setup_error) if setup_error else "unreachable"
        obs.error = setup_error.message if setup_error else "no client"
        return obs
    started = time.monotonic()
    try:
        health = client.get("health", timeout=timeout)
        obs.response_time = time.monotonic() - started
        if isinstance(health, dict) and health.get("last_process_ts"):
            obs.last_process_ts = float(health["last_process_ts"])
        same = bool(previous) and previous.get("process") == target.process
        reuse = (same and (previous.get("data") or {}).get("state")
                 and "max_open_trades" in previous  # a status cached by an older release
                 and time.time() - float(previous.get("config_checked_at") or 0) < CONFIG_EVERY)
        if reuse:
            obs.state = previous["data"]["state"]
            obs.freqtrade_version = previous.get("freqtrade_version")
            obs.max_open_trades = _int_or_none(previous.get("max_open_trades"))
            obs.config_checked_at = float(previous["config_checked_at"])
        else:
            config = client.get("show_config", timeout=timeout)
            obs.config_checked_at = time.time()
            if isinstance(config, dict):
                obs.state = config.get("state")
                version = config.get("version")
                obs.freqtrade_version = str(version)[:32] if version else None
                obs.max_open_trades = _int_or_none(config.get("max_open_trades"))
    except BotError as exc:
        if obs.response_time is None and not isinstance(exc, BotUnreachable):
            obs.response_time = time.monotonic() - started
        obs.status = _connection_status(exc)
        obs.error = exc.message
        return obs
    previous = previous if same else None
    summary_due = _epoch((previous or {}).get("summary_due_at"))
    if (previous and isinstance(previous.get("summary"), dict) and summary_due is not None
            and time.time() < summary_due):
        obs.summary, obs.summary_at = previous["summary"], _epoch(previous.get("summary_at"))
        obs.summary_due_at = summary_due
    else:
        _ask_summary(client, timeout, obs)
        if obs.summary is not None:  # a failed ask is tried again next sweep
            obs.summary_due_at = _next_due(target, SUMMARY_EVERY,
                                           first=not (previous and previous.get("summary")))
    reused = _reused_candle(target, previous, stall_window) if target.pair else None
    if reused is not None:
        obs.candle_close_ts, obs.candle_due_at = reused, _epoch(previous.get("candle_due_at"))
    elif target.pair:
        first = not (previous and previous.get("candle_due_at"))
        try:
            candles = client.get("pair_candles", timeout=timeout, params={
                "pair": target.pair, "timeframe": target.timeframe, "limit": 1})
            stop = candles.get("data_stop_ts") if isinstance(candles, dict) else None
            obs.candle_close_ts = stall.candle_close_ts(stop, target.timeframe)
            obs.candle_due_at = _next_due(target, CANDLE_EVERY, first)
        except BotError as exc:
            if isinstance(exc, BotUnreachable | BotTimeout):
                obs.status, obs.error = _connection_status(exc), exc.message
            else:  # e.g. the pair left the whitelist: no candle figure, not a sick bot
                obs.notes.append(f"pair_candles: {exc.message}")
        except ValueError as exc:
            obs.notes.append(f"pair_candles: {exc}")
    return obs


def probe_all(targets: list[BotTarget], timeout: float, concurrency: int = 64,
              stall_minutes: float = 5.0) -> list[Observation]:
    """Probe every target at once (bounded concurrency); results in input order.

    The whole call ends within about 3 x timeout + connect timeout per round of `concurrency`
    bots even if some bot hangs; a probe that did not finish by then counts as a timeout.
    """
    if not targets:
        return []
    prepared: list[tuple[BotTarget, BotClient | None, BotError | None]] = []
    for target in targets:  # clients are made here, in the app context (settings, pool)
        try:
            prepared.append((target, BotClient.for_strategy(target, timeout=timeout), None))
        except BotError as exc:
            prepared.append((target, None, exc))
    results: list[Observation | None] = [None] * len(prepared)
    previous = cached_statuses([t.id for t in targets])

    def one(index: int) -> None:
        target, client, error = prepared[index]
        try:
            results[index] = probe(target, client, timeout, error, previous.get(target.id),
                                   _window(target, stall_minutes))
        except Exception as exc:  # noqa: BLE001 - one broken bot must not end the sweep
            log.exception("status probe of strategy %s failed", target.id)
            results[index] = Observation(target.id, status="error", error=str(exc)[:300])

    width = max(1, min(concurrency, len(prepared)))
    rounds = -(-len(prepared) // width)
    connect = current_settings().system.gateway.connect_timeout
    budget = (3 * timeout + connect + 1.0) * rounds
    run_concurrently(len(prepared), one, width, budget, "status_sweep")
    return [r if r is not None else Observation(prepared[i][0].id, status="timeout",
                                                 error=f"no answer within {budget:.0f} s")
            for i, r in enumerate(results)]


def _window(target: BotTarget, stall_minutes: float) -> float:
    try:
        return stall.stall_window(target.timeframe, stall_minutes)
    except ValueError:
        return 600.0


@dataclass
class BotReport:
    """One bot after the sweep: what was seen, its score and its stall verdict."""

    target: BotTarget
    observation: Observation
    score: int
    deductions: list[dict]
    verdict: stall.StallVerdict | None

    def as_status(self, now: float) -> dict:
        """The cached status of one bot (the design's strategy status shape, plus ours)."""
        obs = self.observation
        return {
            "strategy_id": self.target.id,
            "name": self.target.name,
            "status": obs.status,
            "response_time": None if obs.response_time is None
            else round(obs.response_time * 1000, 1),  # milliseconds, as the design
            "data": {
                "state": obs.state,
                "last_process": obs.last_process_ts,
                "last_candle_close": obs.candle_close_ts,
            },
            "error": obs.error,
            "notes": obs.notes,
            "health_score": self.score,
            "deductions": self.deductions,
            "stalled": bool(self.verdict and self.verdict.stalled),
            "candle_age": None if not self.verdict or self.verdict.candle_age is None
            else round(self.verdict.candle_age, 1),
            "stall_window": self.verdict.window if self.verdict else None,
            "stall_reason": self.verdict.reason if self.verdict else "",
            "last_update": now,
            "monitoring_mode": "multi_instance",
            "summary": obs.summary,
            "summary_at": obs.summary_at,
            "summary_due_at": obs.summary_due_at,
            "candle_due_at": obs.candle_due_at,
            "pid": self.target.pid,
            "process": self.target.process,
            "freqtrade_version": obs.freqtrade_version,
            "max_open_trades": obs.max_open_trades,
            "config_checked_at": obs.config_checked_at,
        }


def assess(target: BotTarget, obs: Observation, now: float, stall_minutes: float) -> BotReport:
    """Stall verdict and health score of one probed bot."""
    verdict = None
    if obs.status == "healthy":
        try:
            verdict = stall.judge(state=obs.state, candle_close=obs.candle_close_ts,
                                  started_at=target.started_at, timeframe=target.timeframe,
                                  stall_minutes=stall_minutes, now=now)
        except ValueError as exc:
            obs.notes.append(str(exc))
    loop_age = now - obs.last_process_ts if obs.last_process_ts else None
    score = health_score(obs.status, obs.response_time, obs.state, loop_age,
                         stalled=bool(verdict and verdict.stalled))
    return BotReport(target, obs, score.value, score.as_dict()["deductions"], verdict)


def sweep_strategies() -> dict:
    """Probe every running bot, store scores, mark stalls and recoveries; a summary dict."""
    settings = current_settings().system.monitoring
    started = time.monotonic()
    rows = db.session.scalars(
        select(Strategy).where(Strategy.deleted_at.is_(None),
                               Strategy.status.in_(SWEPT_STATUSES),
                               Strategy.port.is_not(None)).order_by(Strategy.id)
    ).all()
    targets = [BotTarget.of(s) for s in rows]
    db.session.rollback()  # no transaction held open while the bots are asked
    observations = probe_all(targets, settings.status_timeout, settings.status_concurrency,
                             settings.stall_minutes)
    probed = time.monotonic() - started
    now = time.time()
    reports = [assess(t, o, now, settings.stall_minutes)
               for t, o in zip(targets, observations, strict=True)]
    measuring = time.monotonic()
    usage = _measure_processes()
    measured = time.monotonic() - measuring
    _store_scores(reports, now, usage)
    stalled, recovered = _apply_stalls(reports, settings)
    summary = _summary(reports, now, probed, time.monotonic() - started)
    summary["measure_seconds"] = round(measured, 3)
    summary["newly_stalled"], summary["recovered"] = stalled, recovered
    summary["measured_processes"] = len(usage)
    _cache(reports, summary, now, settings)
    return summary


def _measure_processes() -> dict[int, dict]:
    """CPU % and memory of the bots running on this machine (bot_usage.measure_bots, which also
    stores them for the strategy pages), by strategy id; {} if measuring failed."""

    try:
        processes = measure_bots()["processes"]
    except Exception:  # noqa: BLE001 - the scores matter more than the figures
        log.exception("bot process measurement failed")
        db.session.rollback()
        return {}
    return {p["strategy_id"]: p for p in processes}


def _store_scores(reports: list[BotReport], now: float,
                  usage: dict[int, dict] | None = None) -> None:
    """Health score and last candle time on each Strategy; MetricSamples (with the bot's
    CPU % and memory when measured); one commit."""
    if not reports:
        return
    table = Strategy.__table__
    params = []
    for r in reports:
        close = r.observation.candle_close_ts
        params.append({
            "sid": r.target.id, "score": r.score,
            "processed": datetime.fromtimestamp(close, UTC).replace(tzinfo=None) if close
            else None,
        })
    db.session.execute(
        update(table).where(table.c.id == bindparam("sid")).values(
            health_score=bindparam("score"),
            last_processed_at=db.func.coalesce(bindparam("processed", type_=db.DateTime),
                                               table.c.last_processed_at),
            updated_at=table.c.updated_at,  # a score is not an edit of the strategy
        ),
        params,
    )
    recorded = utcnow()
    new_bucket = int(now // SAMPLE_EVERY) != int(
        (now - current_settings().system.monitoring.strategy_status_interval) // SAMPLE_EVERY)
    for r in reports:
        if new_bucket or r.score != r.target.health_score:
            data = _sample_data(r, (usage or {}).get(r.target.id))
            db.session.add(MetricSample(kind="strategy", strategy_id=r.target.id,
                                        recorded_at=recorded, data=data))
    db.session.commit()


def _sample_data(r: BotReport, process: dict | None = None) -> dict:
    obs = r.observation
    data = {"health_score": r.score, "status": obs.status, "state": obs.state,
            "response_time": None if obs.response_time is None else round(obs.response_time, 4),
            "stalled": bool(r.verdict and r.verdict.stalled),
            "candle_age": None if not r.verdict or r.verdict.candle_age is None
            else round(r.verdict.candle_age, 1)}
    if process:
        data.update(cpu_percent=process["cpu_percent"], memory_rss=process["rss"],
                    memory_pss=process["pss"])
    return data


def _apply_stalls(reports: list[BotReport], settings) -> tuple[list[int], list[int]]:
    """Mark newly stalled bots and recovered ones; ids of each."""
    open_alerts = stall.strategies_with_open_stall_alert()
    stalled, recovered = [], []
    for r in reports:
        if r.verdict is None or r.verdict.stalled is None:
            continue
        sid = r.target.id
        if r.verdict.stalled and r.target.status == "running":
            if stall.mark_stalled(sid, r.verdict.reason, settings.restart_stalled,
                                  r.verdict.window):
                stalled.append(sid)
        elif not r.verdict.stalled and (r.target.status == "stalled" or sid in open_alerts):
            if stall.mark_recovered(sid, r.verdict.candle_age, open_alert=sid in open_alerts):
                recovered.append(sid)
    return stalled, recovered


def _summary(reports: list[BotReport], now: float, probed: float, total: float) -> dict:
    counts: dict[str, int] = {}
    for r in reports:
        counts[r.observation.status] = counts.get(r.observation.status, 0) + 1
    scores = [r.score for r in reports]
    return {
        "total_strategies": len(reports),
        "healthy_strategies": counts.get("healthy", 0),
        "error_strategies": counts.get("error", 0),
        "unreachable_strategies": counts.get("unreachable", 0),
        "timeout_strategies": counts.get("timeout", 0),
        "stalled_strategies": sum(1 for r in reports if r.verdict and r.verdict.stalled),
        "average_health_score": round(sum(scores) / len(scores), 1) if scores else None,
        "probe_seconds": round(probed, 3),
        "sweep_seconds": round(total, 3),
        "last_update": now,
    }


def _cache(reports: list[BotReport], summary: dict, now: float, settings) -> None:
    """Each bot's status and the summary in Redis; the summary announced to live pages."""

    ttl = max(int(settings.strategy_status_cache_ttl), 1)
    try:
        pipe = redis_store.client.pipeline(transaction=False)
        for r in reports:
            pipe.set(STATUS_KEY.format(id=r.target.id), json.dumps(r.as_status(now)), ex=ttl)
        pipe.set(SUMMARY_KEY, json.dumps(summary),
                 ex=max(ttl, int(settings.strategy_status_interval) + 15))
        pipe.execute()
    except RedisError as exc:
        log.warning("strategy statuses not cached (Redis: %s)", exc)
    publish_live("strategies_summary", summary)


def cached_status(strategy_id: int) -> dict | None:
    """The last sweep's status of one bot, if still cached."""
    return cached_statuses([int(strategy_id)]).get(int(strategy_id))


def cached_statuses(strategy_ids: list[int]) -> dict[int, dict]:
    """The cached status of many bots at once (one Redis call), by id; missing ones left out."""
    if not strategy_ids:
        return {}
    try:
        raws = redis_store.client.mget([STATUS_KEY.format(id=int(i)) for i in strategy_ids])
    except RedisError:
        return {}
    out = {}
    for sid, raw in zip(strategy_ids, raws, strict=True):
        if raw:
            try:
                out[int(sid)] = json.loads(raw)
            except ValueError:
                continue
    return out


def cached_summary() -> dict | None:
    """The last sweep's summary, if still cached."""
    try:
        raw = redis_store.client.get(SUMMARY_KEY)
    except RedisError:
        return None
    return json.loads(raw) if raw else None


def observation_dict(obs: Observation) -> dict[str, Any]:
    """JSON-ready form of an Observation (CLI, bench)."""
    return asdict(obs)
