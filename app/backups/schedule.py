"""The daily backup: due once a day at `system.backups.daily_at` in the owner's time zone
(`notifications.timezone`). A periodic job asks every minute; one daily backup per local day,
whichever worker asks first (a database check and a Redis lock)."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from redis.exceptions import RedisError
from sqlalchemy import select

from app.backups import service
from app.backups.models import Backup
from app.clock import utcnow
from app.extensions import db, redis_store
from app.system.settings import current_settings

LOCK = "btcw:backup:daily"


def due_since(now: datetime | None = None) -> datetime | None:
    """The UTC moment today's daily backup became due, or None before daily_at (or when the
    daily backup is off)."""
    settings = current_settings()
    backups = settings.system.backups
    if not backups.enabled:
        return None
    zone = ZoneInfo(settings.notifications.timezone)
    now = now or utcnow()
    local = now.replace(tzinfo=ZoneInfo("UTC")).astimezone(zone)
    hour, minute = (int(x) for x in backups.daily_at.split(":"))
    due = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if local < due:
        return None
    return due.astimezone(ZoneInfo("UTC")).replace(tzinfo=None)


def run_if_due(now: datetime | None = None) -> str:
    """Run the daily backup when due and not done yet today; what happened."""
    since = due_since(now)
    if since is None:
        return "not due"
    done = db.session.scalar(select(Backup.id).where(
        Backup.trigger == "daily", Backup.created_at >= since,
        Backup.created_at < since + timedelta(days=1), Backup.status != "failed"))
    if done is not None:
        return "done today"
    failures = db.session.scalar(select(db.func.count(Backup.id)).where(
        Backup.trigger == "daily", Backup.created_at >= since, Backup.status == "failed"))
    if failures and failures >= 3:
        return "failed three times today; see the alerts"
    try:
        lock = redis_store.client.lock(LOCK, timeout=4 * 3600, blocking_timeout=0)
        if not lock.acquire():
            return "running elsewhere"
    except RedisError:
        return "Redis unavailable"
    try:
        row = service.run_backup("daily")
        return f"{row.filename}: verified"
    finally:
        try:
            lock.release()
        except Exception:  # noqa: BLE001, S110 - expired meanwhile
            pass
