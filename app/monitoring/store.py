"""What the monitoring jobs remember and announce, below every measurement and the overview.

- run-time settings kept in the SystemSetting table (they survive restarts);
- `track_level()`: the once-per-crossing memory behind capacity and gateway alerts;
- `publish_live()`: announce a fresh sample to open pages (Redis pub/sub).
"""

from __future__ import annotations

import json
import logging

from redis.exceptions import RedisError
from sqlalchemy import update

from app.clock import isoformat, utcnow
from app.extensions import db, redis_store
from app.monitoring.models import Alert
from app.system.models import SystemSetting

log = logging.getLogger(__name__)

LIVE_CHANNEL = "btcw:monitoring:live"  # pub/sub: {"type": ..., "data": ...}
LEVEL_RANK = {"ok": 0, "warning": 1, "critical": 2}


# ------------------------------------------------------------------------ stored settings


def get_setting(key: str, default=None):
    """A run-time setting from the SystemSetting table, or `default`."""
    row = db.session.get(SystemSetting, key)
    return default if row is None or row.value is None else row.value


def put_setting(key: str, value) -> None:
    """Store a run-time setting (insert or update) and commit."""
    row = db.session.get(SystemSetting, key)
    if row is None:
        db.session.add(SystemSetting(key=key, value=value))
    else:
        row.value = value
        row.updated_at = utcnow()
    db.session.commit()


# ----------------------------------------------------------------------- level crossings


def track_level(key: str, level: str, figure: float | None = None) -> tuple[str, str]:
    """Remember the alert level of `key` ("capacity", "gateway"); (previous, new) levels.

    Stored in the database, so a restart or a Redis flush neither repeats nor loses an alert.
    """
    setting = f"{key}.alert_state"
    previous = (get_setting(setting) or {}).get("level", "ok")
    if previous != level:
        put_setting(setting, {"level": level, "figure": figure,
                              "changed_at": isoformat(utcnow())})
    return previous, level


def rose(previous: str, new: str) -> bool:
    """True when the level went up (ok -> warning -> critical)."""
    return LEVEL_RANK[new] > LEVEL_RANK[previous]


def resolve_alerts(kind: str) -> int:
    """Mark the open alerts of a kind resolved; how many."""
    result = db.session.execute(
        update(Alert).where(Alert.kind == kind, Alert.resolved_at.is_(None))
        .values(resolved_at=utcnow()))
    db.session.commit()
    return result.rowcount or 0


# -------------------------------------------------------------------------------- live


def publish_live(kind: str, data: dict) -> bool:
    """Announce a fresh sample on LIVE_CHANNEL for open pages; False if Redis is down."""
    try:
        redis_store.client.publish(LIVE_CHANNEL, json.dumps({"type": kind, "data": data},
                                                            default=str))
        return True
    except RedisError:
        return False
