"""Upgrading bots to another FreqTrade release, one RQ job at a time, without losing a trade.

FreqTrade's trade-database migrations only go forward, so a rollback needs the database from
before the upgrade. The job (`run_upgrade`, on the long-jobs queue) does, with each step recorded
on its `freqtrade_upgrades` row for the page:

1. install the target release if needed (`versions.install`), and verify it before any bot is
   touched: every affected strategy is started once with the target on the market simulator in
   a scratch folder (its own port, its own trade database) until it has analysed a candle —
   a strategy that does not load fails here, with FreqTrade's own message, and nothing stops;
2. for each affected bot: stop, snapshot its trade database (SQLite's backup API), switch the
   strategy's version, start, and wait until it is healthy (ping and a processed candle); only
   this is downtime;
3. on any failure in 2: the bots already switched are stopped, their trade databases put back
   from the snapshots, their previous versions restored and started again; an alert is raised and
   the upgrade is recorded as rolled back with the reason.

Only one upgrade runs at a time; a moving to an older release than a strategy runs is refused
before anything stops (a downgrade past a migration).
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import socket
import time
from pathlib import Path

from redis.exceptions import RedisError
from sqlalchemy import select

from app.clock import utcnow
from app.errors import AppError, Conflict, NotFound
from app.extensions import db, redis_store
from app.monitoring.alerts import raise_alert
from app.runtime import control, paths, versions
from app.runtime.bot_client import BotClient, BotError
from app.runtime.launcher import LaunchError, SubprocessLauncher
from app.runtime.models import FreqtradeUpgrade
from app.runtime.sqlite_copy import copy_database
from app.strategies.models import Strategy
from app.system.settings import current_settings

log = logging.getLogger(__name__)

ACTIVE = ("queued", "installing", "verifying", "switching", "rolling_back")
JOB = "app.tasks.runtime.run_upgrade"
QUEUE = "backups"  # the long-jobs worker: notifications never wait behind an upgrade
SCRATCH_ID_BASE = 10**9  # scratch bot folders: var/bots/<base + strategy id>
HEALTHY_TIMEOUT = 120.0


class UpgradeError(AppError):
    """An upgrade that cannot be done (or failed), and why."""

    status = 422


# ------------------------------------------------------------------------------ requests


def _selected(strategy_ids: list[int] | None) -> list[int]:
    live = select(Strategy.id).where(Strategy.deleted_at.is_(None)).order_by(Strategy.id)
    if strategy_ids is None:
        return list(db.session.scalars(live))
    if not isinstance(strategy_ids, list) or not all(
            isinstance(i, int) and not isinstance(i, bool) and 0 < i < 2**63
            for i in strategy_ids):
        raise UpgradeError("strategies must be a list of strategy ids (or \"all\").",
                           status=400, field="strategies")
    found = set(db.session.scalars(live.where(Strategy.id.in_(strategy_ids))))
    missing = sorted(set(strategy_ids) - found)
    if missing:
        raise NotFound(f"No strategies with ids {missing}.")
    return sorted(set(strategy_ids))


def running_upgrade() -> FreqtradeUpgrade | None:
    return db.session.scalar(select(FreqtradeUpgrade).where(
        FreqtradeUpgrade.status.in_(ACTIVE)).order_by(FreqtradeUpgrade.id.desc()))


def request_upgrade(target: object, strategy_ids: list[int] | None = None,
                    requested_by: str = "", enqueue: bool = True) -> FreqtradeUpgrade:
    """Check the request and queue the upgrade job; the upgrade row. Refused (and nothing
    touched) for a bad version, unknown strategies, a downgrade or a running upgrade."""
    version = versions.parse(target)
    ids = _selected(strategy_ids)
    if not ids:
        raise UpgradeError("There is no strategy to upgrade.", field="strategies")
    versions.check_target(version, ids)
    busy = running_upgrade()
    if busy is not None:
        raise Conflict(f"Upgrade #{busy.id} to FreqTrade {busy.target} is {busy.status}; only "
                       f"one upgrade runs at a time — wait for it to finish.")
    previous = {str(s.id): versions.effective(s.freqtrade_version) for s in db.session.scalars(
        select(Strategy).where(Strategy.id.in_(ids)))}
    row = FreqtradeUpgrade(target=version, strategy_ids=ids, previous=previous,
                           status="queued", steps=[], requested_by=requested_by[:64])
    db.session.add(row)
    db.session.commit()
    if enqueue:
        try:
            redis_store.queue(QUEUE).enqueue(JOB, row.id, job_timeout=4 * 3600,
                                             job_id=f"freqtrade-upgrade-{row.id}")
        except RedisError as exc:
            row.status, row.error = "failed", f"not queued: Redis does not answer ({exc})"
            db.session.commit()
            raise UpgradeError(row.error, status=503) from exc
    return row


# ------------------------------------------------------------------------------ the job


class _Recorder:
    """Steps as they happen, on the upgrade row (committed at once: the page polls it)."""

    def __init__(self, row: FreqtradeUpgrade):
        self.row = row
        self.started = time.monotonic()

    def step(self, what: str, detail: str = "", status: str | None = None) -> None:
        log.info("upgrade %s: %s %s", self.row.id, what, detail)
        entry = {"at": utcnow().isoformat() + "Z", "step": what, "detail": detail[:2000],
                 "seconds": round(time.monotonic() - self.started, 1)}
        self.row.steps = [*self.row.steps, entry]
        if status:
            self.row.status = status
        db.session.commit()


def run_upgrade(upgrade_id: int) -> str:
    """The upgrade job (see the module docstring); its outcome."""
    row = get_upgrade(upgrade_id)
    if row is None:
        raise NotFound(f"No upgrade with id {upgrade_id}.")
    record = _Recorder(row)
    target = row.target
    switched: list[dict] = []
    try:
        record.step(f"installing FreqTrade {target}", status="installing")
        info = versions.install(target, progress=lambda what: record.step("install", what))
        record.step("installed", info["path"])
        record.step("verifying every affected strategy on the simulator", status="verifying")
        for strategy_id in row.strategy_ids:
            strategy = db.session.get(Strategy, strategy_id)
            detail = verify_strategy(strategy, target)
            record.step(f"verified {strategy.name}", detail)
    except Exception as exc:  # noqa: BLE001 - recorded, alerted and re-raised as the outcome
        return _finish(record, "failed", _message(exc), alert=True)
    record.step("switching the bots", status="switching")
    try:
        for strategy_id in row.strategy_ids:
            _switch(record, strategy_id, target, switched)
    except Exception as exc:  # noqa: BLE001
        reason = _message(exc)
        record.step("rolling back", reason, status="rolling_back")
        problems = _roll_back(record, switched)
        if problems:
            reason += " — rollback problems: " + "; ".join(problems)
        return _finish(record, "rolled_back", reason, alert=True)
    return _finish(record, "done", "")


def _message(exc: Exception) -> str:
    return exc.message if isinstance(exc, AppError) else f"{type(exc).__name__}: {exc}"


def _finish(record: _Recorder, status: str, error: str, alert: bool = False) -> str:
    row = record.row
    row.status, row.error, row.finished_at = status, error[:4000], utcnow()
    record.step({"done": "upgrade done", "failed": "upgrade failed, nothing was stopped",
                 "rolled_back": "rolled back"}[status], error)
    if alert:
        with contextlib.suppress(Exception):
            raise_alert("freqtrade_upgrade", f"Upgrade #{row.id} to FreqTrade {row.target} "
                        f"{status.replace('_', ' ')}: {error}"[:1000], "warning",
                        source="freqtrade")
    if status != "done":
        raise UpgradeError(f"Upgrade #{row.id} to FreqTrade {row.target} "
                           f"{status.replace('_', ' ')}: {error}")
    return status


# ------------------------------------------------------------------------------ verification


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def verify_strategy(strategy: Strategy, target: str) -> str:
    """Run the strategy once with the target release in a scratch folder until it analysed a
    candle; what it reported. UpgradeError with FreqTrade's own message when it fails."""
    host = current_settings().system.runtime.host
    scratch = Strategy(**{c.name: getattr(strategy, c.name)
                          for c in Strategy.__table__.columns if c.name != "id"})
    scratch.id = SCRATCH_ID_BASE + strategy.id
    scratch.freqtrade_version = None if target == versions.default_version() else target
    folder = paths.bot_dir(scratch.id)
    launcher = SubprocessLauncher(host, executable=versions.executable(target))
    pid = None
    try:
        try:
            port = _free_port(host)
            pid = launcher.launch(scratch, port)
        except LaunchError as exc:
            raise UpgradeError(f"{strategy.name} does not run on FreqTrade {target}: "
                               f"{exc}") from exc
        client = BotClient(host=host, port=port, username=scratch.api_username,
                           password=scratch.api_password, timeout=5, name=strategy.name)
        reported = client.version().get("version", "?")
        deadline = time.monotonic() + HEALTHY_TIMEOUT
        while time.monotonic() < deadline:
            if not launcher.is_alive(pid):
                reason = launcher.failure_reason(scratch.id) or "the bot exited"
                raise UpgradeError(f"{strategy.name} stopped on FreqTrade {target}: {reason}")
            with contextlib.suppress(BotError):
                if client.health().get("last_process_ts"):
                    return f"FreqTrade {reported} loaded {strategy.strategy_class} and " \
                           f"analysed a candle"
            time.sleep(0.5)
        reason = launcher.failure_reason(scratch.id)
        raise UpgradeError(f"{strategy.name} did not analyse a candle on FreqTrade {target} "
                           f"within {HEALTHY_TIMEOUT:.0f} s" + (f": {reason}" if reason else ""))
    finally:
        if pid is not None:
            with contextlib.suppress(Exception):
                launcher.stop(pid, None, timeout=10)
        launcher.close()
        shutil.rmtree(folder, ignore_errors=True)
        with contextlib.suppress(OSError):
            paths.log_path(scratch.id).unlink()



# ------------------------------------------------------------------------------ switching


def trade_database(strategy_id: int) -> Path:
    return paths.bot_dir(strategy_id) / "tradesv3.dryrun.sqlite"


def _snapshot(strategy_id: int, upgrade_id: int) -> Path | None:
    """A copy of the bot's trade database through SQLite's backup API (None: it has none)."""
    source = trade_database(strategy_id)
    if not source.exists():
        return None
    target = source.with_name(f"{source.name}.before-upgrade-{upgrade_id}")
    copy_database(source, target)
    return target


def _put_back(snapshot: Path | None, strategy_id: int) -> None:
    live = trade_database(strategy_id)
    for suffix in ("-wal", "-shm"):
        Path(f"{live}{suffix}").unlink(missing_ok=True)
    if snapshot is None:
        live.unlink(missing_ok=True)
        return
    copy_database(snapshot, live)


def _stop(strategy_id: int) -> None:
    settings = current_settings().system.freqtrade
    # A bot still starting (or stopping) cannot take a stop yet: let it settle first.
    strategy = control.wait_for_status(strategy_id, ("running", "stalled", "stopped", "error",
                                                     "crashed"), settings.startup_timeout + 30)
    if strategy.status in ("stopped", "error", "crashed") and strategy.desired_state != "running":
        return
    with contextlib.suppress(control.InvalidTransition):
        control.request_stop(strategy_id)
    control.wait_for_status(strategy_id, ("stopped", "error", "crashed"),
                            settings.shutdown_timeout + 30)


def wait_healthy(strategy_id: int, timeout: float = HEALTHY_TIMEOUT) -> None:
    """Until the bot runs, answers ping and has processed a candle; UpgradeError if not."""
    deadline = time.monotonic() + timeout
    strategy = control.wait_for_status(strategy_id, ("running", "error", "crashed"), timeout)
    if strategy.status != "running":
        raise UpgradeError(f"{strategy.name} did not start: {strategy.status_message}")
    client = BotClient.for_strategy(strategy, timeout=5)
    while time.monotonic() < deadline:
        with contextlib.suppress(BotError):
            if client.ping() and client.health().get("last_process_ts"):
                return
        time.sleep(0.25)
    raise UpgradeError(f"{strategy.name} did not become healthy within {timeout:.0f} s "
                       f"(ping and a processed candle).")


def _switch(record: _Recorder, strategy_id: int, target: str, switched: list[dict]) -> None:
    """Stop, snapshot, switch, start, wait healthy; what a rollback needs goes on `switched`
    as soon as the version changed (so a bot that then fails to come up is rolled back too)."""
    strategy = db.session.get(Strategy, strategy_id, populate_existing=True)
    was_running = strategy.desired_state == "running"
    previous = strategy.freqtrade_version
    started = time.monotonic()
    if was_running:
        _stop(strategy_id)
    snapshot = _snapshot(strategy_id, record.row.id)
    strategy = db.session.get(Strategy, strategy_id, populate_existing=True)
    strategy.freqtrade_version = None if target == versions.default_version() else target
    db.session.commit()
    switched.append({"id": strategy_id, "previous": previous, "snapshot": snapshot,
                     "was_running": was_running})
    if was_running:
        control.request_start(strategy_id)
        wait_healthy(strategy_id)
        downtime = round(time.monotonic() - started, 2)
        record.row.downtime = {**record.row.downtime, str(strategy_id): downtime}
        record.step(f"{strategy.name} runs FreqTrade {target}", f"down {downtime} s")
    else:
        record.step(f"{strategy.name} set to FreqTrade {target}", "not running")


def _roll_back(record: _Recorder, switched: list[dict]) -> list[str]:
    """Put every switched bot back: previous version, trade database, running state."""
    problems = []
    for item in reversed(switched):
        strategy_id = item["id"]
        try:
            _stop(strategy_id)
            _put_back(item["snapshot"], strategy_id)
            strategy = db.session.get(Strategy, strategy_id, populate_existing=True)
            strategy.freqtrade_version = item["previous"]
            db.session.commit()
            if item["was_running"]:
                control.request_start(strategy_id)
                wait_healthy(strategy_id)
            record.step(f"{strategy.name} back on FreqTrade "
                        f"{versions.effective(item['previous'])}", "trade database restored")
        except Exception as exc:  # noqa: BLE001 - go on with the others, report all
            db.session.rollback()
            problems.append(f"strategy {strategy_id}: {_message(exc)}")
    return problems


# ------------------------------------------------------------------------------ reading


def get_upgrade(upgrade_id: int) -> FreqtradeUpgrade | None:
    return db.session.get(FreqtradeUpgrade, upgrade_id)


def history(limit: int = 50) -> list[FreqtradeUpgrade]:
    return list(db.session.scalars(select(FreqtradeUpgrade).order_by(
        FreqtradeUpgrade.id.desc()).limit(limit)))


def upgrade_json(row: FreqtradeUpgrade) -> dict:
    return {"id": row.id, "target": row.target, "strategies": row.strategy_ids,
            "previous": row.previous, "status": row.status, "steps": row.steps,
            "downtime_seconds": row.downtime, "error": row.error,
            "requested_by": row.requested_by,
            "created_at": row.created_at.isoformat() + "Z" if row.created_at else None,
            "finished_at": row.finished_at.isoformat() + "Z" if row.finished_at else None}
