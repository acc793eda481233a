"""Bots over several hosts without shared disk (SPEC §13): strategy files and trade databases
travel through the database, a host that stops sending heartbeats has its bots marked `lost`,
and (with `system.runtime.reschedule_lost`) started on another live host.

- Strategy files: the main host publishes its library into `strategy_sources` (on `flask up`
  and on every upload); a supervisor writes the files into its own strategies folder before a
  bot starts when they are missing there or differ.
- Trade databases: every supervisor copies each running bot's trade database into
  `trade_db_copies` every `system.runtime.trade_copy_interval` seconds and when it stops; a
  bot that starts on a host without its trade database, or with an older one (moved,
  rescheduled), starts from that copy.
- Lost hosts: the watchdog (in cron and in every supervisor) marks the bots of a host without
  a live heartbeat `lost` and alerts once; with reschedule_lost each one wanted running is
  placed on another live host at once. A strategy never runs twice: a supervisor starts a bot
  only while the strategy is placed on its host (checked right before the launch), stops the
  bots of strategies placed elsewhere (also bots it finds still running when it starts), and
  with reschedule_lost stops all its bots when it could not renew its heartbeat for 60 % of a
  heartbeat lifetime — before the others may take them over.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import tempfile
import zlib
from datetime import UTC, datetime
from pathlib import Path

from redis.exceptions import RedisError
from sqlalchemy import select

from app.clock import utcnow
from app.extensions import db, redis_store
from app.monitoring.alerts import raise_alert
from app.runtime import control, hosts, paths
from app.runtime.control import BOT_MEMORY_ESTIMATE, record_event
from app.runtime.models import StrategySource, TradeDbCopy
from app.runtime.sqlite_copy import copy_database
from app.strategies.models import Strategy
from app.system.settings import current_settings

log = logging.getLogger(__name__)

TRADE_DB = "tradesv3.dryrun.sqlite"
LOSABLE = ("starting", "running", "stalled", "stopping")


# ------------------------------------------------------------------------- strategy files


def publish_sources(folder: Path | None = None, names: list[str] | None = None) -> int:
    """Store the library's .py files (or only `names`) in the database; how many changed."""
    base = folder or paths.strategies_dir()
    changed = 0
    for path in sorted(base.glob("*.py")):
        if names is not None and path.name not in names:
            continue
        try:
            content = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            log.warning("strategy file %s not published: %s", path.name, exc)
            continue
        digest = hashlib.sha256(content.encode()).hexdigest()
        row = db.session.get(StrategySource, path.name)
        if row is not None and row.sha256 == digest:
            continue
        if row is None:
            row = StrategySource(file_name=path.name)
            db.session.add(row)
        row.content, row.sha256, row.updated_at = content, digest, utcnow()
        changed += 1
    db.session.commit()
    return changed


def sync_sources(folder: Path | None = None) -> str:
    """Write every published library file (strategies and the helpers they import) that is
    missing in this host's strategies folder or differs there; what happened ("" for nothing)."""
    base = folder or paths.strategies_dir()
    written = []
    for row in db.session.scalars(select(StrategySource).order_by(StrategySource.file_name)):
        target = base / row.file_name
        try:
            if target.exists() and hashlib.sha256(target.read_bytes()).hexdigest() == row.sha256:
                continue
        except OSError:
            pass
        base.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=base, delete=False,
                                         suffix=".tmp") as fh:
            fh.write(row.content)
        Path(fh.name).replace(target)
        written.append(row.file_name)
    return f"library files written from the database: {', '.join(written)}" if written else ""


# ------------------------------------------------------------------------- trade databases


def save_trade_copy(strategy_id: int, host: str) -> int | None:
    """Copy the bot's trade database into the database; its size, or None without one."""
    source = paths.bot_dir(strategy_id) / TRADE_DB
    if not source.exists():
        return None
    with tempfile.TemporaryDirectory() as scratch:
        target = Path(scratch) / TRADE_DB
        copy_database(source, target, self_contained=True)
        data = zlib.compress(target.read_bytes(), 6)
    row = db.session.get(TradeDbCopy, strategy_id)
    if row is None:
        row = TradeDbCopy(strategy_id=strategy_id)
        db.session.add(row)
    row.host, row.taken_at, row.size, row.data = host, utcnow(), len(data), data
    db.session.commit()
    return len(data)


def restore_trade_copy(strategy_id: int, host: str) -> str:
    """Before a bot starts: when this host has no trade database for it, or an older one than
    the latest copy another host took (the bot ran there since), write that copy; what
    happened, "" when nothing was done."""
    target = paths.bot_dir(strategy_id) / TRADE_DB
    row = db.session.get(TradeDbCopy, strategy_id)
    if row is None:
        return ""
    if target.exists() and (row.host == host or datetime.fromtimestamp(
            target.stat().st_mtime, UTC).replace(tzinfo=None) >= row.taken_at):
        return ""  # this host's own database is the newest
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".restoring")
    partial.write_bytes(zlib.decompress(row.data))
    partial.chmod(0o600)
    partial.replace(target)
    taken = row.taken_at.strftime("%Y-%m-%d %H:%M:%S UTC")
    message = f"trade database copied on {row.host} at {taken}"
    if row.host != host:
        record_event(strategy_id, "trades_restored", f"started on {host} from the {message}")
        db.session.commit()
    return message


# ------------------------------------------------------------------------- lost hosts


def _live() -> list[hosts.HostInfo] | None:
    try:
        return hosts.live_hosts(redis_store.client)
    except RedisError as exc:
        log.warning("host heartbeats unreadable (Redis: %s): nothing marked lost", exc)
        return None


def mark_lost() -> list[dict]:
    """Mark the bots of registered hosts without a live heartbeat (their supervisor did not stop
    cleanly: a clean stop unregisters the host) `lost` (alerted once) and, with
    system.runtime.reschedule_lost, place those wanted running on another live host."""
    live = _live()
    if live is None:
        return []
    alive = {h.host for h in live}
    try:  # registered and silent: a host that never registered a supervisor is not "lost"
        silent = hosts.registered_hosts(redis_store.client) - alive
    except RedisError:
        return []
    if not silent:
        return []
    rows = list(db.session.scalars(select(Strategy).where(
        Strategy.deleted_at.is_(None), Strategy.status.in_(LOSABLE),
        Strategy.host.in_(silent))))
    settings = current_settings().system.runtime
    changes = []
    placed: dict[str, int] = {}
    for strategy in rows:
        lost_host = strategy.host
        strategy.status = "lost"
        strategy.status_message = f"host {lost_host} stopped sending heartbeats"
        record_event(strategy.id, "lost", strategy.status_message, strategy.pid)
        change = {"strategy_id": strategy.id, "host": lost_host, "moved_to": None}
        target = None
        if settings.reschedule_lost and strategy.desired_state == "running":
            target = _other_host(live, lost_host, placed)
        if target is not None:
            copy = db.session.get(TradeDbCopy, strategy.id)
            source = (f"its trade database copied on {copy.host} at "
                      f"{copy.taken_at:%H:%M:%S} UTC" if copy else "an empty trade database")
            strategy.host, strategy.pid, strategy.port = target, None, None
            strategy.status = "starting"
            strategy.status_message = f"rescheduled from lost host {lost_host} with {source}"
            record_event(strategy.id, "rescheduled", f"{lost_host} → {target}, {source}")
            placed[target] = placed.get(target, 0) + 1
            change["moved_to"] = target
        changes.append(change)
        db.session.commit()
        with contextlib.suppress(Exception):
            raise_alert("bot_lost", f"{strategy.name}: host {lost_host} is lost"
                        + (f"; rescheduled on {target}" if target else
                           "; it runs again when the host returns"),
                        "critical", strategy_id=strategy.id, source="runtime")
        if target is not None:
            with contextlib.suppress(RedisError):
                hosts.push_command(redis_store.client, target, "start", strategy.id)
    return changes


def move(strategy_id: int, host: str, wait: float = 90.0) -> dict:
    """Move a strategy to another live host: stop its bot (its supervisor copies the trade
    database as it stops), place it there, and start it again if it was wanted running — on the
    new host it starts from that copy. Raises HostUnavailable, InvalidTransition."""
    strategy = control.get_strategy_row(strategy_id)
    if not any(h.host == host for h in (_live() or [])):
        raise control.HostUnavailable(f"No supervisor is running on host {host}.")
    if strategy.host == host:
        raise control.InvalidTransition(f"{strategy.name} is already placed on {host}.")
    was_running = strategy.desired_state == "running"
    old = strategy.host
    if strategy.status in control.ACTIVE_STATUSES:
        control.request_stop(strategy.id)
        strategy = control.wait_for_status(strategy.id, ("stopped", "error", "crashed"), wait)
        if strategy.status not in ("stopped", "error", "crashed"):
            raise control.InvalidTransition(
                f"{strategy.name} did not stop within {wait:.0f} s; not moved.")
    strategy.host = host
    record_event(strategy.id, "moved", f"{old or 'no host'} → {host}")
    db.session.commit()
    if was_running:
        control.request_start(strategy.id, host=host)
    return {"strategy_id": strategy.id, "from": old, "to": host, "started": was_running}


def _other_host(live: list[hosts.HostInfo], lost: str, placed: dict[str, int]) -> str | None:
    """The live host (not `lost`) with the most room, within system.runtime.max_bots_per_host."""
    limit = current_settings().system.runtime.max_bots_per_host
    best, room = None, None
    for h in live:
        if h.host == lost:
            continue
        count = h.running + placed.get(h.host, 0)
        if limit and count >= limit:
            continue
        free = h.free_memory - placed.get(h.host, 0) * BOT_MEMORY_ESTIMATE
        if room is None or free > room:
            best, room = h.host, free
    return best
