"""Host status: CPU, memory, disk, network and uptime, sampled by a periodic job (SPEC §8).

A sample is cached in Redis (`btcw:system:status`, TTL system_status_cache_ttl) for pages and
the API, announced to live pages, and appended to a ring of recent samples in Redis (the last
two hours at full resolution, for the small live charts). The database keeps the downsampled
history: every 5 minutes one MetricSample(kind="system") with the averages of the samples of
those 5 minutes, pruned after capacity_history_days.

CPU % and network rates are measured between two samples (CPU times and byte counters are kept
in Redis from one sample to the next), so they describe the whole interval, not one instant.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from datetime import UTC, datetime, timedelta

import psutil
from redis.exceptions import RedisError
from sqlalchemy import delete

from app.clock import utcnow
from app.extensions import db, redis_store
from app.monitoring.models import MetricSample
from app.monitoring.store import publish_live
from app.system.settings import current_settings

log = logging.getLogger(__name__)

STATUS_KEY = "btcw:system:status"
RING_KEY = "btcw:system:recent"
COUNTERS_KEY = "btcw:system:counters"
RING_SIZE = 240  # samples: two hours at the default 30 s interval
HISTORY_BUCKET = 300  # seconds: one database sample per 5 minutes
AVERAGED = ("cpu_percent", "memory_percent", "disk_percent", "net_recv_rate", "net_sent_rate",
            "load_1m")


def _disk_path() -> str:
    """The file system that holds BTC Watcher's data (VAR_DIR), else /."""
    from flask import current_app

    path = current_app.config.get("VAR_DIR") or "/"
    return path if os.path.exists(path) else "/"


def _cpu_busy_idle() -> tuple[float, float]:
    times = psutil.cpu_times()
    idle = times.idle + getattr(times, "iowait", 0.0)
    return sum(times) - idle, idle


def measure(previous: dict | None = None) -> dict:
    """One host sample; CPU % and network rates relative to `previous` counters when given.

    Returns the sample and, under "_counters", what the next call needs as `previous`.
    """
    now = time.time()
    busy, idle = _cpu_busy_idle()
    net = psutil.net_io_counters()
    counters = {"t": now, "busy": busy, "idle": idle, "recv": net.bytes_recv,
                "sent": net.bytes_sent}
    cpu = None
    recv_rate = sent_rate = None
    if previous and 0 < now - previous.get("t", 0) <= 900:
        elapsed = now - previous["t"]
        d_busy, d_idle = busy - previous["busy"], idle - previous["idle"]
        if d_busy >= 0 and d_idle >= 0 and d_busy + d_idle > 0:
            cpu = round(100.0 * d_busy / (d_busy + d_idle), 1)
        if net.bytes_recv >= previous["recv"] and net.bytes_sent >= previous["sent"]:
            recv_rate = round((net.bytes_recv - previous["recv"]) / elapsed, 1)
            sent_rate = round((net.bytes_sent - previous["sent"]) / elapsed, 1)
    if cpu is None:
        cpu = psutil.cpu_percent(interval=0.5)
    memory = psutil.virtual_memory()
    disk = psutil.disk_usage(_disk_path())
    boot = psutil.boot_time()
    try:
        load = os.getloadavg()
    except OSError:  # pragma: no cover - not on Linux
        load = (0.0, 0.0, 0.0)
    sample = {
        "timestamp": now,
        "sampled_at": datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds")
        .replace("+00:00", "Z"),
        "hostname": socket.gethostname(),
        "cpu_percent": cpu,
        "cpu_count": psutil.cpu_count() or 1,
        "load_1m": round(load[0], 2), "load_5m": round(load[1], 2), "load_15m": round(load[2], 2),
        "memory_total": memory.total,
        "memory_available": memory.available,
        "memory_used": memory.total - memory.available,
        "memory_percent": memory.percent,
        "disk_path": _disk_path(),
        "disk_total": disk.total,
        "disk_used": disk.used,
        "disk_free": disk.free,
        "disk_percent": disk.percent,
        "network_io": net._asdict(),
        "net_recv_rate": recv_rate,
        "net_sent_rate": sent_rate,
        "uptime_seconds": round(now - boot, 0),
        "boot_time": boot,
        "_counters": counters,
    }
    return sample


def sample_system() -> dict:
    """The periodic job: measure, cache, append to the recent ring, keep 5-minute history."""
    settings = current_settings().system.monitoring
    client = redis_store.client
    previous = None
    try:
        raw = client.get(COUNTERS_KEY)
        previous = json.loads(raw) if raw else None
    except RedisError as exc:
        log.warning("previous host counters unavailable (Redis: %s)", exc)
    sample = measure(previous)
    counters = sample.pop("_counters")
    ring: list[dict] = []
    try:
        pipe = client.pipeline(transaction=False)
        pipe.set(COUNTERS_KEY, json.dumps(counters), ex=3600)
        pipe.set(STATUS_KEY, json.dumps(sample), ex=max(int(settings.system_status_cache_ttl), 1))
        pipe.lpush(RING_KEY, json.dumps(_compact(sample)))
        pipe.ltrim(RING_KEY, 0, RING_SIZE - 1)
        pipe.lrange(RING_KEY, 0, RING_SIZE - 1)
        ring = [json.loads(x) for x in pipe.execute()[-1]]
    except RedisError as exc:
        log.warning("host status not cached (Redis: %s)", exc)
        ring = [_compact(sample)]
    _keep_history(sample, ring, settings.system_status_interval)

    publish_live("system_status", sample)
    return sample


def _compact(sample: dict) -> dict:
    """What the recent ring keeps of a sample (the chart series)."""
    return {"t": round(sample["timestamp"], 1), **{k: sample.get(k) for k in AVERAGED}}


def _keep_history(sample: dict, ring: list[dict], interval: int) -> None:
    """At the first sample of each 5-minute bucket, store the averages of the previous bucket."""
    now = sample["timestamp"]
    bucket = int(now // HISTORY_BUCKET)
    if bucket == int((now - max(interval, 1)) // HISTORY_BUCKET):
        return
    start, end = (bucket - 1) * HISTORY_BUCKET, bucket * HISTORY_BUCKET
    points = [p for p in ring if start <= p["t"] < end] or [_compact(sample)]
    data = {"samples": len(points), "bucket_start": start}
    for key in AVERAGED:
        values = [p[key] for p in points if p.get(key) is not None]
        data[key] = round(sum(values) / len(values), 2) if values else None
    data["memory_total"] = sample["memory_total"]
    data["disk_total"] = sample["disk_total"]
    db.session.add(MetricSample(kind="system", recorded_at=datetime.fromtimestamp(
        end, UTC).replace(tzinfo=None), data=data))
    days = current_settings().system.monitoring.capacity_history_days
    db.session.execute(delete(MetricSample).where(
        MetricSample.kind == "system", MetricSample.recorded_at < utcnow() - timedelta(days=days)))
    db.session.commit()


def current_status(max_age: float | None = None) -> dict:
    """The cached host status, or a fresh sample (cached for the next reader) when nothing is
    cached: it measures against the last counters, so only a host's very first sample waits."""
    try:
        raw = redis_store.client.get(STATUS_KEY)
        if raw:
            cached = json.loads(raw)
            if max_age is None or time.time() - cached["timestamp"] <= max_age:
                cached["cached"] = True
                return cached
    except RedisError:
        pass
    sample = dict(sample_system())
    sample["cached"] = False
    return sample


def recent(minutes: int = 60) -> list[dict]:
    """Recent samples (oldest first) from the Redis ring, at most `minutes` old."""
    try:
        raw = redis_store.client.lrange(RING_KEY, 0, RING_SIZE - 1)
    except RedisError:
        return []
    cutoff = time.time() - minutes * 60
    points = [json.loads(x) for x in raw]
    return sorted((p for p in points if p["t"] >= cutoff), key=lambda p: p["t"])


def history(hours: int) -> list[dict]:
    """5-minute averages from the database over the last `hours` (oldest first)."""
    since = utcnow() - timedelta(hours=hours)
    rows = db.session.scalars(
        db.select(MetricSample).where(MetricSample.kind == "system",
                                      MetricSample.recorded_at >= since)
        .order_by(MetricSample.recorded_at)).all()
    return [{"t": (r.recorded_at - datetime(1970, 1, 1)).total_seconds(),
             **{k: r.data.get(k) for k in AVERAGED}} for r in rows]
