"""What each bot process uses (CPU %, RSS, PSS): measured here, kept for the pages.

`measure_bots()` is the one place that measures bot processes: psutil on the machine
the job runs on, CPU % between two measurements with the baseline kept in Redis (so every
process, every gunicorn worker and every job shares it). The strategy status sweep (every
system.monitoring.strategy_status_interval seconds) measures, and so does the Capacity page;
each measurement stores every bot's figures here, in Redis under `btcw:strategy:usage:<id>`,
expiring after USAGE_TTL_SWEEPS sweeps. CPU is measured on every call; memory (a page-table
walk in the kernel, ~5 ms a bot) of the stalest 1/MEMORY_SHARE of the bots and of any whose
figures are older than MEMORY_EVERY seconds or belong to another process, so each bot's memory
is a few sweeps old at most and no sweep walks them all. The strategies list, detail page,
overview and CLI read them with `stored_usage()`; a bot without a stored measurement (just
started, on a host the jobs do not run on, Redis down) shows "—", never a made-up 0.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
import time
from collections.abc import Iterable

import psutil
from redis.exceptions import RedisError
from sqlalchemy import select

from app.extensions import db, redis_store
from app.runtime.control import BOT_MEMORY_ESTIMATE
from app.strategies.models import Strategy
from app.system.settings import current_settings

log = logging.getLogger(__name__)

USAGE_KEY = "btcw:strategy:usage:{id}"
USAGE_TTL_SWEEPS = 3  # a measurement is shown until this many sweeps passed without a new one
MEASURED_STATUSES = ("running", "stalled")
CPU_KEY = "btcw:capacity:proc-cpu"
CPU_MIN_WINDOW = 10.0  # seconds: a CPU baseline younger than this is kept, not replaced
MEMORY_EVERY = 150.0  # seconds a bot's memory figures may be reused
MEMORY_SHARE = 4  # each measurement walks the memory of at least 1/MEMORY_SHARE of the bots


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
                       "memory_pss": p["pss"], "memory_uss": p["uss"],
                       "memory_at": round(p.get("memory_at", measured_at), 3),
                       "measured_at": round(measured_at, 3)}
            pipe.set(USAGE_KEY.format(id=p["strategy_id"]), json.dumps(figures), ex=ttl)
        pipe.execute()
    except RedisError as exc:
        log.warning("bot CPU/memory figures not stored (Redis: %s)", exc)


def stored_usage(strategy_ids: Iterable[int]) -> dict[int, dict]:
    """{strategy id: {"pid", "cpu_percent", "memory_rss", "memory_pss", "memory_uss",
    "memory_at", "measured_at"}} of the bots with a stored measurement (times in Unix seconds;
    memory may be older than CPU, see the module docstring); {} when Redis is down."""
    ids = [int(i) for i in strategy_ids]
    if not ids:
        return {}
    try:
        raw = redis_store.client.mget([USAGE_KEY.format(id=i) for i in ids])
    except RedisError as exc:
        log.warning("bot CPU/memory figures unavailable (Redis: %s)", exc)
        return {}
    return {i: json.loads(value) for i, value in zip(ids, raw, strict=True) if value}


# ---------------------------------------------------------------------- measuring


def local_addresses() -> set[str]:
    addresses = {"localhost", socket.gethostname()}
    try:
        for snics in psutil.net_if_addrs().values():
            addresses.update(s.address for s in snics if s.family in (socket.AF_INET,
                                                                       socket.AF_INET6))
    except OSError:  # pragma: no cover
        pass
    return addresses


def is_local_host(host: str | None, local: set[str] | None = None) -> bool:
    """True when a bot host address is this machine (loopback or one of its addresses)."""
    if not host:
        return True
    try:
        if ipaddress.ip_address(host).is_loopback:
            return True
    except ValueError:
        pass
    return host in (local if local is not None else local_addresses())


def _rollup(pid: int) -> tuple[int, int, int] | None:
    """(rss, pss, uss) from /proc/<pid>/smaps_rollup: the kernel's own sums, ~10× cheaper than
    walking every mapping (psutil's memory_full_info reads the whole smaps); None elsewhere."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as fh:
            text = fh.read()
    except OSError:
        return None
    values = {}
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 3:
            values[parts[0]] = int(parts[1]) * 1024
    if b"Pss:" not in values:
        return None
    uss = values.get(b"Private_Clean:", 0) + values.get(b"Private_Dirty:", 0)
    return values.get(b"Rss:", 0), values[b"Pss:"], uss


def _family(proc: psutil.Process, children: dict[int, list[int]] | None) -> list:
    """The process and its descendants; `children` ({ppid: [pid]}, one scan of the process
    table for a whole measurement) spares a scan per bot."""
    if children is None:
        return [proc, *proc.children(recursive=True)]
    found, todo = [proc], list(children.get(proc.pid, ()))
    while todo:
        pid = todo.pop()
        try:
            found.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            continue
        todo.extend(children.get(pid, ()))
    return found


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for p in psutil.process_iter(["ppid"]):
        children.setdefault(p.info["ppid"], []).append(p.pid)
    return children


def _process_memory(proc: psutil.Process,
                    children: dict[int, list[int]] | None = None) -> tuple[int, int, int]:
    """(rss, pss, uss) of a process and its children."""
    rss = pss = uss = 0
    for p in _family(proc, children):
        rolled = _rollup(p.pid)
        if rolled is not None:
            rss, pss, uss = rss + rolled[0], pss + rolled[1], uss + rolled[2]
            continue
        try:
            info = p.memory_full_info()
            rss += info.rss
            pss += getattr(info, "pss", info.rss)
            uss += getattr(info, "uss", info.rss)
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
        except psutil.AccessDenied:
            info = p.memory_info()
            rss += info.rss
            pss += info.rss
            uss += info.rss
    return rss, pss, uss


def _cpu_seconds(proc: psutil.Process, children: dict[int, list[int]] | None = None) -> float:
    total = 0.0
    for p in _family(proc, children):
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total


def measure_bots() -> dict:
    """Memory and CPU of every running bot process on this machine; stores each bot's figures
    for the strategy pages (bot_usage.store_usage).

    This is the only place bot processes are measured (the status sweep and the Capacity page
    call it). CPU % is measured against the previous measurement (its baseline kept in Redis,
    shared by every process): a baseline younger than CPU_MIN_WINDOW seconds is kept rather
    than replaced, so calls close together (a page refresh right after the sweep) still measure
    over a real window; a call within a second of the baseline repeats the last figure. With no
    baseline yet it is the average over the bot's lifetime.
    """
    local = local_addresses()
    rows = db.session.execute(
        select(Strategy.id, Strategy.name, Strategy.pid, Strategy.host).where(
            Strategy.deleted_at.is_(None), Strategy.status.in_(MEASURED_STATUSES),
            Strategy.pid.is_not(None))
    ).all()
    now = time.time()
    previous = _previous_cpu()
    current_cpu = {}
    processes = []
    children = _children_map() if rows else {}
    rows = [row for row in rows if is_local_host(row.host, local)]
    walk = _memory_due(rows, stored_usage(row.id for row in rows), now)
    for sid, name, pid, host in rows:
        try:
            proc = psutil.Process(pid)
            with proc.oneshot():  # status, CPU times and start time from one read of stat
                if proc.status() == psutil.STATUS_ZOMBIE:
                    continue
                kept = walk.get(sid)
                if kept is None:
                    rss, pss, uss = _process_memory(proc, children)
                    memory_at = now
                else:
                    rss, pss, uss, memory_at = kept
                cpu_seconds = _cpu_seconds(proc, children)
                created = proc.create_time()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        key = f"{pid}:{created:.0f}"
        cpu, current_cpu[key] = _cpu_since(previous.get(key), cpu_seconds, now, created)
        processes.append({"strategy_id": sid, "name": name, "pid": pid, "host": host,
                          "rss": rss, "pss": pss, "uss": uss, "cpu_percent": cpu,
                          "memory_at": memory_at})
    _save_cpu(current_cpu)
    store_usage(processes, now)
    return _totals(processes)


def _memory_due(rows, stored: dict[int, dict], now: float) -> dict[int, tuple]:
    """The memory figures to reuse, by strategy id ((rss, pss, uss, memory_at)); every other
    bot's memory is walked: those without fresh figures of the same process, and the stalest
    so that at least 1/MEMORY_SHARE of the bots are walked each time."""
    reusable = {}
    for row in rows:
        old = stored.get(row.id) or {}
        at = old.get("memory_at")
        if (old.get("pid") == row.pid and isinstance(at, int | float)
                and 0 <= now - at < MEMORY_EVERY
                and all(isinstance(old.get(k), int) for k in ("memory_rss", "memory_pss",
                                                               "memory_uss"))):
            reusable[row.id] = (old["memory_rss"], old["memory_pss"], old["memory_uss"], at)
    walked = len(rows) - len(reusable)
    quota = -(-len(rows) // MEMORY_SHARE)
    for sid in sorted(reusable, key=lambda i: reusable[i][3])[:max(0, quota - walked)]:
        del reusable[sid]
    return reusable


def last_measurement() -> dict:
    """measure_bots()'s shape from what the last measurement stored, without measuring: for
    pages that show the capacity figure on every render."""
    ids = db.session.scalars(
        select(Strategy.id).where(Strategy.deleted_at.is_(None),
                                  Strategy.status.in_(MEASURED_STATUSES),
                                  Strategy.pid.is_not(None))
    ).all()
    processes = [{"strategy_id": sid, "pid": f["pid"], "rss": f["memory_rss"] or 0,
                  "pss": f["memory_pss"] or 0,
                  "uss": f.get("memory_uss") or f["memory_pss"] or 0,
                  "cpu_percent": f["cpu_percent"] or 0.0}
                 for sid, f in stored_usage(ids).items()]
    return _totals(processes)


def _totals(processes: list[dict]) -> dict:
    """Sums and the average bot memory (the estimate when nothing was measured)."""
    count = len(processes)
    total_rss = sum(p["rss"] for p in processes)
    total_pss = sum(p["pss"] for p in processes)
    if count:
        average, basis = total_pss / count, "measured_pss"
    else:
        average, basis = float(BOT_MEMORY_ESTIMATE), "estimate"
    return {
        "measured": count,
        "memory_rss": total_rss,
        "memory_pss": total_pss,
        "memory_uss": sum(p["uss"] for p in processes),
        "average_bot_memory": round(average),
        "average_basis": basis,
        "cpu_percent": round(sum(p["cpu_percent"] for p in processes), 2),
        "processes": processes,
    }


def _cpu_since(before: tuple | None, cpu_seconds: float, now: float,
               created: float) -> tuple[float, tuple]:
    """(CPU % of one process, the baseline to keep) from the previous baseline
    (cpu seconds, time, last CPU %) and the process's CPU seconds now."""
    usable = before is not None and 0 <= now - before[1] <= 900 and cpu_seconds >= before[0]
    if not usable:
        cpu = round(100.0 * cpu_seconds / max(now - created, 1.0), 2)
        return cpu, (cpu_seconds, now, cpu)
    elapsed = now - before[1]
    if elapsed >= 1.0:
        cpu = round(100.0 * (cpu_seconds - before[0]) / elapsed, 2)
    elif len(before) > 2 and before[2] is not None:
        cpu = before[2]
    else:
        cpu = round(100.0 * cpu_seconds / max(now - created, 1.0), 2)
    if elapsed < CPU_MIN_WINDOW:
        return cpu, (before[0], before[1], cpu)
    return cpu, (cpu_seconds, now, cpu)


def _previous_cpu() -> dict:
    try:
        raw = redis_store.client.get(CPU_KEY)
    except RedisError:
        return {}
    return {k: tuple(v) for k, v in json.loads(raw).items()} if raw else {}


def _save_cpu(values: dict) -> None:
    try:
        redis_store.client.set(CPU_KEY, json.dumps(values), ex=1800)
    except RedisError:
        pass
