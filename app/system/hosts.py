"""The hosts of the fleet (SPEC §13), for the Hosts page, its JSON API and `flask supervisor
hosts`: each registered supervisor's heartbeat (memory, CPU, FreqTrade, launcher), its bots by
status from the database, its free capacity, and its exchange relay's figures."""

from __future__ import annotations

import time

from sqlalchemy import func, select

from app.extensions import db
from app.relay import service as relay_service
from app.runtime import control
from app.runtime.control import BOT_MEMORY_ESTIMATE
from app.strategies.models import Strategy
from app.system.settings import current_settings


def hosts_report() -> dict:
    """Every host: live or silent, with its bots and capacity; totals over the live ones."""
    live = {h.host: h for h in control.live_hosts()}
    registered = control.registered_hosts()
    counts: dict[str, dict[str, int]] = {}
    for host, status, n in db.session.execute(
            select(Strategy.host, Strategy.status, func.count(Strategy.id))
            .where(Strategy.deleted_at.is_(None), Strategy.host.is_not(None))
            .group_by(Strategy.host, Strategy.status)).all():
        counts.setdefault(host, {})[status] = n
    relays = {r["host"]: r for r in relay_service.all_stats()}
    limit = current_settings().system.runtime.max_bots_per_host
    now = time.time()
    rows = []
    for name in sorted(set(live) | registered | set(counts)):
        info = live.get(name)
        bots = counts.get(name, {})
        row = {"host": name, "alive": info is not None, "bots": bots,
               "running": sum(n for s, n in bots.items() if s in ("running", "stalled")),
               "lost": bots.get("lost", 0), "relay": None, "heartbeat_age": None}
        if info is not None:
            fit = int(info.free_memory // BOT_MEMORY_ESTIMATE)
            if limit:
                fit = max(0, min(fit, limit - info.running))
            row.update(info.as_dict(), heartbeat_age=round(now - info.updated_at, 1),
                       room_for_bots=fit, running=info.running)
        relay = relays.get(name)
        if relay:
            row["relay"] = {"requests": relay["counts"]["requests"],
                            "hit_rate": relay["hit_rate"], "age": relay["age"]}
        rows.append(row)
    alive = [r for r in rows if r["alive"]]
    return {
        "hosts": rows,
        "totals": {"hosts": len(rows), "alive": len(alive),
                   "running": sum(r["running"] for r in alive),
                   "free_memory": sum(r.get("free_memory", 0) for r in alive),
                   "total_memory": sum(r.get("total_memory", 0) for r in alive),
                   "room_for_bots": sum(r.get("room_for_bots", 0) for r in alive)},
        "max_bots_per_host": limit,
        "reschedule_lost": current_settings().system.runtime.reschedule_lost,
    }
