"""Runtime jobs (RQ entry points)."""

from __future__ import annotations

from app.runtime.control import reconcile_transitions as reconcile


def reconcile_transitions() -> list[dict]:
    """Stuck `starting`/`stopping` rows (their supervisor died) turned into the real state."""
    return reconcile()
