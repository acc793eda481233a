"""The one source of "now": naive UTC datetimes everywhere (stored that way in every database)."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """Current time, naive UTC."""
    return datetime.now(UTC).replace(tzinfo=None)


def isoformat(value: datetime | None) -> str | None:
    """A stored naive-UTC datetime as ISO 8601 with a Z, or None."""
    if value is None:
        return None
    return value.replace(microsecond=value.microsecond).isoformat(timespec="seconds") + "Z"
