"""Launching and stopping FreqTrade bots: one `freqtrade trade` process per strategy.

`Launcher` is the small interface the supervisor uses; `SubprocessLauncher` implements it with a
plain subprocess per bot (a faster, forking launcher can replace it behind the same interface).

Per strategy the launcher keeps, under system.freqtrade.config_directory (var/bots/<id>/):
`config.json` (written by app.runtime.ft_config), `tradesv3.dryrun.sqlite` (the bot's own
database), `user_data/` and `console.log` (stdout/stderr of the last launch), and the log file
`var/logs/strategy_<id>.log` (FreqTrade's --logfile, kept across restarts).
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path

import psutil

from app.runtime import paths
from app.runtime.bot_client import BotClient, BotError
from app.runtime.credentials import ensure_credentials
from app.system.settings import current_settings

log = logging.getLogger(__name__)

CONSOLE_LOG = "console.log"
_LOG_PREFIX = re.compile(r"^\d{4}-\d\d-\d\d[ T][\d:,.]+ - [\w.]+ - (\w+) - ")
_MEANINGFUL = re.compile(
    r"Impossible to load|Could not (import|load)|Error|error|Exception|Traceback|cannot start|"
    r"not found|does not exist|Invalid|invalid|failed|Failed")
_MAX_ERROR_CHARS = 1500
# FreqTrade logs to stderr (a rich console handler) and to --logfile. Keep only the rotating log
# file (10 x 10 MB), so console.log holds just what is printed before logging is set up and
# crashes, and does not grow for ever.
LOG_CONFIG = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"standard": {"format": "%(asctime)s - %(name)s - %(levelname)s - %(message)s"}},
    "handlers": {},
    "root": {"handlers": [], "level": "INFO"},
}


class LaunchError(RuntimeError):
    """A bot did not come up; `message` is FreqTrade's own reason when it gave one."""

    def __init__(self, message: str, *, exit_code: int | None = None, timed_out: bool = False):
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.timed_out = timed_out


class Launcher(ABC):
    """Starts, watches and stops bot processes on this host."""

    @abstractmethod
    def launch(self, strategy, port: int,
               on_spawn: Callable[[int], None] | None = None) -> int:
        """Start the strategy's bot on `port` and wait until its API answers; the pid.

        `on_spawn(pid)` is called as soon as the process exists (before it is ready), so the
        caller can record the pid. Raises LaunchError (the process is gone by then).
        """

    @abstractmethod
    def is_alive(self, pid: int) -> bool:
        """True while the process runs (a zombie counts as dead)."""

    @abstractmethod
    def stop(self, pid: int, strategy=None, timeout: float | None = None) -> str:
        """Stop a bot: its API stop, SIGTERM, SIGKILL after `timeout`; how it ended."""

    @abstractmethod
    def matches(self, pid: int, strategy_id: int, port: int | None) -> bool:
        """True if `pid` is this strategy's bot: alive, its command line, its port."""

    def exit_code(self, pid: int) -> int | None:
        """The exit status of a process this launcher started, once it has ended."""
        return None

    def forget(self, pid: int) -> None:
        """Drop what the launcher keeps about an ended process (after its exit was handled)."""
        return None

    def failure_reason(self, strategy_id: int) -> str:
        """The errors FreqTrade logged last for a strategy (why it stopped), or ""."""
        return ""


# ------------------------------------------------------------------------------- config


def webhook_url(strategy) -> str:
    """Where the strategy's bot posts its webhooks (signals receiver, token in the query)."""
    base = current_settings().system.web.public_url.rstrip("/")
    return f"{base}/api/v1/signals/webhook/{strategy.id}?token={strategy.webhook_token}"


def simulator_url() -> str:
    """The market simulator's base URL (system.simulator.host/port)."""
    sim = current_settings().system.simulator
    return f"http://{sim.host}:{sim.port}"


def write_bot_files(strategy, port: int, host: str | None = None) -> Path:
    """Create the bot's folder and write its FreqTrade config; the config path.

    Fills in missing API credentials on the strategy (the caller commits them).
    """
    from app.runtime.ft_config import build_bot_config, write_bot_config

    ensure_credentials(strategy)
    settings = current_settings().system
    folder = paths.bot_dir(strategy.id)
    user_data = folder / "user_data"
    user_data.mkdir(parents=True, exist_ok=True)
    paths.logs_dir().mkdir(parents=True, exist_ok=True)
    proxy = getattr(strategy, "proxy", None)
    proxy_url = proxy.url if proxy is not None and proxy.enabled else None
    config = build_bot_config(
        strategy=strategy.strategy_class,
        strategy_path=paths.strategies_dir(),
        exchange=strategy.exchange,
        pairs=list(strategy.pairs or []),
        api_port=port,
        api_host=host or settings.runtime.host,
        api_username=strategy.api_username,
        api_password=strategy.api_password,
        jwt_secret=strategy.jwt_secret,
        ws_token=strategy.ws_token,
        db_url=f"sqlite:///{folder / 'tradesv3.dryrun.sqlite'}",
        user_data_dir=user_data,
        timeframe=strategy.timeframe,
        stake_currency=strategy.stake_currency,
        stake_amount=_stake_amount(strategy.stake_amount),
        max_open_trades=strategy.max_open_trades,
        dry_run_wallet=strategy.dry_run_wallet,
        webhook_url=webhook_url(strategy),
        proxy_url=proxy_url,
        simulator_url=simulator_url(),
        bot_name=strategy.name,
        cors_origins=settings.security.cors_origins,
    )
    config["log_config"] = LOG_CONFIG
    target = paths.config_path(strategy.id)
    write_bot_config(target, config)
    return target


def _stake_amount(value: str | float) -> str | float:
    """'unlimited' stays a word; '100' becomes 100.0 (FreqTrade wants a number or 'unlimited')."""
    if isinstance(value, str) and value.strip().lower() != "unlimited":
        try:
            return float(value)
        except ValueError:
            return value
    return value


# -------------------------------------------------------------------------- log reading


def _clean(line: str) -> str:
    return _LOG_PREFIX.sub(lambda m: f"{m.group(1)}: ", line.rstrip())


def _tail_bytes(path: Path, offset: int = 0, limit: int = 64_000) -> str:
    """The file from `offset` on (from the start if it shrank), at most its last `limit` bytes."""
    try:
        size = path.stat().st_size
        start = offset if size >= offset else 0
        with path.open("rb") as fh:
            fh.seek(max(start, size - limit))
            return fh.read().decode("utf-8", "replace")
    except OSError:
        return ""


def meaningful_lines(text: str, limit: int = 6, fallback: bool = True) -> list[str]:
    """The lines of a FreqTrade log that explain a failure, cleaned up.

    Errors, "Could not …" warnings and unlogged error output (tracebacks); with none of those
    and `fallback`, the last lines whatever they are.
    """
    lines = [line for line in text.splitlines() if line.strip()]
    picked: list[str] = []
    for line in lines:
        match = _LOG_PREFIX.match(line)
        level = match.group(1) if match else ""
        if level in ("ERROR", "CRITICAL") or (
            level == "WARNING" and "Could not" in line) or (
            not match and _MEANINGFUL.search(line) and not line.startswith(" ")):
            cleaned = _clean(line)
            if cleaned not in picked:
                picked.append(cleaned)
    if not picked and fallback:
        picked = [_clean(line) for line in lines[-limit:]]
    return picked[-limit:]


def describe_failure(text: str, fallback: str) -> str:
    """One message from a failed bot's output: its meaningful lines, or the fallback."""
    lines = meaningful_lines(text)
    if not lines:
        return fallback
    message = "\n".join(lines)
    if len(message) > _MAX_ERROR_CHARS:
        message = "…" + message[-_MAX_ERROR_CHARS:]
    return message


# ------------------------------------------------------------------------- the launcher


class SubprocessLauncher(Launcher):
    """`freqtrade trade` as a child process in its own session (own process group).

    The bots outlive the supervisor when it is killed (they are not in its process group), so a
    restarted supervisor can adopt them. Timeouts come from system.freqtrade at call time.
    """

    def __init__(self, host: str, executable: Path | None = None, poll: float = 0.25):
        self.host = host
        self.executable = executable or paths.freqtrade_executable()
        self.poll = poll
        self._children: dict[int, subprocess.Popen] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------------- launch

    def command(self, strategy_id: int) -> list[str]:
        """The argv of a strategy's bot."""
        return [str(self.executable), "trade", "-c", str(paths.config_path(strategy_id)),
                "--logfile", str(paths.log_path(strategy_id))]

    def _environment(self) -> dict[str, str]:
        # No FREQTRADE__* overrides from our environment, and no PYTEST_* (FreqTrade skips its
        # logging set-up, --logfile included, when it sees PYTEST_VERSION).
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("FREQTRADE__", "PYTEST_"))}
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def launch(self, strategy, port: int,
               on_spawn: Callable[[int], None] | None = None) -> int:
        """Write the config, spawn `freqtrade trade`, wait for /api/v1/ping (startup_timeout)."""
        timeout = float(current_settings().system.freqtrade.startup_timeout)
        try:
            config = write_bot_files(strategy, port, self.host)
        except ValueError as exc:  # build_bot_config refuses unusable values
            raise LaunchError(f"The bot's configuration is not valid: {exc}") from exc
        log_file = paths.log_path(strategy.id)
        log_offset = log_file.stat().st_size if log_file.exists() else 0
        console = config.parent / CONSOLE_LOG
        with console.open("wb") as out:
            proc = subprocess.Popen(  # noqa: S603 - fixed argv: our freqtrade, our config
                self.command(strategy.id), cwd=config.parent, stdin=subprocess.DEVNULL,
                stdout=out, stderr=subprocess.STDOUT, env=self._environment(),
                start_new_session=True,
            )
        with self._lock:
            self._children[proc.pid] = proc
        log.info("strategy %s: spawned freqtrade pid %s on %s:%s", strategy.id, proc.pid,
                 self.host, port)
        if on_spawn is not None:
            try:
                on_spawn(proc.pid)
            except Exception:
                self._kill_group(proc.pid, signal.SIGKILL)
                self._reap(proc.pid, 5)
                raise
        client = BotClient(host=self.host, port=port, timeout=2.0, connect_timeout=1.0,
                           name=f"strategy {strategy.id}")
        deadline = time.monotonic() + timeout
        try:
            while True:
                code = proc.poll()
                if code is not None:
                    reason = self._read_failure(strategy.id, log_offset)
                    raise LaunchError(
                        describe_failure(reason, f"freqtrade exited with code {code} before "
                                                 f"its API answered."), exit_code=code)
                try:
                    if client.ping(timeout=2.0):
                        log.info("strategy %s: bot pid %s ready on port %s", strategy.id,
                                 proc.pid, port)
                        return proc.pid
                except BotError:
                    pass
                if time.monotonic() >= deadline:
                    self.stop(proc.pid, None, timeout=5)
                    reason = self._read_failure(strategy.id, log_offset)
                    lines = "\n".join(meaningful_lines(reason, 4))
                    raise LaunchError(
                        f"The bot did not answer /api/v1/ping on port {port} within "
                        f"{timeout:.0f} s (system.freqtrade.startup_timeout)."
                        + (f"\n{lines}" if lines else ""), timed_out=True)
                time.sleep(self.poll)
        except BaseException:
            if proc.poll() is None:
                self._kill_group(proc.pid, signal.SIGKILL)
            self._reap(proc.pid, 5)
            self.forget(proc.pid)
            raise
        finally:
            client.close()

    def _read_failure(self, strategy_id: int, log_offset: int) -> str:
        logged = _tail_bytes(paths.log_path(strategy_id), log_offset)
        console = _tail_bytes(paths.bot_dir(strategy_id) / CONSOLE_LOG)
        # The console holds what was printed before logging was set up (and tracebacks);
        # the log file holds the rest. Prefer the log, add console lines it lacks.
        extra = [line for line in console.splitlines() if line and line not in logged]
        return logged + "\n" + "\n".join(extra)

    def failure_reason(self, strategy_id: int) -> str:
        """Errors among the last lines FreqTrade wrote for this strategy (log file + console).

        Only the tail is read, so errors logged long before the exit are not blamed for it; a
        bot killed by a signal usually logged nothing, and this is "".
        """
        log_file = paths.log_path(strategy_id)
        size = log_file.stat().st_size if log_file.exists() else 0
        text = self._read_failure(strategy_id, max(size - 4000, 0))
        lines = meaningful_lines(text[-4000:], fallback=False)
        return "\n".join(lines)

    # ------------------------------------------------------------------------- watch

    def is_alive(self, pid: int) -> bool:
        """True while the process runs; reaps our own children, zombies count as dead."""
        with self._lock:
            child = self._children.get(pid)
        if child is not None:
            return child.poll() is None
        try:
            return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return False

    def exit_code(self, pid: int) -> int | None:
        """Exit status of one of our children (negative: killed by that signal)."""
        with self._lock:
            child = self._children.get(pid)
        return child.poll() if child is not None else None

    def forget(self, pid: int) -> None:
        """Drop a finished child from the table (after its exit was handled)."""
        with self._lock:
            self._children.pop(pid, None)

    def matches(self, pid: int, strategy_id: int, port: int | None) -> bool:
        """Alive, `freqtrade trade` with this strategy's config path, listening on `port`."""
        try:
            proc = psutil.Process(pid)
            if proc.status() == psutil.STATUS_ZOMBIE:
                return False
            argv = proc.cmdline()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return False
        config = str(paths.config_path(strategy_id))
        if "trade" not in argv or config not in argv or not any(
                "freqtrade" in Path(part).name for part in argv[:3]):
            return False
        if port is None:
            return False
        try:
            listening = {c.laddr.port for c in proc.net_connections(kind="tcp")
                         if c.status == psutil.CONN_LISTEN}
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return False
        return port in listening

    # ------------------------------------------------------------------------- stop

    @staticmethod
    def _leads_group(pid: int) -> bool:
        try:
            return os.getpgid(pid) == pid
        except ProcessLookupError:
            return False

    def _kill_group(self, pid: int, sig: int, group: bool | None = None) -> None:
        """Signal the bot's process group (it leads its own session); the pid alone if not."""
        if group is None:
            group = self._leads_group(pid)
        try:
            if group:
                os.killpg(pid, sig)
            else:
                os.kill(pid, sig)
        except ProcessLookupError:
            pass

    def _reap(self, pid: int, timeout: float) -> bool:
        """Wait up to `timeout` for the process to end; True if it did."""
        with self._lock:
            child = self._children.get(pid)
        if child is not None:
            try:
                child.wait(timeout)
                return True
            except subprocess.TimeoutExpired:
                return False
        try:
            psutil.Process(pid).wait(timeout)
        except psutil.NoSuchProcess:
            return True
        except psutil.TimeoutExpired:
            return not self.is_alive(pid)
        return True

    def stop(self, pid: int, strategy=None, timeout: float | None = None) -> str:
        """API stop (when the strategy is given) → SIGTERM to the group → SIGKILL after timeout.

        Returns "gone" (already dead), "terminated" or "killed".
        """
        if timeout is None:
            timeout = float(current_settings().system.freqtrade.shutdown_timeout)
        if not self.is_alive(pid):
            self._reap(pid, 0.1)
            return "gone"
        if strategy is not None and strategy.port:
            try:
                BotClient(host=strategy.host or self.host, port=strategy.port,
                          username=strategy.api_username, password=strategy.api_password,
                          timeout=5.0, connect_timeout=1.0).stop()
            except BotError as exc:
                log.info("strategy %s: API stop failed (%s); signalling", strategy.id, exc)
        group = self._leads_group(pid)
        self._kill_group(pid, signal.SIGTERM, group)
        if self._reap(pid, timeout):
            how = "terminated"
        else:
            log.warning("pid %s ignored SIGTERM for %.0f s; killing it", pid, timeout)
            self._kill_group(pid, signal.SIGKILL, group)
            self._reap(pid, 10)
            how = "killed"
        if group:
            self._kill_group(pid, signal.SIGKILL, group)  # leftovers of the group, if any
        self.forget(pid)
        return how
