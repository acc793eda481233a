"""RQ entry points. PERIODIC_JOBS is the one table of periodic jobs that `flask cron run` runs.

Each row: (dotted function path, queue, interval in seconds or a callable settings -> seconds,
job timeout). Intervals are read from config/system.yml and re-read after a config reload.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from config.loader import Settings

Interval = int | Callable[[Settings], int]

PERIODIC_JOBS: list[tuple[str, str, Interval, int]] = [
    # (function, queue, interval, timeout) -- each domain adds its rows here.
    ("app.tasks.monitoring.sweep_alerts", "monitoring", 30, 120),
    ("app.tasks.signals.sweep_outbox", "default", 15, 120),
    ("app.tasks.notifications.send_digests", "notifications",
     lambda s: s.notifications.rate_limiting.batch_interval, 300),
    ("app.tasks.notifications.deliver_due", "notifications", 15, 120),
    ("app.tasks.monitoring.sample_system", "monitoring",
     lambda s: s.system.monitoring.system_status_interval, 60),
    ("app.tasks.monitoring.sweep_strategies", "monitoring",
     lambda s: s.system.monitoring.strategy_status_interval, 120),
    ("app.tasks.monitoring.check_gateway", "monitoring",
     lambda s: s.system.monitoring.gateway_health_interval, 60),
    ("app.tasks.monitoring.record_capacity", "monitoring",
     lambda s: s.system.monitoring.capacity_interval, 120),
    ("app.tasks.gateway.check_routes", "monitoring",
     lambda s: s.system.monitoring.gateway_health_interval, 120),
    ("app.tasks.runtime.reconcile_transitions", "monitoring", 30, 120),
    ("app.tasks.backups.daily_backup", "backups", 60, 4 * 3600),
    ("app.tasks.proxies.check_proxies", "monitoring", lambda s: s.proxy.health.interval, 600),
    ("app.tasks.signals.score_outcomes", "monitoring", 60, 600),
    ("app.tasks.signals.find_consensus", "notifications", 15, 120),
]


# Jobs that must not start in the first seconds of a minute, {path: seconds}. Candles of every
# timeframe close on a minute boundary and every bot analyses its new candle right then: a
# status sweep in those seconds measures that burst (100 bots on 2 cores answer in 3 s instead
# of 1), not the bots' health. The cron moves such a run to that many seconds past the minute;
# with a 30 s interval the sweep settles at :20 and :50.
CLEAR_OF_CANDLE_CLOSE = {"app.tasks.monitoring.sweep_strategies": 20}


def clear_of_candle_close(path: str, at: datetime) -> datetime:
    """`at`, or later in the same minute when `path` must keep clear of the candle close."""
    quiet = CLEAR_OF_CANDLE_CLOSE.get(path)
    if quiet is None or at.second >= quiet:
        return at
    return at.replace(second=quiet, microsecond=0)


def interval_of(interval: Interval, settings: Settings) -> int:
    """Seconds between runs of a periodic job."""
    return int(interval(settings) if callable(interval) else interval)
