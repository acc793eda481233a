"""The supervisor of one host: it owns the FreqTrade bots of that host.

`flask supervisor run [--host 127.0.0.1]` runs `Supervisor(app, host).run()`. Every
system.runtime.supervisor_check_interval (1 s) it:

- takes the commands queued for its host (app/runtime/hosts.py) and acts on them at once;
- checks every bot process: one that died unexpectedly is restarted with backoff
  (app/runtime/crash_policy.py); too many crashes → status `crashed` and an alert;
- reconciles with the database: strategies placed on this host and wanted running get started,
  those wanted stopped (or deleted) get stopped — so a lost command is still carried out;
- writes its heartbeat (free memory, bots running) for placement, and picks up config reloads.

Starts and stops run in background threads, so one slow bot never holds up the checks or the
other bots. Every exit path of a bot releases its port and records a StrategyEvent.

On start the supervisor adopts the bots of its host that still run (pid alive, command line
`freqtrade trade` with that strategy's config, listening on the recorded port) instead of
starting duplicates. SIGTERM/SIGINT stop all its bots (the system is shutting down; their
desired state is kept, so the next supervisor starts them again) unless `keep_bots` is set;
SIGKILL leaves them running for the next supervisor to adopt.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil
from flask import Flask
from redis.exceptions import RedisError
from sqlalchemy import or_, select

from app.clock import utcnow
from app.extensions import db, redis_store
from app.monitoring.alerts import raise_alert
from app.runtime import hosts, paths, placement
from app.runtime.control import ACTIVE_STATUSES, record_event
from app.runtime.crash_policy import CrashPolicy
from app.runtime.credentials import ensure_credentials
from app.runtime.launcher import Launcher, LaunchError, VersionedLauncher
from app.runtime.port_pool import PortPool, PortPoolExhausted
from app.strategies.models import Strategy
from app.system.settings import current_settings, refresh_if_changed

log = logging.getLogger(__name__)

FENCE_AFTER = hosts.HEARTBEAT_TTL * 0.6  # seconds without a heartbeat before a host fences
EVENTS_CHANNEL = "btcw:runtime:events"  # pub/sub: {"strategy_id", "status", "host", "port"}


@dataclass
class Bot:
    """What the supervisor knows about one strategy's bot on its host."""

    strategy_id: int
    state: str  # launching | running | stopping | restarting | backoff
    pid: int | None = None
    port: int | None = None
    restart_at: float | None = None  # monotonic time of the next restart (state backoff)
    cancel: bool = False  # a stop arrived while launching
    adopted: bool = False


class Supervisor:
    """Starts, watches, restarts and stops the bots of one host."""

    def __init__(self, app: Flask, host: str | None = None, launcher: Launcher | None = None,
                 clock: Callable[[], float] = time.monotonic, keep_bots: bool = False,
                 max_parallel_starts: int | None = None,
                 on_tick: Callable[[], object] | None = None):
        self.app = app
        with app.app_context():
            settings = current_settings().system
            self.host = host or settings.runtime.host
            self.policy = CrashPolicy(settings.runtime.max_crashes,
                                      settings.runtime.crash_window_minutes * 60,
                                      settings.runtime.backoff_max_seconds, clock=clock)
            # system.runtime.launcher, one per FreqTrade version in use
            self.launcher = launcher or VersionedLauncher(self.host)
        self.clock = clock
        self.on_tick = on_tick  # the entry point's extra check each pass (the watchdog)
        self.keep_bots = keep_bots
        self.bots: dict[int, Bot] = {}
        self._lock = threading.RLock()
        self._threads: set[threading.Thread] = set()
        self._stopping = threading.Event()
        self._starts = threading.BoundedSemaphore(max_parallel_starts or os.cpu_count() or 2)
        self._heartbeat_ok = time.monotonic()
        self._copying = threading.BoundedSemaphore(2)
        self._freqtrade = _own_freqtrade()
        self._fenced = False  # stopped its bots after losing its lease (see placement)
        with app.app_context():
            self._copies_due = time.monotonic() + current_settings().system.runtime \
                .trade_copy_interval

    # ============================================================== the loop

    def run(self) -> None:
        """Run until SIGTERM/SIGINT (or request_shutdown()); then stop the bots (see module)."""
        self._install_signals()
        threading.Thread(target=self._watch_lease, name="lease-watch", daemon=True).start()
        with self.app.app_context():
            log.info("supervisor of %s starting (pid %s)", self.host, os.getpid())
            self.recover()
            while not self._stopping.is_set():
                started = time.monotonic()
                try:
                    self.tick()
                except Exception:
                    log.exception("supervisor check failed; continuing")
                    db.session.rollback()
                    self._fence_if_lease_lost()  # cut off from Redis and the database
                interval = float(current_settings().system.runtime.supervisor_check_interval)
                self._take_commands(max(interval - (time.monotonic() - started), 0.05))
            self.shutdown()

    def request_shutdown(self) -> None:
        """Ask run() to end after the current check."""
        self._stopping.set()

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def handler(signum, _frame):
            log.info("supervisor of %s: %s received", self.host, signal.Signals(signum).name)
            self._stopping.set()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def tick(self) -> None:
        """One pass: config refresh, process checks, due restarts, reconcile, heartbeat."""
        refresh_if_changed()
        runtime = current_settings().system.runtime
        self.policy.configure(runtime.max_crashes, runtime.crash_window_minutes * 60,
                              runtime.backoff_max_seconds)
        self.check_processes()
        self.restart_due()
        self.reconcile()
        self.heartbeat()
        if time.monotonic() >= self._copies_due:
            self._copies_due = time.monotonic() + runtime.trade_copy_interval
            self._spawn(self._copy_trade_databases)
        if self.on_tick is not None:
            try:
                self.on_tick()
            except Exception:
                log.exception("supervisor: the per-pass check failed; continuing")
                db.session.rollback()

    def _take_commands(self, wait: float) -> None:
        """Handle queued commands, waiting up to `wait` seconds for the first one."""
        deadline = time.monotonic() + wait
        while not self._stopping.is_set():
            remaining = deadline - time.monotonic()
            try:
                command = hosts.pop_command(redis_store.client, self.host,
                                            timeout=max(remaining, 0))
            except RedisError as exc:
                log.warning("cannot read commands (Redis: %s); database reconcile only", exc)
                time.sleep(max(remaining, 0))
                return
            if command is None:
                if remaining <= 0:
                    return
                continue
            try:
                self.handle_command(command)
            except Exception:
                log.exception("command %s failed", command)
                db.session.rollback()

    # ============================================================== commands

    def handle_command(self, command: dict) -> None:
        """Act on one queued command (start / stop / restart a strategy)."""
        action = command.get("action")
        strategy_id = command.get("strategy_id")
        log.info("command %s strategy %s", action, strategy_id)
        if action == "start":
            self.policy.reset(strategy_id)
            self._reconcile_one(strategy_id)
        elif action == "stop":
            self.policy.reset(strategy_id)
            self._reconcile_one(strategy_id)
        elif action == "restart":
            self.policy.reset(strategy_id)
            self.restart(strategy_id)
        else:
            log.warning("ignored malformed supervisor command %r", command)

    def restart(self, strategy_id: int) -> None:
        """Stop the strategy's bot (if any) and start it again, in the background."""
        with self._lock:
            bot = self.bots.get(strategy_id)
            if bot is not None and bot.state in ("launching", "stopping", "restarting"):
                log.info("strategy %s is %s; restart ignored", strategy_id, bot.state)
                return
            if bot is None or bot.state == "backoff":
                self.bots[strategy_id] = Bot(strategy_id, "launching")
                self._spawn(self._launch_thread, strategy_id, "restart")
                return
            bot.state = "restarting"
        self._spawn(self._restart_thread, strategy_id)

    # ============================================================== checks

    def check_processes(self) -> None:
        """Find bots that died without being asked to; restart them with backoff or give up."""
        with self._lock:
            running = [b for b in self.bots.values() if b.state == "running"]
        for bot in running:
            if bot.pid is not None and not self.launcher.is_alive(bot.pid):
                self._on_unexpected_exit(bot)

    def _on_unexpected_exit(self, bot: Bot) -> None:
        pid = bot.pid
        code = self.launcher.exit_code(pid)
        reason = self.launcher.failure_reason(bot.strategy_id)
        self.launcher.forget(pid)
        PortPool.from_app().release(bot.strategy_id)
        decision = self.policy.record_crash(bot.strategy_id)
        how = f"exit code {code}" if code is not None and code >= 0 else (
            f"killed by {signal.Signals(-code).name}" if code is not None else "process gone")
        strategy = db.session.get(Strategy, bot.strategy_id, populate_existing=True)
        window = current_settings().system.runtime.crash_window_minutes
        if strategy is None:
            with self._lock:
                self.bots.pop(bot.strategy_id, None)
            return
        detail = f"Bot pid {pid} died unexpectedly ({how})."
        if reason:
            detail += f"\n{reason}"
        strategy.pid = None
        strategy.port = None
        if decision.give_up or strategy.desired_state != "running":
            with self._lock:
                self.bots.pop(bot.strategy_id, None)
            if decision.give_up:
                message = (f"{detail}\nGave up after {decision.crashes_in_window} crashes within "
                           f"{window} minutes; start it again when fixed.")
                strategy.status = "crashed"
                strategy.desired_state = "stopped"
            else:
                message = detail
                strategy.status = "stopped"
            strategy.status_message = message
            strategy.stopped_at = utcnow()
            record_event(strategy.id, "crashed", message, pid)
            db.session.commit()
            self._publish(strategy)
            if decision.give_up:
                self._alert(strategy, message, "critical")
            return
        with self._lock:
            bot.state = "backoff"
            bot.pid = None
            bot.port = None
            bot.restart_at = self.clock() + decision.delay
        message = (f"{detail}\nRestarting in {decision.delay:.0f} s (crash "
                   f"{decision.crashes_in_window} of at most "
                   f"{self.policy.max_crashes} within {window} minutes).")
        strategy.status = "starting"
        strategy.status_message = message
        record_event(strategy.id, "crashed", message, pid)
        db.session.commit()
        self._publish(strategy)
        self._alert(strategy, message, "warning")

    def _alert(self, strategy: Strategy, message: str, severity: str) -> None:
        try:
            raise_alert("bot_crashed", f"Strategy {strategy.name}: {message}", severity=severity,
                        strategy_id=strategy.id, source=f"supervisor@{self.host}")
        except Exception:
            log.exception("could not record the bot_crashed alert of strategy %s", strategy.id)
            db.session.rollback()

    def restart_due(self) -> None:
        """Start the bots whose backoff has run out."""
        now = self.clock()
        due = []
        with self._lock:
            for bot in self.bots.values():
                if bot.state == "backoff" and bot.restart_at is not None and bot.restart_at <= now:
                    bot.state = "launching"
                    bot.restart_at = None
                    due.append(bot.strategy_id)
        for strategy_id in due:
            self._spawn(self._launch_thread, strategy_id, "crash")

    # ============================================================== reconcile

    def _mine(self):
        """Strategies of this host the supervisor has to look at (wanted or in motion)."""
        return db.session.scalars(
            select(Strategy).where(
                Strategy.host == self.host,
                or_(Strategy.desired_state == "running", Strategy.status.in_(ACTIVE_STATUSES),
                    Strategy.pid.is_not(None)),
            ).execution_options(populate_existing=True)
        ).all()

    def reconcile(self) -> None:
        """Make the bots of this host match the database (desired_state, deletions)."""
        db.session.rollback()  # a fresh read transaction: see other processes' commits
        rows = {s.id: s for s in self._mine()}
        with self._lock:
            known = set(self.bots)
        for strategy_id in known - set(rows):
            strategy = db.session.get(Strategy, strategy_id, populate_existing=True)
            if strategy is None or strategy.deleted_at is not None or strategy.host != self.host:
                self._stop_bot(strategy_id, "the strategy was deleted or moved")
        for strategy in rows.values():
            self._reconcile_strategy(strategy)

    def _reconcile_one(self, strategy_id: int) -> None:
        db.session.rollback()
        strategy = db.session.get(Strategy, strategy_id, populate_existing=True)
        if strategy is None:
            self._stop_bot(strategy_id, "the strategy no longer exists")
            return
        if strategy.host != self.host:
            log.warning("strategy %s is placed on %s, not %s; command ignored", strategy_id,
                        strategy.host, self.host)
            return
        self._reconcile_strategy(strategy)

    def _reconcile_strategy(self, strategy: Strategy) -> None:
        with self._lock:
            bot = self.bots.get(strategy.id)
        wanted = strategy.desired_state == "running" and strategy.deleted_at is None
        if wanted:
            if bot is None and strategy.status not in ("error", "crashed"):
                self._start_bot(strategy.id)
            return
        if bot is not None:
            self._stop_bot(strategy.id, "stop requested")
            return
        if strategy.pid and self.launcher.is_alive(strategy.pid):
            # A bot this supervisor does not own (left over): stop it like any other.
            with self._lock:
                self.bots[strategy.id] = Bot(strategy.id, "running", pid=strategy.pid,
                                             port=strategy.port, adopted=True)
            self._stop_bot(strategy.id, "stop requested")
            return
        if strategy.status in ACTIVE_STATUSES or strategy.pid or strategy.port:
            self._mark_stopped(strategy, "")

    def _start_bot(self, strategy_id: int) -> None:
        with self._lock:
            if strategy_id in self.bots:
                return
            self.bots[strategy_id] = Bot(strategy_id, "launching")
        self._spawn(self._launch_thread, strategy_id, "start")

    def _stop_bot(self, strategy_id: int, reason: str) -> None:
        with self._lock:
            bot = self.bots.get(strategy_id)
            if bot is None or bot.state == "stopping":
                return
            if bot.state == "launching":
                bot.cancel = True
                pid = bot.pid
                if pid is not None:  # make the launch fail fast; its thread cleans up
                    self._spawn(self.launcher.stop, pid, None, 5.0)
                return
            if bot.state == "backoff":
                self.bots.pop(strategy_id)
                self._spawn(self._finish_stopped, strategy_id, "stopped during restart backoff")
                return
            if bot.state == "restarting":
                bot.cancel = True
                return
            bot.state = "stopping"
        self._spawn(self._stop_thread, strategy_id, reason)

    # ============================================================== threads

    def _spawn(self, target, *args) -> threading.Thread:
        def body():
            try:
                target(*args)
            except Exception:
                log.exception("%s%s failed", getattr(target, "__name__", target), args)
            finally:
                with self._lock:
                    self._threads.discard(threading.current_thread())

        thread = threading.Thread(target=body, name=f"{getattr(target, '__name__', 'job')}"
                                  f"-{args[0] if args else ''}", daemon=True)
        with self._lock:
            self._threads.add(thread)
        thread.start()
        return thread

    def _launch_thread(self, strategy_id: int, reason: str) -> None:
        """Allocate a port, launch the bot, record the outcome (runs in its own thread)."""
        with self._starts, self.app.app_context():
            try:
                self._launch(strategy_id, reason)
            finally:
                db.session.remove()

    def _launch(self, strategy_id: int, reason: str) -> None:
        pool = PortPool.from_app()
        strategy = db.session.get(Strategy, strategy_id, populate_existing=True)
        with self._lock:
            bot = self.bots.get(strategy_id)
        if bot is None:
            return
        if (strategy is None or strategy.deleted_at is not None or bot.cancel
                or strategy.desired_state != "running" or self._stopping.is_set()
                or strategy.status in ("error", "crashed") or strategy.host != self.host):
            # strategy.host != self.host: placed elsewhere meanwhile (its lease is not ours).
            # Re-checked here: the reconcile that queued this start may have read an old row.
            if strategy is not None and strategy.status in ACTIVE_STATUSES:
                self._mark_stopped(strategy, "")
            with self._lock:
                self.bots.pop(strategy_id, None)
            return
        try:
            port = pool.allocate(strategy_id, self.host)
        except PortPoolExhausted as exc:
            self._launch_failed(strategy, str(exc), reason)
            return
        ensure_credentials(strategy)  # committed here, before the bot's config is written
        notes = [n for n in (placement.sync_sources(),
                             placement.restore_trade_copy(strategy.id, self.host)) if n]
        strategy.port = port
        strategy.pid = None
        strategy.status = "starting"
        strategy.status_message = f"starting on {self.host}:{port}" + (
            f" ({'; '.join(notes)})" if notes else "")
        db.session.commit()
        with self._lock:
            bot.port = port

        def on_spawn(pid: int) -> None:
            with self._lock:
                bot.pid = pid
            db.session.execute(db.update(Strategy).where(Strategy.id == strategy_id)
                               .values(pid=pid))
            db.session.commit()

        try:
            pid = self.launcher.launch(strategy, port, on_spawn=on_spawn)
        except LaunchError as exc:
            pool.release(strategy_id)
            self._launch_failed(strategy, exc.message, reason)
            return
        except Exception as exc:
            log.exception("launch of strategy %s failed", strategy_id)
            db.session.rollback()
            pool.release(strategy_id)
            if bot.pid and self.launcher.is_alive(bot.pid):
                self.launcher.stop(bot.pid, None, timeout=5)
            self._launch_failed(strategy, f"Launch failed: {exc}", reason)
            return
        strategy = db.session.get(Strategy, strategy_id, populate_existing=True)
        with self._lock:
            cancelled = bot.cancel or self._stopping.is_set()
            bot.pid = pid
            bot.state = "stopping" if cancelled else "running"
        if strategy is None or strategy.host != self.host:  # deleted, or placed elsewhere meanwhile
            self.launcher.stop(pid, None)
            pool.release(strategy_id)
            with self._lock:
                self.bots.pop(strategy_id, None)
            return
        strategy.pid = pid
        strategy.port = port
        strategy.started_at = utcnow()
        strategy.stopped_at = None
        strategy.status = "running"
        strategy.status_message = ""
        kind = {"start": "started", "restart": "restarted", "crash": "restarted"}[reason]
        record_event(strategy_id, kind, f"pid {pid} on {self.host}:{port}"
                     + (" after a crash" if reason == "crash" else ""), pid)
        db.session.commit()
        self._publish(strategy)
        if cancelled:
            self._stop_thread(strategy_id, "stop requested while starting")

    def _launch_failed(self, strategy: Strategy, message: str, reason: str) -> None:
        """Record a failed launch: an error (asked-for start) or one more crash (auto restart)."""
        strategy_id = strategy.id
        db.session.rollback()
        strategy = db.session.get(Strategy, strategy_id, populate_existing=True)
        with self._lock:
            bot = self.bots.get(strategy_id)
            cancelled = bot is not None and bot.cancel
        log.warning("strategy %s did not start: %s", strategy_id, message)
        strategy.pid = None
        strategy.port = None
        if cancelled or self._stopping.is_set() or strategy.desired_state != "running":
            self._mark_stopped(strategy, "")
            with self._lock:
                self.bots.pop(strategy_id, None)
            return
        if reason == "crash":
            decision = self.policy.record_crash(strategy_id)
            if not decision.give_up:
                with self._lock:
                    if bot is not None:
                        bot.state, bot.pid, bot.port = "backoff", None, None
                        bot.restart_at = self.clock() + decision.delay
                text = (f"Restart failed: {message}\nTrying again in {decision.delay:.0f} s "
                        f"(crash {decision.crashes_in_window} of at most "
                        f"{self.policy.max_crashes}).")
                strategy.status = "starting"
                strategy.status_message = text
                record_event(strategy_id, "error", text)
                db.session.commit()
                self._publish(strategy)
                return
            text = (f"Restart failed: {message}\nGave up after {decision.crashes_in_window} "
                    f"crashes.")
            self._give_up(strategy, "crashed", text)
            self._alert(strategy, text, "critical")
            return
        self._give_up(strategy, "error", message)

    def _give_up(self, strategy, status: str, message: str) -> None:
        """Leave a bot down for good: status crashed or error, no longer wanted running."""
        strategy.status = status
        strategy.desired_state = "stopped"
        strategy.status_message = message
        strategy.stopped_at = utcnow()
        record_event(strategy.id, status, message)
        db.session.commit()
        with self._lock:
            self.bots.pop(strategy.id, None)
        self._publish(strategy)

    def _stop_thread(self, strategy_id: int, reason: str) -> None:
        """Stop a bot (API stop, SIGTERM, SIGKILL) and record it (runs in its own thread)."""
        with self.app.app_context():
            try:
                with self._lock:
                    bot = self.bots.get(strategy_id)
                    pid = bot.pid if bot else None
                strategy = db.session.get(Strategy, strategy_id, populate_existing=True)
                how = "gone"
                if pid is not None:
                    if strategy is not None:
                        strategy.status = "stopping"
                        db.session.commit()
                    strategy = _without_connection(strategy)
                    how = self.launcher.stop(pid, strategy)
                    self._copy_trade_database(strategy_id)
                self._finish_stopped(strategy_id, f"{reason} (pid {pid} {how})" if pid else reason,
                                     in_context=True)
                with self._lock:
                    self.bots.pop(strategy_id, None)
            finally:
                db.session.remove()

    def _restart_thread(self, strategy_id: int) -> None:
        """Stop then launch again, holding the bot's slot so nothing else starts it meanwhile."""
        with self.app.app_context():
            try:
                with self._lock:
                    bot = self.bots.get(strategy_id)
                    pid = bot.pid if bot else None
                strategy = db.session.get(Strategy, strategy_id, populate_existing=True)
                if pid is not None:
                    if strategy is not None:
                        strategy.status = "stopping"
                        strategy.status_message = "restarting"
                        db.session.commit()
                    strategy = _without_connection(strategy)
                    self.launcher.stop(pid, strategy)
                PortPool.from_app().release(strategy_id)
                with self._lock:
                    bot = self.bots.get(strategy_id)
                    if bot is None:
                        return
                    bot.state, bot.pid, bot.port = "launching", None, None
            finally:
                db.session.remove()
        self._launch_thread(strategy_id, "restart")

    def _finish_stopped(self, strategy_id: int, message: str, in_context: bool = False) -> None:
        if not in_context:
            with self.app.app_context():
                try:
                    self._finish_stopped(strategy_id, message, in_context=True)
                finally:
                    db.session.remove()
            return
        strategy = db.session.get(Strategy, strategy_id, populate_existing=True)
        if strategy is None:
            PortPool.from_app().release(strategy_id)
            return
        self._mark_stopped(strategy, message, event=True)

    def _mark_stopped(self, strategy: Strategy, message: str, event: bool = False) -> None:
        """Status stopped, no pid/port, port released (desired_state unchanged)."""
        PortPool.from_app().release(strategy.id)
        was = strategy.status
        strategy.status = "stopped"
        strategy.status_message = ""
        strategy.pid = None
        strategy.port = None
        strategy.stopped_at = utcnow()
        if event or was in ("running", "starting", "stopping", "stalled"):
            record_event(strategy.id, "stopped", message)
        db.session.commit()
        self._publish(strategy)

    # ============================================================== start-up and shutdown

    def recover(self) -> None:
        """Adopt this host's bots that still run; start those wanted running; clean the rest;
        stop bots still running here for strategies now placed on another host."""
        self._stop_strays()
        pool = PortPool.from_app()
        for strategy in self._mine():
            pid, port = strategy.pid, strategy.port
            wanted = strategy.desired_state == "running" and strategy.deleted_at is None
            if pid and self.launcher.matches(pid, strategy.id, port):
                if wanted:
                    pool.claim(strategy.id, self.host, port)
                    with self._lock:
                        self.bots[strategy.id] = Bot(strategy.id, "running", pid=pid, port=port,
                                                     adopted=True)
                    if strategy.status != "running":
                        strategy.status = "running"
                        strategy.status_message = ""
                    record_event(strategy.id, "adopted",
                                 f"pid {pid} on {self.host}:{port} kept running", pid)
                    db.session.commit()
                    self._publish(strategy)
                    log.info("adopted strategy %s: pid %s port %s", strategy.id, pid, port)
                else:
                    with self._lock:
                        self.bots[strategy.id] = Bot(strategy.id, "running", pid=pid,
                                                     port=port, adopted=True)
                    self._stop_bot(strategy.id, "not wanted running at supervisor start")
                continue
            if pid and self.launcher.is_alive(pid) and self._is_our_freqtrade(pid, strategy.id):
                # Ours but not (yet) listening: a start the previous supervisor did not finish.
                log.info("strategy %s: pid %s was still starting; stopping it", strategy.id, pid)
                self.launcher.stop(pid, None, timeout=5)
            if pid or strategy.port:
                record_event(strategy.id, "lost",
                             f"bot pid {pid} was gone when the supervisor started", pid)
            pool.release(strategy.id)
            strategy.pid = None
            strategy.port = None
            if wanted and strategy.status not in ("error", "crashed"):
                strategy.status = "starting"
                strategy.status_message = "starting again after a supervisor restart"
                db.session.commit()
                self._start_bot(strategy.id)
            else:
                db.session.commit()
                if strategy.status in ACTIVE_STATUSES:
                    self._mark_stopped(strategy, "not running at supervisor start")
        self.heartbeat()

    def _stop_strays(self) -> None:
        """`freqtrade trade` processes of this host's bot folders whose strategy is placed on
        another host (it was rescheduled while this host was lost): stopped, never adopted."""
        marker = str(paths.bots_dir())
        for proc in psutil.process_iter(["cmdline", "pid"]):
            try:
                argv = proc.info["cmdline"] or []
            except psutil.Error:
                continue
            if "trade" not in argv:
                continue
            config = next((a for a in argv if a.startswith(marker) and a.endswith("config.json")),
                          None)
            if config is None:
                continue
            try:
                strategy_id = int(Path(config).parent.name)
            except ValueError:
                continue
            try:  # ours: it listens on this host's address (hosts may share one machine)
                ours = any(c.laddr and c.laddr.ip == self.host and c.status == psutil.CONN_LISTEN
                           for c in proc.net_connections(kind="tcp"))
            except psutil.Error:
                continue
            strategy = db.session.get(Strategy, strategy_id)
            if ours and strategy is not None and strategy.host not in (None, self.host):
                log.warning("strategy %s runs on %s now: stopping its old bot pid %s here",
                            strategy_id, strategy.host, proc.pid)
                record_event(strategy_id, "duplicate_stopped",
                             f"old bot pid {proc.pid} on {self.host} stopped", proc.pid)
                db.session.commit()
                self.launcher.stop(proc.pid, None, timeout=10)

    def _is_our_freqtrade(self, pid: int, strategy_id: int) -> bool:
        try:
            return str(paths.config_path(strategy_id)) in psutil.Process(pid).cmdline()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return False

    def shutdown(self) -> None:
        """Stop every bot of this host in parallel (unless keep_bots), then drop the heartbeat."""
        self._stopping.set()
        if self.keep_bots:
            log.info("supervisor of %s exits; %d bots keep running", self.host, len(self.bots))
        else:
            with self._lock:
                ids = list(self.bots)
            log.info("supervisor of %s stops %d bots", self.host, len(ids))
            for strategy_id in ids:
                self._stop_bot(strategy_id, "the supervisor is shutting down")
        deadline = time.monotonic() + float(
            current_settings().system.freqtrade.shutdown_timeout) + 15
        while time.monotonic() < deadline:
            with self._lock:
                threads = list(self._threads)
            if not threads:
                break
            threads[0].join(max(deadline - time.monotonic(), 0.1))
        try:
            hosts.clear_heartbeat(redis_store.client, self.host)
        except RedisError:
            pass
        log.info("supervisor of %s stopped", self.host)

    # ============================================================== reporting

    def heartbeat(self) -> None:
        """Tell placement this host is alive, how much memory it has free and what it runs."""
        memory = psutil.virtual_memory()
        with self._lock:
            running = sum(1 for b in self.bots.values() if b.state != "stopping")
        info = hosts.HostInfo(host=self.host, pid=os.getpid(), free_memory=memory.available,
                              total_memory=memory.total, running=running, updated_at=time.time(),
                              cpu_percent=psutil.cpu_percent(None), cpu_count=os.cpu_count(),
                              freqtrade=self._freqtrade,
                              launcher=current_settings().system.runtime.launcher)
        try:
            hosts.write_heartbeat(redis_store.client, info)
            self._heartbeat_ok = time.monotonic()
            self._fenced = False
        except RedisError as exc:
            log.warning("heartbeat not written (Redis: %s)", exc)
            self._fence_if_lease_lost()

    def _watch_lease(self) -> None:
        """Apart from the main loop (which may hang on a database or Redis that vanished):
        fence once the heartbeat has not been renewed for a heartbeat lifetime."""
        with self.app.app_context():
            while not self._stopping.wait(1.0):
                try:
                    self._fence_if_lease_lost()
                except Exception:  # noqa: BLE001 - keep watching
                    log.exception("lease watch failed")

    def _fence_if_lease_lost(self) -> None:
        """With reschedule_lost, a supervisor that could not renew its heartbeat for FENCE_AFTER
        seconds stops its bots: the others will mark them lost once the heartbeat has expired
        and start them elsewhere, and a strategy must never run twice."""
        # Fence well before the others may call this host lost (a heartbeat lifetime, plus a
        # watchdog pass), so the old bot is gone before its replacement starts.
        if self._fenced or time.monotonic() - self._heartbeat_ok <= FENCE_AFTER:
            return
        try:
            reschedule = current_settings().system.runtime.reschedule_lost
        except Exception:  # noqa: BLE001 - no settings, no fencing
            return
        if not reschedule:
            return
        self._fenced = True
        with self._lock:
            ids = list(self.bots)
        log.warning("supervisor of %s lost its lease (no heartbeat for %s s): stopping its %d "
                    "bots", self.host, FENCE_AFTER, len(ids))
        for strategy_id in ids:
            with self._lock:
                bot = self.bots.get(strategy_id)
                pid = bot.pid if bot else None
            if pid:
                self._spawn(self.launcher.stop, pid, None, 2.0)  # SIGKILL soon: no overlap

    def _copy_trade_database(self, strategy_id: int) -> None:
        """Copy a bot's trade database into the database (two at a time: stopping 100 bots at
        once must not take every database connection; the session is closed after)."""
        with self._copying:
            try:
                placement.save_trade_copy(strategy_id, self.host)
            except Exception as exc:  # noqa: BLE001 - a copy is a safety net, never a failure
                db.session.rollback()
                log.warning("trade database of strategy %s not copied: %s", strategy_id, exc)
            finally:
                db.session.close()

    def _copy_trade_databases(self) -> None:
        """Copy the trade database of every running bot (every runtime.trade_copy_interval)."""
        with self.app.app_context():
            try:
                with self._lock:
                    ids = [i for i, b in self.bots.items() if b.state == "running"]
                for strategy_id in ids:
                    self._copy_trade_database(strategy_id)
            finally:
                db.session.remove()

    def _publish(self, strategy: Strategy) -> None:
        """Announce a status change (gateway routes, live pages) on EVENTS_CHANNEL."""
        payload = {"strategy_id": strategy.id, "status": strategy.status,
                   "host": strategy.host, "port": strategy.port, "pid": strategy.pid}
        try:
            redis_store.client.publish(EVENTS_CHANNEL, json.dumps(payload))
        except RedisError:
            pass


def _own_freqtrade() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("freqtrade")
    except PackageNotFoundError:
        return ""


def _without_connection(strategy: Strategy | None) -> Strategy | None:
    """The row, loaded and detached, with the session's connection back in the pool: a bot's
    stop waits up to its shutdown timeout, and stopping many at once must not hold one database
    connection each (the pool has far fewer)."""
    if strategy is not None:
        db.session.refresh(strategy)
        db.session.expunge(strategy)
    db.session.close()
    return strategy

