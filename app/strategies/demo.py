"""The five demo strategies `flask up` seeds once and starts against the market simulator."""

from __future__ import annotations

import logging

from sqlalchemy import select

from app.clock import isoformat, utcnow
from app.extensions import db
from app.runtime.control import ACTIVE_STATUSES, RuntimeControlError
from app.strategies import library, service
from app.strategies.models import Strategy
from app.system.models import SystemSetting

log = logging.getLogger(__name__)

SEEDED_KEY = "strategies.demo_seeded"
# name (= class = file stem) -> pairs; the design's examples, each on its own simulated pair.
DEMO_STRATEGIES = (
    ("MA_Cross_BTC", ["BTC/USDT"], "EMA 5/12 crossover on BTC/USDT."),
    ("RSI_ETH", ["ETH/USDT"], "RSI mean reversion on ETH/USDT."),
    ("Custom_SOL", ["SOL/USDT"], "Multi-factor momentum score on SOL/USDT."),
    ("Bollinger_ADA", ["ADA/USDT"], "Bollinger band breaks on ADA/USDT."),
    ("MACD_DOT", ["DOT/USDT"], "MACD signal-line crossovers on DOT/USDT."),
)


def _seeded() -> bool:
    return db.session.get(SystemSetting, SEEDED_KEY) is not None


def _mark_seeded(ids: list[int]) -> None:
    db.session.merge(SystemSetting(key=SEEDED_KEY,
                                   value={"at": isoformat(utcnow()), "strategy_ids": ids}))
    db.session.commit()


def seed() -> tuple[list[str], list[str]]:
    """Create the demo strategies the first time (never again, even if the owner deletes them).

    Returns (created names, problems). A demo whose class is missing from the library is
    skipped with a problem line.
    """
    if _seeded():
        return [], []
    created, problems, ids = [], [], []
    for name, pairs, description in DEMO_STRATEGIES:
        exists = db.session.scalar(
            select(Strategy.id).where(Strategy.name == name, Strategy.deleted_at.is_(None)))
        if exists is not None:
            ids.append(exists)
            continue
        if name not in library.classes_in(f"{name}.py"):
            problems.append(f"{name}: class not found in {name}.py of the strategy library")
            continue
        try:
            strategy = service.create_strategy({
                "name": name, "strategy_class": name, "strategy_file": f"{name}.py",
                "exchange": "simulator", "timeframe": "1m", "pairs": pairs,
                "description": f"Demo: {description}", "version_label": "demo",
            })
        except service.ValidationFailed as exc:
            problems.append(f"{name}: " + "; ".join(f"{k} {v}" for k, v in exc.errors.items()))
            continue
        created.append(name)
        ids.append(strategy.id)
    _mark_seeded(ids)
    return created, problems


def demo_strategies() -> list[Strategy]:
    """The live strategies that carry a demo name."""
    names = [name for name, _, _ in DEMO_STRATEGIES]
    return list(db.session.scalars(
        select(Strategy).where(Strategy.name.in_(names), Strategy.deleted_at.is_(None))
        .order_by(Strategy.id)))


def seed_and_start() -> str:
    """Seed the demo strategies once, start those not running; a one-line summary.

    Idempotent: a second call creates nothing and starts only demos that are stopped.
    """
    created, problems = seed()
    started, running, resuming = [], [], []
    for strategy in demo_strategies():
        if strategy.status in ACTIVE_STATUSES:
            running.append(strategy.name)
            continue
        if strategy.desired_state == "running":
            # Stopped with the stack (Ctrl-C): the supervisor starts it again by itself.
            resuming.append(strategy.name)
            continue
        try:
            service.run_command(strategy.id, "start")
            started.append(strategy.name)
        except (RuntimeControlError, service.ServiceError) as exc:
            problems.append(f"{strategy.name}: {getattr(exc, 'message', None) or exc}")
    parts = []
    if created:
        parts.append(f"{len(created)} created")
    if started:
        parts.append(f"{len(started)} starting ({', '.join(started)})")
    if running:
        parts.append(f"{len(running)} already running")
    if resuming:
        parts.append(f"{len(resuming)} restarting with the supervisor")
    if not parts:
        parts.append("none to start")
    line = "Demo strategies: " + ", ".join(parts) + "."
    if problems:
        line += " Problems: " + "; ".join(problems) + "."
        log.warning("demo strategies: %s", "; ".join(problems))
    return line
