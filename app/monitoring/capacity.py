"""Capacity: how full the system is, what the bots really use, and how many more fit.

The design measures capacity as port-pool slots: running / max_strategies. That figure stays
(`utilization_percent`, the design's shapes), but with ~330 MB per bot memory runs out long
before slots do, so this module also measures what the bots use (PSS and RSS of each bot
process, their CPU) and what the host has free, and answers **how many more bots fit**:

    fit on this host = min(available memory / average bot memory, free ports here, free slots)

plus, per other live supervisor host, its reported free memory / the same average.
`effective_utilization_percent` = running / (running + bots that still fit) is the utilisation
that means something; it equals the design's figure when slots are the limit and is what the
level, the progress bar and the alerts use.

Levels (SPEC §8): critical above 90 %, warning above the alert threshold (default 80),
normal above 50 %, else plenty. The alert fires once per crossing (store.track_level).
"""

from __future__ import annotations

import logging
import math
import os
import re
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psutil
from sqlalchemy import delete, select

from app.clock import utcnow
from app.errors import AppError
from app.extensions import db
from app.monitoring import store
from app.monitoring.alerts import raise_alert
from app.monitoring.bot_status import cached_summary
from app.monitoring.bot_usage import (
    is_local_host,
    last_measurement,
    local_addresses,
    measure_bots,
)
from app.monitoring.gateway_status import gateway_health_summary
from app.monitoring.models import MetricSample
from app.monitoring.system_status import current_status
from app.runtime.control import active_count, live_hosts
from app.runtime.port_pool import PortPool
from app.system.settings import current_settings

log = logging.getLogger(__name__)

ARCHITECTURE = "multi_instance_reverse_proxy"
THRESHOLD_KEY = "capacity.alert_threshold"
CRITICAL_ABOVE = 90.0
NORMAL_ABOVE = 50.0
HYSTERESIS = 2.0  # percentage points below a boundary before its level is left
GB = 1024 ** 3
MB = 1024 ** 2
MAX_TREND_POINTS = 500


_DECIMAL = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)", re.ASCII)


class ThresholdError(AppError):
    """An alert threshold that is not a number from 0 to 100."""


# ----------------------------------------------------------------------------- threshold


def parse_threshold(raw) -> float:
    """A threshold from JSON or a form: a number 0..100, else ThresholdError with the reason."""
    if isinstance(raw, bool) or raw is None or raw == "":
        raise ThresholdError("Threshold is required: a number from 0 to 100.")
    if isinstance(raw, str):
        # Plain ASCII decimals only: Python's float() also takes "1_0", "١٠" and "inf".
        if not _DECIMAL.fullmatch(raw.strip()):
            raise ThresholdError(f"Threshold must be a number from 0 to 100, got {raw[:40]!r}.")
        raw = float(raw.strip())
    if not isinstance(raw, int | float) or math.isnan(raw) or math.isinf(raw):
        raise ThresholdError(f"Threshold must be a number from 0 to 100, got {raw!r}.")
    if not 0 <= raw <= 100:
        raise ThresholdError(f"Threshold must be between 0 and 100, got {raw:g}.")
    return float(raw)


def alert_threshold() -> float:
    """The capacity alert threshold: the saved one, else system.capacity.alert_threshold."""
    saved = store.get_setting(THRESHOLD_KEY)
    if saved is not None:
        return float(saved)
    return float(current_settings().system.capacity.alert_threshold)


def set_alert_threshold(raw) -> dict:
    """Validate and save the threshold (survives restarts); the design's response."""
    value = parse_threshold(raw)
    store.put_setting(THRESHOLD_KEY, value)
    return {"status": "success", "threshold": value,
            "message": f"Capacity alert threshold set to {value:g}%"}


def level_for(utilization: float, threshold: float) -> str:
    """critical > 90, warning > threshold, normal > 50, else plenty."""
    if utilization > CRITICAL_ABOVE:
        return "critical"
    if utilization > threshold:
        return "warning"
    if utilization > NORMAL_ABOVE:
        return "normal"
    return "plenty"


def alert_level(utilization: float, threshold: float) -> str:
    """The alert side of a level: ok, warning or critical."""
    level = level_for(utilization, threshold)
    return level if level in ("warning", "critical") else "ok"


# ------------------------------------------------------------------------ measurements


def _cgroup_available() -> int | None:
    """Memory left under this container's cgroup v2 limit, if there is one."""
    try:
        limit = open("/sys/fs/cgroup/memory.max").read().strip()  # noqa: SIM115
        if limit == "max":
            return None
        current = int(open("/sys/fs/cgroup/memory.current").read().strip())  # noqa: SIM115
        return max(int(limit) - current, 0)
    except (OSError, ValueError):
        return None


def host_memory() -> dict:
    """Total and available memory of this host (capped by a cgroup limit when there is one)."""
    vm = psutil.virtual_memory()
    available = vm.available
    cgroup = _cgroup_available()
    if cgroup is not None:
        available = min(available, cgroup)
    return {"total": vm.total, "available": available, "percent": vm.percent,
            "cgroup_limited": cgroup is not None}


# -------------------------------------------------------------------------------- figures


def running_count() -> int:
    """Strategies holding a slot: running, starting, stalled, stopping or wanted running."""
    return active_count()


def port_pool_status(running: int | None = None, host_count: int | None = None) -> dict:
    """The design's port-pool shape (PortPool.status over every live supervisor host)."""
    cap = current_settings().system.capacity
    running = running_count() if running is None else running
    hosts = max(len(live_hosts()), 1) if host_count is None else host_count
    return PortPool.from_app().status(running_strategies=running,
                                      max_concurrent=cap.max_strategies, host_count=hosts)


@dataclass
class Snapshot:
    """Everything the capacity API, page, job and recommendations use, measured once."""

    running: int
    max_strategies: int
    port_pool: dict
    bots: dict
    memory: dict
    cpu_count: int
    host_cpu_percent: float | None
    remote_hosts: list[dict]
    fit: dict
    threshold: float
    timestamp: float

    @property
    def utilization(self) -> float:
        """The design's utilisation: running / max_strategies, in percent."""
        return round(self.running * 100 / self.max_strategies, 2) if self.max_strategies else 100.0

    @property
    def effective_utilization(self) -> float:
        """running / (running + bots that still fit), in percent."""
        room = self.running + self.fit["total"]
        return round(self.running * 100 / room, 2) if room else 100.0

    @property
    def level(self) -> str:
        return level_for(self.effective_utilization, self.threshold)

    def capacity_info(self) -> dict:
        """The design's `GET /capacity` shape, plus what the bots really use."""
        return {
            "max_strategies": self.max_strategies,
            "running_strategies": self.running,
            "available_slots": max(self.max_strategies - self.running, 0),
            "utilization_percent": self.utilization,
            "port_range": self.port_pool["port_range"],
            "can_start_more": self.running < self.max_strategies and self.fit["total"] > 0,
            "architecture": ARCHITECTURE,
            "bots_that_fit": self.fit["total"],
            "bots_that_fit_here": self.fit["here"],
            "limited_by": self.fit["limited_by"],
            "effective_utilization_percent": self.effective_utilization,
            "level": self.level,
            "alert_threshold": self.threshold,
        }


def snapshot(bots: dict | None = None) -> Snapshot:
    """Measure capacity now.

    Bots that fit are counted per host: this machine from psutil (every supervisor host
    address that is local), each other live supervisor from its heartbeat's free memory; on
    each host min(free memory / average bot memory, free ports there). The total is capped by
    the free slots of system.capacity.max_strategies.
    """
    cap = current_settings().system.capacity
    running = running_count()
    supervisors = live_hosts()
    pool = port_pool_status(running, max(len(supervisors), 1))
    if bots is None:  # pages: what the status sweep measured (it measures every bot each pass)
        bots = last_measurement()
        if not bots["measured"] and running:
            bots = measure_bots()  # nothing measured yet (first minutes): once, then stored
    memory = host_memory()
    average = max(bots["average_bot_memory"], 1)
    local = local_addresses()
    size = cap.port_range_end - cap.port_range_start + 1
    allocated = {h: v.get("allocated_ports", 0) for h, v in pool.get("hosts", {}).items()}
    here_hosts = ({h for h in allocated if is_local_host(h, local)}
                  | {current_settings().system.runtime.host}
                  | {h.host for h in supervisors if is_local_host(h.host, local)})
    free_slots = max(cap.max_strategies - running, 0)
    by_memory = int(memory["available"] // average)
    by_ports = max(size * len(here_hosts) - sum(allocated.get(h, 0) for h in here_hosts), 0)
    remote = []
    for info in supervisors:
        if is_local_host(info.host, local):
            continue
        memory_fit = int(info.free_memory // average)
        port_fit = max(size - allocated.get(info.host, 0), 0)
        remote.append({"host": info.host, "free_memory": info.free_memory,
                       "total_memory": info.total_memory, "running": info.running,
                       "bots_that_fit": min(memory_fit, port_fit),
                       "limited_by": "memory" if memory_fit <= port_fit else "ports"})
    here_fit = min(by_memory, by_ports)
    hosts_fit = here_fit + sum(r["bots_that_fit"] for r in remote)
    total = min(hosts_fit, free_slots)
    if free_slots < hosts_fit:
        limited_by = "slots"
    else:
        memory_bound = by_memory <= by_ports
        limited_by = "memory" if memory_bound or any(
            r["limited_by"] == "memory" for r in remote) else "ports"
    fit = {
        "here": min(here_fit, free_slots), "total": total, "by_memory": by_memory,
        "by_ports": by_ports, "by_slots": free_slots, "limited_by": limited_by,
        "formula": "available memory / average bot memory, capped by free ports and slots",
    }
    return Snapshot(running=running, max_strategies=cap.max_strategies, port_pool=pool,
                    bots=bots, memory=memory, cpu_count=psutil.cpu_count() or 1,
                    host_cpu_percent=_host_cpu(), remote_hosts=remote, fit=fit,
                    threshold=alert_threshold(), timestamp=time.time())


def _host_cpu() -> float | None:
    """CPU % of the host: the last status sample (a 30 s average) or a fresh measurement."""
    return current_status(max_age=300).get("cpu_percent")


def capacity_info() -> dict:
    """`GET /api/v1/system/capacity`."""
    return snapshot().capacity_info()


def resources(snap: Snapshot) -> dict:
    """What the bots use and what the host has, for the detailed view."""
    return {
        "bots": snap.bots,
        "host": {
            "hostname": socket.gethostname(),
            "cpu_count": snap.cpu_count,
            "cpu_percent": snap.host_cpu_percent,
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "memory_total": snap.memory["total"],
            "memory_available": snap.memory["available"],
            "memory_percent": snap.memory["percent"],
            "cgroup_limited": snap.memory["cgroup_limited"],
        },
        "bots_that_fit": snap.fit,
        "other_hosts": snap.remote_hosts,
    }


# ----------------------------------------------------------------------- recommendations


_TIERS = (  # the design's hardware tiers: (up to N running, cores, GB, label, cpu % per bot)
    (5, 4, 8, "personal use", 2.0),
    (20, 8, 16, "small team", 1.5),
    (100, 16, 64, "professional team", 0.6),
    (None, 32, 128, "institution", 0.3),
)
_BASE_MEMORY = 2 * GB  # OS, database, Redis, web, gateway, workers


def _gb(value: float) -> str:
    return f"{value / GB:.1f} GiB"


def _count(count: int, singular: str, plural: str) -> str:
    return f"{count} {singular if count == 1 else plural}"


def recommendations(snap: Snapshot) -> list[dict]:
    """The design's levels and hardware advice, computed from this host's real figures."""
    recs: list[dict] = []
    util = snap.effective_utilization
    level = snap.level
    basis = (f"{snap.running} running, room for {snap.fit['total']} more"
             if snap.fit["limited_by"] != "slots"
             else f"{snap.running} of {snap.max_strategies} slots")
    if level == "critical":
        recs.append({"level": "critical", "status": level, "utilization": util,
                     "action": "stop_strategies_or_upgrade",
                     "message": f"Capacity utilisation is above 90% ({util:.2f}%, {basis}): "
                                "stop some strategies or add hardware now."})
    elif level == "warning":
        recs.append({"level": "warning", "status": level, "utilization": util,
                     "action": "plan_upgrade",
                     "message": f"Capacity utilisation is above the {snap.threshold:g}% "
                                f"threshold ({util:.2f}%, {basis}): plan more memory or "
                                "another host."})
    elif level == "normal":
        recs.append({"level": "info", "status": level, "utilization": util,
                     "action": "normal_operation",
                     "message": f"Capacity utilisation is normal ({util:.2f}%, {basis}); "
                                "more strategies can be added."})
    else:
        recs.append({"level": "info", "status": level, "utilization": util,
                     "action": "normal_operation",
                     "message": f"Plenty of capacity ({util:.2f}%, {basis})."})

    bots, mem = snap.bots, snap.memory
    average = bots["average_bot_memory"]
    how = (f"measured: {_count(bots['measured'], 'bot uses', 'bots use')} "
           f"{_gb(bots['memory_pss'])} (PSS), {average / MB:.0f} MiB each"
           if bots["average_basis"] == "measured_pss"
           else f"no bot running to measure; assuming {average / MB:.0f} MiB per bot")
    fit_here = snap.fit["by_memory"]
    mem_level = "critical" if fit_here == 0 else ("warning" if fit_here < 3 else "info")
    recs.append({
        "level": mem_level, "action": "memory_headroom",
        "message": f"This host has {_gb(mem['available'])} of {_gb(mem['total'])} memory "
                   f"available; {how}. About {_count(fit_here, 'more bot fits', 'more bots fit')} "
                   "in memory here.",
        "memory": {"available": mem["available"], "total": mem["total"],
                   "average_bot_memory": average, "bots_that_fit": fit_here},
    })

    running = snap.running
    _, cores, gb, label, cpu_each = next(
        t for t in _TIERS if t[0] is None or running <= t[0])
    measured_cpu_each = (bots["cpu_percent"] / bots["measured"]) if bots["measured"] else None
    cpu_each = measured_cpu_each if measured_cpu_each is not None else cpu_each
    need_memory = running * average + _BASE_MEMORY
    need_cores = max(2, math.ceil(running * cpu_each / 100 * 2) + 1)  # 2x headroom + 1 core
    this_host = {"cpu_cores": snap.cpu_count, "memory_gb": round(mem["total"] / GB, 1)}
    verdict = ("enough" if mem["total"] >= need_memory and snap.cpu_count >= need_cores
               else "not enough")
    recs.append({
        "level": "info" if verdict == "enough" else "warning",
        "action": "hardware_recommendation",
        "message": f"Design tier for {_count(running, 'strategy', 'strategies')} "
                   f"({label}): {cores} CPU cores + "
                   f"{gb} GB. From what the bots really use they need about "
                   f"{_gb(need_memory)} and {need_cores} cores; this host has "
                   f"{snap.cpu_count} cores and {_gb(mem['total'])}: {verdict}.",
        "hardware": {
            "cpu_cores": cores, "memory_gb": gb, "tier": label,
            "estimated_memory_usage": f"~{running * average / GB:.1f}GB",
            "estimated_cpu_usage": f"~{running * cpu_each:.1f}%",
            "required_memory_gb": round(need_memory / GB, 1),
            "required_cpu_cores": need_cores,
            "this_host": this_host,
        },
    })

    usable_per_host = max(mem["total"] - _BASE_MEMORY, average)
    all_memory = snap.max_strategies * average + _BASE_MEMORY
    hosts_needed = math.ceil(snap.max_strategies * average / usable_per_host)
    if hosts_needed > 1:
        recs.append({
            "level": "info", "action": "scale_out",
            "message": f"Running all {snap.max_strategies} allowed strategies at "
                       f"{average / MB:.0f} MiB each needs about {_gb(all_memory)}: "
                       f"{hosts_needed} hosts like this one, each with its own supervisor.",
            "hosts_needed": hosts_needed,
        })
    if snap.cpu_count and bots["cpu_percent"] / snap.cpu_count > 80:
        recs.append({"level": "warning", "action": "cpu_pressure",
                     "message": f"The bots use {bots['cpu_percent']:.0f}% CPU on "
                                f"{snap.cpu_count} cores: add cores or move bots to another "
                                "host."})
    return recs


def detailed() -> dict:
    """`GET /api/v1/system/capacity/detailed` (the design's shape, plus resources)."""
    snap = snapshot()
    return {
        "capacity": snap.capacity_info(),
        "port_pool": snap.port_pool,
        "gateway_health": gateway_health_summary(),
        "resources": resources(snap),
        "recommendations": recommendations(snap),
        "timestamp": snap.timestamp,
    }


def statistics() -> dict:
    """`GET /api/v1/system/statistics` (the design's shape, plus health figures)."""
    snap = snapshot()
    info = snap.capacity_info()
    summary = cached_summary() or {}
    gateway = gateway_health_summary()
    healthy = summary.get("healthy_strategies", gateway.get("healthy_strategies", 0)) or 0
    return {
        "total_strategies": info["running_strategies"],
        "max_strategies": info["max_strategies"],
        "healthy_strategies": healthy,
        "capacity_utilization": info["utilization_percent"],
        "port_range": info["port_range"],
        "uptime_seconds": round(time.time() - psutil.boot_time(), 0),
        "architecture_mode": ARCHITECTURE,
        "can_start_more": info["can_start_more"],
        "stalled_strategies": summary.get("stalled_strategies", 0),
        "average_health_score": summary.get("average_health_score"),
        "effective_utilization": info["effective_utilization_percent"],
        "bots_that_fit": info["bots_that_fit"],
    }


# ------------------------------------------------------------------------- history, job


def record_capacity() -> dict:
    """The periodic job: a capacity sample into the 7-day history; alert once per crossing."""
    snap = snapshot(bots=measure_bots())
    info = snap.capacity_info()
    data = {
        "utilization_percent": info["utilization_percent"],
        "effective_utilization_percent": info["effective_utilization_percent"],
        "running_strategies": snap.running,
        "max_strategies": snap.max_strategies,
        "bots_that_fit": snap.fit["total"],
        "bots_memory_pss": snap.bots["memory_pss"],
        "bots_memory_rss": snap.bots["memory_rss"],
        "average_bot_memory": snap.bots["average_bot_memory"],
        "memory_available": snap.memory["available"],
        "bots_cpu_percent": snap.bots["cpu_percent"],
        "level": info["level"],
    }
    db.session.add(MetricSample(kind="capacity", recorded_at=utcnow(), data=data))
    days = current_settings().system.monitoring.capacity_history_days
    cutoff = utcnow() - timedelta(days=days)
    db.session.execute(delete(MetricSample).where(
        MetricSample.kind.in_(("capacity", "strategy")), MetricSample.recorded_at < cutoff))
    db.session.commit()
    data["alert"] = check_alert(info["effective_utilization_percent"], snap.threshold, info)
    store.publish_live("capacity", info)
    return data


def next_alert_level(previous: str, utilization: float, threshold: float) -> str:
    """The alert level after a sample: up at once, down only HYSTERESIS points past the line."""
    rank = store.LEVEL_RANK
    raw = alert_level(utilization, threshold)
    if rank[raw] >= rank[previous]:
        return raw
    settled = alert_level(utilization + HYSTERESIS, threshold)
    return settled if rank[settled] < rank[previous] else previous


def check_alert(utilization: float, threshold: float, info: dict | None = None) -> str | None:
    """Raise a capacity alert when the level rises (once per crossing); the new level."""
    previous = (store.get_setting("capacity.alert_state") or {}).get("level", "ok")
    level = next_alert_level(previous, utilization, threshold)
    store.track_level("capacity", level, utilization)
    if store.rose(previous, level):
        detail = ""
        if info:
            detail = (f" {info['running_strategies']} running, "
                      f"{info['bots_that_fit']} more fit, "
                      f"{info['available_slots']} of {info['max_strategies']} slots free.")
        boundary = CRITICAL_ABOVE if level == "critical" else threshold
        raise_alert("capacity", f"Capacity utilisation is {utilization:.2f}%, above "
                    f"{boundary:g}%.{detail}", level, source="monitoring")
    elif level == "ok" and previous != "ok":
        store.resolve_alerts("capacity")
        raise_alert("capacity_recovered", f"Capacity utilisation is back to {utilization:.2f}% "
                    f"(threshold {threshold:g}%).", "info", source="monitoring")
    return level


def _unix(value: datetime) -> float:
    return value.replace(tzinfo=UTC).timestamp()


def trend_direction(values: list[float], one_step: float) -> str:
    """stable / increasing / decreasing from a least-squares line through the values.

    The fitted change over the period must reach one bot's worth (`one_step` points) and 10 %
    of the average to count as a direction.
    """
    n = len(values)
    if n < 2:
        return "stable"
    mean_x = (n - 1) / 2
    mean_y = sum(values) / n
    sxx = sum((i - mean_x) ** 2 for i in range(n))
    slope = sum((i - mean_x) * (v - mean_y) for i, v in enumerate(values)) / sxx
    change = slope * (n - 1)
    if abs(change) < max(one_step * 0.999, 0.1 * abs(mean_y)):
        return "stable"
    return "increasing" if change > 0 else "decreasing"


def _stats(values: list[float], one_step: float) -> dict:
    return {"peak": round(max(values), 2), "average": round(sum(values) / len(values), 2),
            "trend": trend_direction(values, one_step)}


def _thin(points: list[dict], limit: int) -> list[dict]:
    """At most `limit` points: bucket averages (timestamps of each bucket's last point)."""
    if len(points) <= limit:
        return points
    size = math.ceil(len(points) / limit)
    out = []
    for i in range(0, len(points), size):
        chunk = points[i:i + size]
        out.append({
            "timestamp": chunk[-1]["timestamp"],
            "utilization": round(sum(p["utilization"] for p in chunk) / len(chunk), 2),
            "effective_utilization": round(
                sum(p["effective_utilization"] for p in chunk) / len(chunk), 2),
            "running": max(p["running"] for p in chunk),
        })
    return out


def utilization_trend(hours: int) -> dict:
    """`GET /capacity/utilization-trend?hours=N`: current, peak, average, trend, data points.

    Points are the stored 5-minute samples of the period plus the current figure; the
    design's fields describe slot utilisation, `effective` the same for the effective one.
    """
    since = utcnow() - timedelta(hours=hours)
    rows = db.session.scalars(
        select(MetricSample).where(MetricSample.kind == "capacity",
                                   MetricSample.recorded_at >= since)
        .order_by(MetricSample.recorded_at)).all()
    points = [{"timestamp": int(_unix(r.recorded_at)),
               "utilization": float(r.data.get("utilization_percent", 0.0)),
               "effective_utilization": float(r.data.get("effective_utilization_percent",
                                                         r.data.get("utilization_percent", 0.0))),
               "running": int(r.data.get("running_strategies", 0))} for r in rows]
    snap = snapshot()
    info = snap.capacity_info()
    points.append({"timestamp": int(snap.timestamp), "utilization": info["utilization_percent"],
                   "effective_utilization": info["effective_utilization_percent"],
                   "running": snap.running, "current": True})
    one_bot = 100.0 / max(snap.max_strategies, 1)
    slot = _stats([p["utilization"] for p in points], one_bot)
    one_bot_effective = 100.0 / max(snap.running + snap.fit["total"], 1)
    effective = _stats([p["effective_utilization"] for p in points], one_bot_effective)
    return {
        "period_hours": hours,
        "current_utilization": info["utilization_percent"],
        "peak_utilization": slot["peak"],
        "average_utilization": slot["average"],
        "trend": slot["trend"],
        "data_points": _thin(points, MAX_TREND_POINTS),
        "effective": {"current_utilization": info["effective_utilization_percent"],
                      "peak_utilization": effective["peak"],
                      "average_utilization": effective["average"],
                      "trend": effective["trend"]},
        "samples": len(rows),
        "alert_threshold": snap.threshold,
    }
