"""Signal jobs (RQ entry points)."""

from __future__ import annotations

from app.signals.outbox import sweep


def sweep_outbox() -> dict:
    """Publish and hand on the signals a Redis outage left in the outbox (each exactly once)."""
    result = sweep()
    return {"published": result.published, "handed_on": result.handed_on, "error": result.error}


def score_outcomes() -> dict:
    """Score the signals whose horizons have passed (what the market did next)."""
    from app.signals import consensus, outcomes

    result = outcomes.compute(limit=20_000)
    result["consensus_scored"] = consensus.score_pending()
    if result["done"] or result["unavailable"]:
        outcomes.refresh_quality(set(result["strategy_ids"]))
    return result


def find_consensus() -> dict:
    """Record the consensus signals of the last few candles and notify each once."""
    from app.notifications import service as notifications
    from app.signals import consensus

    created = consensus.find()
    for consensus_id in created:
        notifications.notify_consensus(consensus_id)
    return {"created": created}
