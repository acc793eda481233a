"""Runtime jobs (RQ entry points)."""

from __future__ import annotations

from app.runtime.control import reconcile_transitions as reconcile


def reconcile_transitions() -> list[dict]:
    """Stuck `starting`/`stopping` rows (their supervisor died) turned into the real state."""
    return reconcile()


def run_upgrade(upgrade_id: int) -> str:
    """A FreqTrade upgrade (app/runtime/upgrades.py), on the long-jobs queue."""
    from app.runtime import upgrades

    return upgrades.run_upgrade(upgrade_id)


def install_version(version: str) -> dict:
    """Install a FreqTrade release into its own virtual environment."""
    from app.runtime import versions

    return versions.install(version)
