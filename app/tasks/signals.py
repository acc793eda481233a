"""Signal jobs (RQ entry points)."""

from __future__ import annotations

from app.signals.outbox import sweep


def sweep_outbox() -> dict:
    """Publish and hand on the signals a Redis outage left in the outbox (each exactly once)."""
    result = sweep()
    return {"published": result.published, "handed_on": result.handed_on, "error": result.error}


def score_outcomes() -> dict:
    """Score the signals whose horizons have passed (what the market did next)."""
    from app.signals import outcomes

    return outcomes.compute(limit=20_000)
