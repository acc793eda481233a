"""A `starting` or `stopping` that outlives its timeout (its supervisor died) becomes the real
state, with an event; the periodic job runs it."""

from __future__ import annotations

from datetime import timedelta

from app.clock import utcnow
from app.extensions import db
from app.runtime import control
from app.strategies.models import StrategyEvent
from app.tasks import PERIODIC_JOBS
from tests.bots import make_strategy
from tests.support.standin_bots import StandinBot


def _stuck(name: str, status: str, seconds_ago: float, **values):
    strategy = make_strategy(name, status=status, desired_state="running", host="127.0.0.1",
                             **values)
    at = utcnow() - timedelta(seconds=seconds_ago)
    db.session.add(StrategyEvent(strategy_id=strategy.id, kind=f"{status}_requested",
                                 created_at=at))
    strategy.updated_at = at
    db.session.commit()
    db.session.execute(db.update(type(strategy)).where(type(strategy).id == strategy.id)
                       .values(updated_at=at))
    db.session.commit()
    return strategy


def _kinds(strategy_id: int) -> list[str]:
    return list(db.session.scalars(db.select(StrategyEvent.kind).where(
        StrategyEvent.strategy_id == strategy_id).order_by(StrategyEvent.id)))


def test_stuck_transitions_become_the_real_state(app):
    bot = StandinBot()
    try:
        dead_start = _stuck("dead-start", "starting", 3600, port=bot.port + 1)
        dead_stop = _stuck("dead-stop", "stopping", 3600, pid=4_000_123)
        alive = _stuck("alive", "starting", 3600, port=bot.port)
        fresh = _stuck("fresh", "starting", 5)
        changed = control.reconcile_transitions()
    finally:
        bot.stop()
    assert {c["strategy_id"]: c["to"] for c in changed} == {
        dead_start.id: "stopped", dead_stop.id: "stopped", alive.id: "running"}
    db.session.expire_all()
    assert dead_start.status == "stopped" and "supervisor" in dead_start.status_message
    assert dead_start.desired_state == "running"  # its supervisor starts it when it is back
    assert dead_stop.status == "stopped" and dead_stop.pid is None
    assert alive.status == "running" and fresh.status == "starting"
    assert _kinds(dead_start.id)[-1] == "reconciled" and _kinds(fresh.id)[-1] != "reconciled"
    assert control.reconcile_transitions() == []  # nothing left to do


def test_the_reconciler_is_a_periodic_job():
    assert any(path == "app.tasks.runtime.reconcile_transitions" for path, *_ in PERIODIC_JOBS)
