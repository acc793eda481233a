"""Consensus: at least `min_strategies` strategies signalling the same pair and direction within
`window_candles` candles make one consensus signal that links them (system.signals.consensus).

Its level is the best of its members' raised by `raise_levels` (weak → medium → strong; strong
stays strong, P0 at most); its outcome is scored like a signal's, from its newest member's
candle and rate. Each signal counts in one consensus at most; the periodic job (`find`, every
15 s) records new ones, and the job's caller notifies each once.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import timedelta
from types import SimpleNamespace

import requests
from sqlalchemy import select

from app.clock import utcnow
from app.extensions import db
from app.signals.ingest import SIGNAL_ACTIONS
from app.signals.models import ConsensusMember, ConsensusSignal, Signal
from app.signals.outcomes import FALLING, HORIZONS, Klines, _ms, score
from app.simulator.limits import INTERVAL_MINUTES
from app.strategies.models import Strategy
from app.system.settings import current_settings

log = logging.getLogger(__name__)

RAISE = {"weak": "medium", "medium": "strong", "strong": "strong"}
RANK = {"weak": 1, "medium": 2, "strong": 3}
PRIORITY = {"strong": "P0", "medium": "P1", "weak": "P2"}
LOOKBACK = timedelta(hours=6)


def direction_of(action: str) -> str:
    """What the price should do for the signal to be right."""
    return "down" if action in FALLING else "up"


def find(now=None) -> list[int]:
    """Record the new consensus signals among recent graded signals; their ids."""
    cfg = current_settings().system.signals.consensus
    if not cfg.enabled:
        return []
    now = now or utcnow()
    taken = select(ConsensusMember.signal_id)
    rows = db.session.execute(
        select(Signal.id, Signal.strategy_id, Signal.pair, Signal.action, Signal.rate,
               Signal.strength_level, Signal.open_date, Signal.received_at, Strategy.timeframe)
        .join(Strategy, Strategy.id == Signal.strategy_id)
        .where(Signal.received_at >= now - LOOKBACK, Signal.pair != "",
               Signal.action.in_(SIGNAL_ACTIONS), Signal.strength_level.in_(tuple(RANK)),
               Signal.rate.is_not(None), Signal.rate > 0, Signal.id.not_in(taken))
        .order_by(Signal.id)).all()
    groups: dict[tuple[str, str], list] = defaultdict(list)
    for row in rows:
        groups[(row.pair, direction_of(row.action))].append(row)
    created = []
    for (pair, direction), members in groups.items():
        members.sort(key=lambda r: r.open_date or r.received_at)
        while True:
            found = _first_window(members, cfg.min_strategies, cfg.window_candles)
            if found is None:
                break
            consensus = _record(pair, direction, found, cfg.raise_levels)
            created.append(consensus.id)
            ids = {m.id for m in found}
            members = [m for m in members if m.id not in ids]
    return created


def _first_window(members: list, needed: int, candles: int) -> list | None:
    """The earliest run of signals from `needed` distinct strategies within `candles` candles
    (of the first one's timeframe); the newest signal per strategy."""
    for start, first in enumerate(members):
        minutes = INTERVAL_MINUTES.get(first.timeframe or "", 1)
        end = (first.open_date or first.received_at) + timedelta(minutes=minutes * candles)
        latest: dict[int, object] = {}
        for row in members[start:]:
            if (row.open_date or row.received_at) > end:
                break
            latest[row.strategy_id] = row
        if len(latest) >= needed:
            return list(latest.values())
    return None


def _record(pair: str, direction: str, members: list, raise_levels: int) -> ConsensusSignal:
    best = max((m.strength_level for m in members), key=RANK.__getitem__)
    level = best
    for _ in range(raise_levels):
        level = RAISE[level]
    newest = max(members, key=lambda m: m.open_date or m.received_at)
    consensus = ConsensusSignal(
        pair=pair, direction=direction, action=newest.action, timeframe=newest.timeframe or "1m",
        level=level, priority=PRIORITY[level], rate=float(newest.rate),
        signal_at=newest.open_date or newest.received_at,
        strategy_ids=sorted({m.strategy_id for m in members}),
        member_ids=sorted(m.id for m in members))
    db.session.add(consensus)
    db.session.flush()
    db.session.add_all(ConsensusMember(signal_id=m.id, consensus_id=consensus.id)
                       for m in members)
    db.session.commit()
    log.info("consensus %s: %s %s from strategies %s (%s)", consensus.id, pair, direction,
             consensus.strategy_ids, level)
    return consensus


def score_pending(now_ms: int | None = None) -> int:
    """Score the consensus signals whose outcome is pending; how many changed."""
    now_ms = now_ms or _ms(utcnow())
    pending = list(db.session.scalars(select(ConsensusSignal).where(
        ConsensusSignal.outcome_status == "pending").limit(500)))
    session = requests.Session()
    changed = 0
    cache: dict[tuple[str, str], Klines] = {}
    for row in pending:
        if row.timeframe not in INTERVAL_MINUTES:
            row.outcome_status, row.outcome_reason = "unavailable", "unknown timeframe"
            continue
        klines = cache.get((row.pair, row.timeframe))
        step = INTERVAL_MINUTES[row.timeframe] * 60_000
        start = _ms(row.signal_at)
        start -= start % step
        if klines is None:
            klines = cache[(row.pair, row.timeframe)] = Klines(session, row.pair, row.timeframe)
        klines.ensure(start, min(start + 25 * step, now_ms))
        # Scored like its newest member: the same horizons and direction (outcomes.score).
        member = SimpleNamespace(action=row.action, rate=row.rate, open_date=row.signal_at,
                                 received_at=row.signal_at)
        values = score(member, row.timeframe, klines, now_ms)
        for horizon in HORIZONS:
            setattr(row, f"return_{horizon}", values.get(f"return_{horizon}"))
        if values["status"] != row.outcome_status or values["status"] == "done":
            changed += 1
        row.outcome_status, row.outcome_reason = values["status"], values.get("reason", "")
    db.session.commit()
    return changed


def consensus_json(row: ConsensusSignal) -> dict:
    return {"id": row.id, "pair": row.pair, "direction": row.direction, "action": row.action,
            "timeframe": row.timeframe, "level": row.level, "priority": row.priority,
            "rate": row.rate, "signal_at": row.signal_at.isoformat() + "Z",
            "strategy_ids": row.strategy_ids, "member_ids": row.member_ids,
            "created_at": row.created_at.isoformat() + "Z",
            "notified": row.notified_at is not None,
            "outcome": {"status": row.outcome_status, "reason": row.outcome_reason,
                        **{f"return_{h}": getattr(row, f"return_{h}") for h in HORIZONS}}}


def recent(limit: int = 100, pair: str | None = None) -> list[ConsensusSignal]:
    query = select(ConsensusSignal).order_by(ConsensusSignal.id.desc()).limit(limit)
    if pair:
        query = query.where(ConsensusSignal.pair == pair)
    return list(db.session.scalars(query))
