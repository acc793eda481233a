"""What each bot process uses (CPU %, RSS, PSS), as the monitoring jobs last measured it.

`capacity.measure_bots()` is the one place that measures bot processes: psutil on the machine
the job runs on, CPU % between two measurements with the baseline kept in Redis (so every
process, every gunicorn worker and every job shares it). The strategy status sweep (every
system.monitoring.strategy_status_interval seconds) measures, and so does the Capacity page;
each measurement stores every bot's figures here, in Redis under `btcw:strategy:usage:<id>`,
expiring after USAGE_TTL_SWEEPS sweeps. The strategies list, detail page, overview and CLI read
them with `stored_usage()`; a bot without a stored measurement (just started, on a host the jobs
do not run on, Redis down) shows "—", never a made-up 0.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable

from redis.exceptions import RedisError

from app.extensions import redis_store
from app.system.settings import current_settings

log = logging.getLogger(__name__)

USAGE_KEY = "btcw:strategy:usage:{id}"
USAGE_TTL_SWEEPS = 3  # a measurement is shown until this many sweeps passed without a new one


def usage_ttl() -> int:
    """Seconds a stored measurement stays: USAGE_TTL_SWEEPS status sweeps, at least a minute."""
    interval = current_settings().system.monitoring.strategy_status_interval
    return max(int(interval * USAGE_TTL_SWEEPS), 60)


def store_usage(processes: list[dict], measured_at: float) -> None:
    """Keep the figures of each measured bot (measure_bots()'s `processes`) for the pages."""
    if not processes:
        return
    ttl = usage_ttl()
    try:
        pipe = redis_store.client.pipeline(transaction=False)
        for p in processes:
            figures = {"pid": p["pid"], "cpu_percent": p["cpu_percent"], "memory_rss": p["rss"],
                       "memory_pss": p["pss"], "measured_at": round(measured_at, 3)}
            pipe.set(USAGE_KEY.format(id=p["strategy_id"]), json.dumps(figures), ex=ttl)
        pipe.execute()
    except RedisError as exc:
        log.warning("bot CPU/memory figures not stored (Redis: %s)", exc)


def stored_usage(strategy_ids: Iterable[int]) -> dict[int, dict]:
    """{strategy id: {"pid", "cpu_percent", "memory_rss", "memory_pss", "measured_at"}} of the
    bots with a stored measurement (`measured_at` in Unix seconds); {} when Redis is down."""
    ids = [int(i) for i in strategy_ids]
    if not ids:
        return {}
    try:
        raw = redis_store.client.mget([USAGE_KEY.format(id=i) for i in ids])
    except RedisError as exc:
        log.warning("bot CPU/memory figures unavailable (Redis: %s)", exc)
        return {}
    return {i: json.loads(value) for i, value in zip(ids, raw, strict=True) if value}
