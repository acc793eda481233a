"""RQ entry points. PERIODIC_JOBS is the one table of periodic jobs that `flask cron run` runs.

Each row: (dotted function path, queue, interval in seconds or a callable settings -> seconds,
job timeout). Intervals are read from config/system.yml and re-read after a config reload.
"""

from __future__ import annotations

from collections.abc import Callable

from config.loader import Settings

Interval = int | Callable[[Settings], int]

PERIODIC_JOBS: list[tuple[str, str, Interval, int]] = [
    # (function, queue, interval, timeout) -- each domain adds its rows here.
    ("app.tasks.monitoring.sweep_alerts", "monitoring", 30, 120),
]


def interval_of(interval: Interval, settings: Settings) -> int:
    """Seconds between runs of a periodic job."""
    return int(interval(settings) if callable(interval) else interval)
