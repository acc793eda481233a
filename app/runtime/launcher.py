"""Launching and stopping FreqTrade bots: one `freqtrade trade` process per strategy.

`Launcher` is the small interface the supervisor uses. Two implementations, chosen by
system.runtime.launcher (`make_launcher()`):

- `SubprocessLauncher`: a plain `freqtrade trade` subprocess per bot (3.5–5 s to ready, each
  bot imports FreqTrade itself: ~330 MB RSS);
- `ForkLauncher`: bots forked from the zygote (app/runtime/zygote.py), a process that imported
  FreqTrade once; ~1 s to ready, and the bots share the imported code and data with it.

Both give a bot the same files, command line, session and process group, so stopping, watching
and adopting bots (`matches()`) work the same, whichever launcher started them.

Per strategy the launcher keeps, under system.freqtrade.config_directory (var/bots/<id>/):
`config.json` (written by app.runtime.ft_config), `tradesv3.dryrun.sqlite` (the bot's own
database), `user_data/` and `console.log` (stdout/stderr of the last launch), and the log file
`var/logs/strategy_<id>.log` (FreqTrade's --logfile, kept across restarts).
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path

import psutil

from app.runtime import paths, versions, zygote
from app.runtime.bot_client import BotClient, BotError
from app.runtime.credentials import ensure_credentials
from app.runtime.ft_config import build_bot_config, write_bot_config
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


# Seconds the fork launcher keeps asking a busy zygote how a bot ended.
EXIT_CODE_WAIT = 10.0

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

    def close(self) -> None:
        """Release what the launcher holds besides its bots (the bots keep running)."""
        return None


# ------------------------------------------------------------------------------- config


def webhook_url(strategy) -> str:
    """Where the strategy's bot posts its webhooks (signals receiver, token in the query)."""
    base = current_settings().system.web.public_url.rstrip("/")
    return f"{base}/api/v1/signals/webhook/{strategy.id}?token={strategy.webhook_token}"


def simulator_url() -> str:
    """The market simulator's base URL (system.simulator.host/port)."""
    sim = current_settings().system.simulator
    return f"http://{sim.host}:{sim.port}"


def relay_url(exchange: str) -> str | None:
    """Where a bot of `exchange` gets market data when the host's exchange relay serves it."""
    cfg = current_settings().system.exchange_relay
    exchange = (exchange or "").strip().lower()
    if not cfg.enabled or exchange not in ("binance", "simulator"):
        return None
    return f"http://{cfg.host}:{cfg.port}/{exchange}"


def write_bot_files(strategy, port: int, host: str | None = None) -> Path:
    """Create the bot's folder and write its FreqTrade config; the config path.

    Fills in missing API credentials on the strategy (the caller commits them).
    """
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
        relay_url=relay_url(strategy.exchange),
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

    def _environment(self, strategy_id: int | None = None) -> dict[str, str]:
        # No FREQTRADE__* overrides from our environment, and no PYTEST_* (FreqTrade skips its
        # logging set-up, --logfile included, when it sees PYTEST_VERSION).
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("FREQTRADE__", "PYTEST_"))}
        env["PYTHONUNBUFFERED"] = "1"
        # FreqTrade logs through rich, which wraps at the terminal width (80 without one): a
        # wide console keeps each log record on one line in console.log and on the logs page.
        env["COLUMNS"] = "400"
        if strategy_id is not None:
            env["BTCW_STRATEGY_ID"] = str(int(strategy_id))
        return env

    def launch(self, strategy, port: int,
               on_spawn: Callable[[int], None] | None = None) -> int:
        """Write the config, start the bot (`_spawn`), wait for /api/v1/ping (startup_timeout)."""
        timeout = float(current_settings().system.freqtrade.startup_timeout)
        try:
            config = write_bot_files(strategy, port, self.host)
        except ValueError as exc:  # build_bot_config refuses unusable values
            raise LaunchError(f"The bot's configuration is not valid: {exc}") from exc
        log_file = paths.log_path(strategy.id)
        log_offset = log_file.stat().st_size if log_file.exists() else 0
        started = time.monotonic()
        pid = self._spawn(strategy.id, config)
        log.info("strategy %s: spawned freqtrade pid %s on %s:%s", strategy.id, pid,
                 self.host, port)
        if on_spawn is not None:
            try:
                on_spawn(pid)
            except Exception:
                self._kill_group(pid, signal.SIGKILL)
                self._reap(pid, 5)
                self.forget(pid)
                raise
        client = BotClient(host=self.host, port=port, timeout=2.0, connect_timeout=1.0,
                           name=f"strategy {strategy.id}")
        deadline = started + timeout
        try:
            while True:
                ended, code = self._poll(pid)
                if ended:
                    reason = self._read_failure(strategy.id, log_offset)
                    how = f"with code {code}" if code is not None else "(exit code unknown)"
                    raise LaunchError(
                        describe_failure(reason, f"freqtrade exited {how} before its API "
                                                 f"answered."), exit_code=code)
                try:
                    if client.ping(timeout=2.0):
                        log.info("strategy %s: bot pid %s ready on port %s after %.2f s",
                                 strategy.id, pid, port, time.monotonic() - started)
                        return pid
                except BotError:
                    pass
                if time.monotonic() >= deadline:
                    self.stop(pid, None, timeout=5)
                    reason = self._read_failure(strategy.id, log_offset)
                    lines = "\n".join(meaningful_lines(reason, 4))
                    raise LaunchError(
                        f"The bot did not answer /api/v1/ping on port {port} within "
                        f"{timeout:.0f} s (system.freqtrade.startup_timeout)."
                        + (f"\n{lines}" if lines else ""), timed_out=True)
                time.sleep(self.poll)
        except BaseException:
            if self.is_alive(pid):
                self._kill_group(pid, signal.SIGKILL)
            self._reap(pid, 5)
            self.forget(pid)
            raise
        finally:
            client.close()

    def _spawn(self, strategy_id: int, config: Path) -> int:
        """Start `freqtrade trade` for the strategy (its own session, output to console.log)."""
        console = config.parent / CONSOLE_LOG
        with console.open("wb") as out:
            proc = subprocess.Popen(  # noqa: S603 - fixed argv: our freqtrade, our config
                self.command(strategy_id), cwd=config.parent, stdin=subprocess.DEVNULL,
                stdout=out, stderr=subprocess.STDOUT, env=self._environment(strategy_id),
                start_new_session=True,
            )
        with self._lock:
            self._children[proc.pid] = proc
        return proc.pid

    def _poll(self, pid: int) -> tuple[bool, int | None]:
        """(ended, exit code) of a bot being launched; the code may be unknown (None)."""
        if self.is_alive(pid):
            return False, None
        return True, self.exit_code(pid)

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


# ---------------------------------------------------------------------- the fork launcher

ZYGOTE_START_TIMEOUT = 90.0  # seconds for a new zygote to import FreqTrade and listen
ZYGOTE_WATCH_INTERVAL = 2.0  # seconds between the watchdog's checks of the zygote
ZYGOTE_GRACE = 60.0  # seconds a zygote outlives its last owner (a restarting supervisor)
_TITLE_SLACK = 32  # bytes of spare room in the zygote's argv area


def _interpreter(executable: Path) -> str:
    """The Python that runs `executable` (its #! line): the zygote's interpreter and argv[0]."""
    try:
        with open(executable, "rb") as fh:
            first = fh.readline(512)
    except OSError:
        return sys.executable
    if first.startswith(b"#!"):
        parts = first[2:].split()
        if parts and Path(os.fsdecode(parts[0])).name.startswith("python"):
            return os.fsdecode(parts[0])
    return sys.executable


def zygote_socket_path(run_dir: Path) -> Path:
    """The zygote's socket in `run_dir`, or under /tmp when that path is too long for AF_UNIX."""
    path = run_dir / "zygote.sock"
    if len(os.fsencode(path)) < 100:
        return path
    digest = hashlib.sha256(os.fsencode(run_dir)).hexdigest()[:16]
    return Path("/tmp") / f"btcw-zygote-{digest}.sock"  # noqa: S108 - private name, mode 0600


class ForkLauncher(SubprocessLauncher):
    """Bots forked from the zygote (app/runtime/zygote.py) instead of a new interpreter each.

    The zygote runs in its own session, listens on var/run/zygote.sock and outlives the
    supervisor (a restarted supervisor reuses it; without any owner it exits after
    ZYGOTE_GRACE s). A watchdog thread starts it when the launcher is made and starts it again
    whenever it is gone or answers for other code (an upgrade). Its bots do not depend on it:
    they lead their own sessions, so they survive a zygote crash and a supervisor SIGKILL.

    A bot looks exactly like a SubprocessLauncher bot to the rest of the runtime: the same
    files and command line (the child rewrites its argv in place), its own session and process
    group, so stop(), is_alive(), matches() and the supervisor's adoption are inherited. The
    exit code of a bot comes from the zygote, which reaps it. If the zygote cannot be had, a
    launch falls back to a subprocess (logged; counted in `fallbacks`) unless `fallback` is off.
    """

    def __init__(self, host: str, executable: Path | None = None, poll: float = 0.1, *,
                 run_dir: Path | None = None, watch: bool = True, fallback: bool = True,
                 entry: str = zygote.DEFAULT_ENTRY, sys_path: tuple[str, ...] = (),
                 grace: float = ZYGOTE_GRACE):
        super().__init__(host, executable, poll)
        self.run_dir = run_dir or paths.resolve_path("var/run")
        self.run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.socket_path = zygote_socket_path(self.run_dir)
        self.pid_path = self.run_dir / "zygote.pid"
        self.log_path = paths.logs_dir() / "zygote.log"
        self.interpreter = _interpreter(self.executable)
        self.entry = entry
        self.sys_path = tuple(str(p) for p in sys_path)
        self.fallback = fallback
        self.grace = grace
        self.fallbacks = 0
        self.version = zygote.version()
        # Room for the longest command line a bot of this host may get (a 12-digit id).
        self.title_room = zygote.title_size(self.title(10**12 - 1)) + _TITLE_SLACK
        self.zygote_pid: int | None = None
        self._zygote_proc: subprocess.Popen | None = None
        self._zygote_lock = threading.Lock()
        self._closed = threading.Event()
        self._watchdog: threading.Thread | None = None
        if watch:
            self._watchdog = threading.Thread(target=self._watch, name="zygote-watchdog",
                                              daemon=True)
            self._watchdog.start()

    def title(self, strategy_id: int) -> list[str]:
        """The command line a bot shows: what `freqtrade trade` run through its #! line has."""
        return [self.interpreter, *self.command(strategy_id)]

    # ------------------------------------------------------------------ the zygote

    def _ping(self, timeout: float = 3.0) -> dict | None:
        try:
            return zygote.request(self.socket_path, {"op": "ping", "owner": os.getpid()},
                                  timeout)
        except zygote.ZygoteError:
            return None

    def _usable(self, info: dict | None) -> bool:
        return (info is not None and info.get("version") == self.version
                and int(info.get("title_room", 0)) >= self.title_room)

    def ensure_zygote(self, timeout: float = ZYGOTE_START_TIMEOUT) -> dict:
        """A running zygote of this code, started (or replaced) if need be; its ping answer.

        Serialised between the threads of this process and, with a lock file, between the
        supervisors of this machine. Raises zygote.ZygoteError after `timeout` seconds.
        """
        deadline = time.monotonic() + timeout
        if not self._zygote_lock.acquire(timeout=max(timeout, 0.1)):
            raise zygote.ZygoteError("timed out waiting for the zygote to start")
        try:
            info = self._ping()
            if self._usable(info):
                self.zygote_pid = info["pid"]
                return info
            with _FileLock(self.run_dir / "zygote.spawn.lock", deadline):
                return self._start_zygote(deadline)
        finally:
            self._zygote_lock.release()

    def _start_zygote(self, deadline: float) -> dict:
        info = self._ping()  # another supervisor may have started one meanwhile
        if self._usable(info):
            self.zygote_pid = info["pid"]
            return info
        if info is not None:
            log.info("zygote pid %s runs other code or lacks room; replacing it", info["pid"])
            self._retire(int(info["pid"]))
        elif self.zygote_pid is not None:
            log.warning("zygote pid %s is gone; starting a new one", self.zygote_pid)
        starting = lock_holder(self.pid_path)
        if starting is not None:
            # A zygote that holds the pid file but does not answer: still importing (started
            # by another supervisor) or hung. Give it a while, then replace it.
            info = self._wait_for_zygote(None, min(deadline, time.monotonic() + 30))
            if self._usable(info):
                self.zygote_pid = info["pid"]
                return info
            self._retire(starting)
        self._reap_zygote()
        argv = self._zygote_argv()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(self.log_path, "ab") as out:
                proc = subprocess.Popen(  # noqa: S603 - our interpreter, our zygote module
                    argv, cwd=self.run_dir, stdin=subprocess.DEVNULL, stdout=out,
                    stderr=subprocess.STDOUT, env=self._environment(), start_new_session=True)
        except OSError as exc:
            raise zygote.ZygoteError(f"cannot start the zygote: {exc}") from exc
        self._zygote_proc = proc
        log.info("started zygote pid %s (%s)", proc.pid, self.socket_path)
        info = self._wait_for_zygote(proc, deadline)
        if info is None:
            self._retire(proc.pid)
            raise zygote.ZygoteError(
                f"the zygote did not answer within the time allowed; see {self.log_path}")
        self.zygote_pid = info["pid"]
        return info

    def _zygote_argv(self) -> list[str]:
        argv = [self.interpreter, "-P", zygote.__file__, "--socket", str(self.socket_path),
                "--lock", str(self.pid_path), "--owner", str(os.getpid()),
                "--grace", str(self.grace), "--title-room", ""]
        argv[-1] = " " * max(self.title_room - zygote.title_size(argv), 0)
        return argv

    def _wait_for_zygote(self, proc: subprocess.Popen | None, deadline: float) -> dict | None:
        while time.monotonic() < deadline:
            info = self._ping(timeout=2.0)
            if info is not None:
                return info
            if proc is not None and proc.poll() is not None:
                tail = "\n".join(_tail_bytes(self.log_path, 0, 2000).splitlines()[-5:])
                raise zygote.ZygoteError(
                    f"the zygote exited with code {proc.returncode} while starting:\n{tail}")
            time.sleep(0.1)
        return None

    def _retire(self, pid: int) -> None:
        """Make a zygote exit (its bots keep running): ask, then SIGTERM, then SIGKILL."""
        try:
            zygote.request(self.socket_path, {"op": "exit"}, timeout=2.0)
        except zygote.ZygoteError:
            pass
        for sig in (None, signal.SIGTERM, signal.SIGKILL):
            if sig is not None:
                try:
                    os.kill(pid, sig)  # the zygote alone: it is not its bots' group
                except ProcessLookupError:
                    break
            if self._await_exit(pid, 5.0):
                break
        self._reap_zygote()

    def _await_exit(self, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._zygote_proc is not None and self._zygote_proc.pid == pid:
                if self._zygote_proc.poll() is not None:
                    return True
            elif not _pid_running(pid):
                return True
            time.sleep(0.05)
        return False

    def _reap_zygote(self) -> None:
        if self._zygote_proc is not None and self._zygote_proc.poll() is not None:
            self._zygote_proc = None

    def _watch(self) -> None:
        """The watchdog: keep a zygote running (restart it when it dies), with backoff."""
        delay = 0.0
        failures = 0
        while not self._closed.wait(delay):
            try:
                self.ensure_zygote()
                failures = 0
                delay = ZYGOTE_WATCH_INTERVAL
            except zygote.ZygoteError as exc:
                failures += 1
                delay = min(ZYGOTE_WATCH_INTERVAL * 2 ** failures, 60.0)
                log.warning("zygote unavailable (%s); trying again in %.0f s", exc, delay)
            except Exception:
                log.exception("zygote watchdog failed; trying again")
                delay = 10.0
            self._reap_zygote()

    def close(self) -> None:
        """Stop the watchdog and release the zygote (it exits when no other owner uses it)."""
        self._closed.set()
        if self._watchdog is not None:
            self._watchdog.join(ZYGOTE_START_TIMEOUT + 5)
        try:
            zygote.request(self.socket_path, {"op": "release", "owner": os.getpid()},
                           timeout=2.0)
        except zygote.ZygoteError:
            pass
        if self._zygote_proc is not None:
            try:
                self._zygote_proc.wait(5)
            except subprocess.TimeoutExpired:
                pass  # another owner keeps it; it outlives us
            self._reap_zygote()

    # ------------------------------------------------------------------ bots

    def _spawn(self, strategy_id: int, config: Path) -> int:
        """Fork the bot from the zygote; a subprocess when the zygote cannot be had."""
        try:
            return self._fork(strategy_id, config)
        except zygote.ZygoteError as exc:
            if not self.fallback:
                raise LaunchError(f"The zygote could not start the bot: {exc}") from exc
            self.fallbacks += 1
            log.warning("strategy %s: no zygote (%s); starting freqtrade as a subprocess",
                        strategy_id, exc)
            return super()._spawn(strategy_id, config)

    def _fork(self, strategy_id: int, config: Path) -> int:
        timeout = float(current_settings().system.freqtrade.startup_timeout)
        title = self.title(strategy_id)
        if zygote.title_size(title) + _TITLE_SLACK > self.title_room:  # folders were moved
            self.title_room = zygote.title_size(title) + 2 * _TITLE_SLACK
        self.ensure_zygote(min(timeout, ZYGOTE_START_TIMEOUT))
        args = title[2:]  # trade -c <config> --logfile <log>
        answer = zygote.request(self.socket_path, {
            "op": "launch", "owner": os.getpid(), "strategy_id": int(strategy_id),
            "title": title, "entry": self.entry, "args": args, "cwd": str(config.parent),
            "console": str(config.parent / CONSOLE_LOG), "env": self._environment(strategy_id),
            "sys_path": list(self.sys_path),
        }, timeout=zygote.HANDSHAKE_TIMEOUT + 5)
        return int(answer["pid"])

    def _is_subprocess(self, pid: int) -> bool:
        """True for a bot started as a subprocess (a fallback launch)."""
        with self._lock:
            return pid in self._children

    def exit_code(self, pid: int) -> int | None:
        """Exit status of a bot: from the zygote that reaped it (None if it cannot tell).

        How a bot died matters (SIGKILL is what the kernel's out-of-memory killer sends), so a
        zygote that is busy (a launch in progress, a loaded machine) is asked again until
        EXIT_CODE_WAIT has passed; only a pid the zygote does not know ends the wait early.
        """
        if self._is_subprocess(pid):
            return super().exit_code(pid)
        deadline = time.monotonic() + EXIT_CODE_WAIT
        while True:
            state = "no answer"
            try:
                answer = zygote.request(self.socket_path, {"op": "status", "pids": [pid]},
                                        timeout=3.0)
                entry = (answer.get("pids") or {}).get(str(pid), {})
                state = entry.get("state") or "unknown"
                if entry.get("code") is not None:
                    return entry["code"]
            except zygote.ZygoteError:
                pass
            if state == "unknown" or time.monotonic() >= deadline:
                break
            time.sleep(0.1)
        return self._reap_orphan(pid)

    def _reap_orphan(self, pid: int) -> int | None:
        """Exit code of a bot whose zygote died and which was re-parented to us (we are init,
        e.g. pid 1 of a container); reaps it. None when it is not our child."""
        if self._zygote_proc is not None and self._zygote_proc.pid == pid:
            return None
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except (ChildProcessError, OSError):
            return None
        return os.waitstatus_to_exitcode(status) if done == pid else None

    def _reap(self, pid: int, timeout: float) -> bool:
        """Wait up to `timeout` for the process to end (the zygote reaps its children)."""
        if self._is_subprocess(pid):
            return super()._reap(pid, timeout)
        deadline = time.monotonic() + timeout
        while self.is_alive(pid):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True


class _FileLock:
    """An exclusive flock on a file, waited for until a monotonic `deadline`."""

    def __init__(self, path: Path, deadline: float):
        self.path = path
        self.deadline = deadline
        self.fd: int | None = None

    def __enter__(self) -> _FileLock:
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self
            except BlockingIOError:
                if time.monotonic() >= self.deadline:
                    os.close(self.fd)
                    raise zygote.ZygoteError(f"{self.path} stayed locked") from None
                time.sleep(0.1)

    def __exit__(self, *exc) -> None:
        os.close(self.fd)


def lock_holder(path: Path) -> int | None:
    """The pid written in a pid file that its process holds locked, or None (nobody holds it)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return None
        except BlockingIOError:
            text = os.read(fd, 32).decode(errors="replace").strip()
            return int(text) if text.isdigit() else None
    finally:
        os.close(fd)


def _pid_running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def stop_zygote(run_dir: Path, timeout: float = 10.0) -> int | None:
    """Stop the zygote of `run_dir` (SIGTERM, SIGKILL after `timeout`); its pid, or None.

    Its bots keep running. For shutdown scripts and tests; a supervisor leaves its zygote to
    exit on its own (ZYGOTE_GRACE after the last supervisor using it is gone).
    """
    pid = lock_holder(run_dir / "zygote.pid")
    if pid is None:
        return None
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return pid
        try:
            psutil.Process(pid).wait(timeout)
            return pid
        except psutil.NoSuchProcess:
            return pid
        except psutil.TimeoutExpired:
            continue
    return pid


# ------------------------------------------------------------------------------ choosing

LAUNCHERS = {"subprocess": SubprocessLauncher, "fork": ForkLauncher}


class VersionedLauncher(Launcher):
    """The launcher of each FreqTrade version in use, behind one face (what the supervisor
    holds): a bot is launched by its strategy's version's launcher — its own `freqtrade`
    executable and, for `fork`, its own zygote (var/run/ft-<version>/) — and stopped and
    watched by the one that started it (pid-based for bots it adopted)."""

    def __init__(self, host: str, kind: str | None = None):
        self.host = host
        self.kind = kind or current_settings().system.runtime.launcher
        if self.kind not in LAUNCHERS:
            raise ValueError(f"unknown launcher {self.kind!r} (subprocess or fork)")
        self._by_version: dict[str, Launcher] = {}
        self._owner: dict[int, Launcher] = {}
        self._lock = threading.Lock()
        self.default = self.for_version(None)

    def for_version(self, version: str | None) -> Launcher:
        """The launcher of a FreqTrade version (made on first use)."""
        version = versions.effective(version)
        with self._lock:
            launcher = self._by_version.get(version)
            if launcher is None:
                options: dict = {"executable": versions.executable(version)}
                if self.kind == "fork" and version != versions.default_version():
                    options["run_dir"] = paths.resolve_path("var/run") / f"ft-{version}"
                launcher = LAUNCHERS[self.kind](self.host, **options)
                self._by_version[version] = launcher
            return launcher

    def launch(self, strategy, port: int,
               on_spawn: Callable[[int], None] | None = None) -> int:
        launcher = self.for_version(strategy.freqtrade_version)

        def spawned(pid: int) -> None:
            self._owner[pid] = launcher
            if on_spawn is not None:
                on_spawn(pid)

        pid = launcher.launch(strategy, port, on_spawn=spawned)
        self._owner[pid] = launcher
        return pid

    def _of(self, pid: int) -> Launcher:
        return self._owner.get(pid, self.default)

    def is_alive(self, pid: int) -> bool:
        return self._of(pid).is_alive(pid)

    def stop(self, pid: int, strategy=None, timeout: float | None = None) -> str:
        return self._of(pid).stop(pid, strategy, timeout)

    def matches(self, pid: int, strategy_id: int, port: int | None) -> bool:
        return self._of(pid).matches(pid, strategy_id, port)

    def exit_code(self, pid: int) -> int | None:
        return self._of(pid).exit_code(pid)

    def forget(self, pid: int) -> None:
        self._of(pid).forget(pid)
        self._owner.pop(pid, None)

    def failure_reason(self, strategy_id: int) -> str:
        return self.default.failure_reason(strategy_id)

    def close(self) -> None:
        for launcher in list(self._by_version.values()):
            launcher.close()


def make_launcher(host: str, kind: str | None = None, **options) -> Launcher:
    """The launcher system.runtime.launcher names (`subprocess` or `fork`), for `host`.

    `options` go to the launcher's constructor (tests).
    """
    kind = kind or current_settings().system.runtime.launcher
    try:
        cls = LAUNCHERS[kind]
    except KeyError:
        raise ValueError(f"unknown launcher {kind!r} (subprocess or fork)") from None
    return cls(host, **options)
