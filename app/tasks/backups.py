"""Backup jobs (RQ entry points on the `backups` queue)."""

from __future__ import annotations

from app.backups import schedule, service


def daily_backup() -> str:
    """Write, verify and prune the daily backup once it is due (a no-op otherwise)."""
    return schedule.run_if_due()


def manual_backup() -> str:
    """A backup asked for on the page or the API."""
    return service.run_backup("manual").filename


def verify_backup(name: str) -> dict:
    return service.verify(name)


def restore_backup(name: str) -> dict:
    return service.restore(name)
