"""The zygote: one long-lived process that has imported FreqTrade once and forks bots from it.

Started by `ForkLauncher` (app/runtime/launcher.py) as
`python -P app/runtime/zygote.py --socket var/run/zygote.sock --lock var/run/zygote.pid …`
in its own session. It imports FreqTrade and the heavy libraries its bots use with the garbage
collector off (a collection would free objects all over the heap, and a bot's first allocations
would fill those holes, copying the pages they sit in), calls `gc.freeze()` before every fork
(so a bot's collector never writes to the pages it shares with the zygote; the bot turns its
collector on first thing), and answers JSON requests, one per connection, on a Unix socket
only its own user may use (checked with SO_PEERCRED). It never imports the web app, so nothing
it holds (database pools, Redis connections) leaks into the bots.

A launch request forks a child from the zygote's single thread (the zygote refuses to fork while
any other thread runs). The child, before it reports back:

- becomes a session leader (`setsid`), so it outlives the zygote and the supervisor, and the
  launcher can signal its process group, exactly like a `freqtrade trade` subprocess;
- closes the zygote's socket and lock file, points stdin at /dev/null and stdout/stderr at the
  bot's console.log, changes to the bot's folder and takes the environment it was sent;
- rewrites its command line in place (the argv area it inherited; the zygote is started with a
  blank `--title-room` argument so that there is room) to the argv a `freqtrade trade`
  subprocess would have, and its comm to `freqtrade`. `ps`, the launcher's `matches()` and the
  supervisor's adoption after a restart therefore see the same thing for both launchers.

Then it calls FreqTrade's `main(["trade", "-c", config, "--logfile", log])` and leaves with
`os._exit(code)`. The zygote reaps its children and keeps their exit codes (a `status` request
reads them). It exits on SIGTERM, on an `exit` request, or when none of its owners (the
processes that talked to it: supervisors) has been alive for `--grace` seconds; its bots keep
running in every case.

This module is also the client side (`request()`), which imports nothing heavy.
"""

from __future__ import annotations

import argparse
import atexit
import ctypes
import fcntl
import gc
import hashlib
import importlib
import json
import os
import select
import signal
import socket
import struct
import sys
import threading
import time
import traceback
from collections import OrderedDict
from pathlib import Path

PROTOCOL = 1
DEFAULT_ENTRY = "freqtrade.main:main"
MAX_MESSAGE = 1 << 20
HANDSHAKE_TIMEOUT = 10.0  # seconds a forked child has to get ready to run the bot
KEPT_EXIT_CODES = 1000
CHILD_SETUP_FAILED = 70
# What a `freqtrade trade` bot imports (besides its strategy file): loaded once here, shared by
# every bot. A module that fails to import is only reported; the bot imports it itself.
PRELOAD = (
    "freqtrade.main",
    "freqtrade.commands",
    "freqtrade.commands.trade_commands",
    "freqtrade.configuration",
    "freqtrade.worker",
    "freqtrade.freqtradebot",
    "freqtrade.exchange",
    "freqtrade.persistence",
    "freqtrade.data.dataprovider",
    "freqtrade.resolvers",
    "freqtrade.strategy",
    "freqtrade.rpc",
    "freqtrade.rpc.rpc_manager",
    "freqtrade.rpc.webhook",
    "freqtrade.rpc.api_server",
    "freqtrade.rpc.api_server.webserver",
    "freqtrade.rpc.api_server.api_v1",
    "freqtrade.rpc.api_server.api_auth",
    "freqtrade.rpc.api_server.api_ws",
    "freqtrade.rpc.api_server.ws",
    # imported when a bot's API server starts (found with `python -X importtime` on a bot)
    "freqtrade.rpc.api_server.api_analysis",
    "freqtrade.rpc.api_server.api_background_tasks",
    "freqtrade.rpc.api_server.api_backtest",
    "freqtrade.rpc.api_server.api_download_data",
    "freqtrade.rpc.api_server.api_pair_history",
    "freqtrade.rpc.api_server.api_trading",
    "freqtrade.rpc.api_server.api_webserver",
    "freqtrade.rpc.api_server.web_ui",
    "freqtrade.exchange.check_exchange",
    "uvicorn.protocols.http.h11_impl",
    "uvicorn.protocols.websockets.websockets_sansio_impl",
    "uvloop",
    "anyio.streams.memory",
    "anyio.streams.stapled",
    "anyio.streams.tls",
    "sqlalchemy.dialects.sqlite",
    "pyarrow.pandas_compat",
    "ccxt",
    "ccxt.async_support",
    "ccxt.pro",
    "talib",
    "talib.abstract",
    "technical",
    "technical.qtpylib",
    "technical.indicators",
    "uvicorn",
    "fastapi",
    "sqlalchemy",
    "pandas",
    "numpy",
)

# Native libraries start worker threads when they load (OpenBLAS and OpenMP one per core, the
# jemalloc of pyarrow a purging thread). A process must not fork while other threads run (a lock
# one of them holds stays locked in the child for ever), so the zygote keeps them at one thread;
# the bots inherit that, which suits small per-candle dataframes on shared cores anyway.
SINGLE_THREAD_ENV = {
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "JE_ARROW_MALLOC_CONF": "background_thread:false",
}
# glibc gives threads that allocate their own malloc arenas (up to 8 per core), each keeping
# freed pages of its own; a bot has a handful of threads. Two arenas keep a bot's private memory
# down (bench/fleet.py). Set with mallopt at start: the environment variable is read too early.
M_ARENA_MAX, ARENAS = -8, 2
_PR_SET_NAME = 15


class ZygoteError(RuntimeError):
    """The zygote cannot be reached or did not do what it was asked."""


# ------------------------------------------------------------------------------ the client


def version() -> str:
    """What a zygote must report to be reused: this file's hash and the FreqTrade version.

    A zygote started from older code, or before FreqTrade was upgraded, is replaced.
    """
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    digest = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]
    try:
        freqtrade = dist_version("freqtrade")
    except PackageNotFoundError:
        freqtrade = "none"
    return f"{PROTOCOL}:{digest}:{freqtrade}"


def request(socket_path: str | os.PathLike, payload: dict, timeout: float = 10.0) -> dict:
    """Send one request to the zygote at `socket_path`; its answer (raises ZygoteError)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(os.fspath(socket_path))
        sock.sendall(json.dumps(payload).encode() + b"\n")
        answer = _read_line(sock)
    except (OSError, ValueError) as exc:
        raise ZygoteError(f"zygote at {socket_path}: {exc}") from exc
    finally:
        sock.close()
    if not answer.get("ok"):
        raise ZygoteError(answer.get("error") or f"zygote refused {payload.get('op')}")
    return answer


def _read_line(sock: socket.socket) -> dict:
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
        if len(data) > MAX_MESSAGE:
            raise ValueError("message too long")
    if not data:
        raise ValueError("connection closed without an answer")
    return json.loads(data)


# ------------------------------------------------------------------------ process title


def _argv_area() -> tuple[int, int]:
    """Start and end address of this process's argv strings (/proc/self/stat fields 48, 49)."""
    with open("/proc/self/stat", "rb") as fh:
        data = fh.read()
    fields = data[data.rindex(b")") + 2:].split()  # fields[0] is field 3 (state)
    return int(fields[45]), int(fields[46])


def title_room() -> int:
    """Bytes available for a rewritten command line (the length of the argv area)."""
    start, end = _argv_area()
    return end - start


def title_size(argv: list[str]) -> int:
    """Bytes a command line needs in the argv area (NUL-separated, NUL-terminated)."""
    return sum(len(os.fsencode(part)) + 1 for part in argv)


def set_title(argv: list[str]) -> None:
    """Make /proc/self/cmdline read `argv` (what `ps` and psutil show), without exec.

    The strings are written over the original argv area; what is left of it pads the last
    argument with spaces (trailing blanks in `ps`), and the area still ends in a NUL so the
    kernel reports the strings exactly. Raises ValueError when the area is too small.
    """
    start, end = _argv_area()
    room = end - start
    raw = b"\0".join(os.fsencode(part) for part in argv)
    if len(raw) + 1 > room:
        raise ValueError(f"the command line needs {len(raw) + 1} bytes, the zygote has {room}")
    raw += b" " * (room - 1 - len(raw)) + b"\0"
    ctypes.memmove(start, raw, room)


def set_comm(name: str) -> None:
    """Set the 15-character process name (`ps -o comm`, `pgrep`); ignored if not possible."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_NAME, ctypes.c_char_p(name.encode()[:15]), 0, 0, 0)
    except (OSError, AttributeError):
        pass


# ------------------------------------------------------------------------------ the server


def _say(message: str) -> None:
    """One line in the zygote's log (its stderr)."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    sys.stderr.write(f"{stamp} zygote[{os.getpid()}]: {message}\n")
    sys.stderr.flush()


def native_threads() -> int:
    """Threads of this process, Python's and native ones (/proc/self/task)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return threading.active_count()


def _start_time(pid: int) -> int | None:
    """A process's start time in clock ticks (tells a pid apart from a later reuse)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    return int(data[data.rindex(b")") + 2:].split()[19])


class Zygote:
    """The server loop: accept, answer, fork; reap children; leave when no owner is left."""

    def __init__(self, socket_path: str, lock_fd: int, owners: list[int], grace: float):
        self.socket_path = socket_path
        self.lock_fd = lock_fd
        self.grace = grace
        self.owners: dict[int, int | None] = {}
        for pid in owners:
            self._add_owner(pid)
        self.ownerless_since: float | None = None if self.owners else time.monotonic()
        self.children: dict[int, dict] = {}
        self.exits: OrderedDict[int, int] = OrderedDict()
        self.stopping = False
        self.version = version()
        self.started = time.time()
        self.preload_seconds = 0.0
        self.preload_failures: list[str] = []
        self.server: socket.socket | None = None
        self.socket_inode = 0

    # -------------------------------------------------------------------- set-up

    def preload(self) -> None:
        """Import PRELOAD with the collector off (no holes for the bots to fill), and freeze
        it so the bots share it untouched; the zygote's own collector then only ever sees what
        it allocates afterwards."""
        began = time.monotonic()
        gc.disable()
        for name in PRELOAD:
            try:
                importlib.import_module(name)
            except Exception as exc:  # noqa: BLE001 - reported; the bot imports it itself
                self.preload_failures.append(f"{name}: {exc}")
        gc.freeze()
        gc.enable()
        self.preload_seconds = time.monotonic() - began
        _say(f"preloaded {len(sys.modules)} modules in {self.preload_seconds:.1f} s"
             + (f"; failed: {self.preload_failures}" if self.preload_failures else ""))
        if native_threads() > 1:
            _say(f"warning: {native_threads()} threads after preload; launches are refused "
                 "while more than one runs")

    def listen(self) -> None:
        """Bind the Unix socket (replacing a stale one), owner-only."""
        try:
            os.unlink(self.socket_path)
        except FileNotFoundError:
            pass
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)
        try:
            server.bind(self.socket_path)
        finally:
            os.umask(old_umask)
        server.listen(32)
        self.server = server
        self.socket_inode = os.stat(self.socket_path).st_ino

    # -------------------------------------------------------------------- the loop

    def serve(self) -> None:
        """Answer requests until SIGTERM, an `exit` request, or no owner for `grace` s."""
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, self._on_term)
        last_owner_check = 0.0
        while not self.stopping:
            try:
                readable, _, _ = select.select([self.server], [], [], 0.2)
            except InterruptedError:
                readable = []
            if readable:
                try:
                    conn, _ = self.server.accept()
                except OSError:
                    conn = None
                if conn is not None:
                    with conn:
                        self._handle(conn)
            self.reap()
            now = time.monotonic()
            if now - last_owner_check >= 1.0:
                last_owner_check = now
                self._check_owners(now)
        self.close()

    def _on_term(self, signum, _frame) -> None:
        _say(f"{signal.Signals(signum).name} received; exiting (bots keep running)")
        self.stopping = True

    def close(self) -> None:
        """Remove the socket (if still ours) and release the lock; children are untouched."""
        if self.server is not None:
            try:
                if os.stat(self.socket_path).st_ino == self.socket_inode:
                    os.unlink(self.socket_path)
            except OSError:
                pass
            self.server.close()
            self.server = None

    def _add_owner(self, pid: int) -> None:
        if pid and pid not in self.owners:
            started = _start_time(pid)
            if started is not None:
                self.owners[pid] = started

    def _check_owners(self, now: float) -> None:
        for pid, started in list(self.owners.items()):
            if _start_time(pid) != started:
                del self.owners[pid]
        if self.owners:
            self.ownerless_since = None
        elif self.ownerless_since is None:
            self.ownerless_since = now
        elif now - self.ownerless_since >= self.grace:
            _say(f"no owner for {self.grace:.0f} s; exiting ({len(self.children)} bots "
                 "keep running)")
            self.stopping = True

    def reap(self) -> None:
        """Collect ended children and keep their exit codes (negative: killed by a signal)."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            code = os.waitstatus_to_exitcode(status)
            info = self.children.pop(pid, {})
            self.exits[pid] = code
            while len(self.exits) > KEPT_EXIT_CODES:
                self.exits.popitem(last=False)
            _say(f"bot pid {pid} (strategy {info.get('strategy_id')}) ended with {code}")

    # -------------------------------------------------------------------- requests

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(5.0)
        try:
            pid, uid, _gid = struct.unpack(
                "3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                      struct.calcsize("3i")))
            if uid not in (os.getuid(), 0):
                self._reply(conn, {"ok": False, "error": "not the zygote's user"})
                return
            message = _read_line(conn)
            self._add_owner(int(message.get("owner") or 0))
            answer = self._dispatch(message, conn)
        except (OSError, ValueError) as exc:
            answer = {"ok": False, "error": f"bad request: {exc}"}
        except Exception as exc:  # noqa: BLE001 - the zygote must survive any request
            _say(f"request failed: {traceback.format_exc()}")
            answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        if not self._reply(conn, answer) and answer.get("pid") and answer["pid"] in self.children:
            # Nobody learnt this bot's pid, so nobody could stop it: it must not run.
            _say(f"the launcher went away; killing bot pid {answer['pid']}")
            try:
                os.killpg(answer["pid"], signal.SIGKILL)
            except ProcessLookupError:
                pass

    @staticmethod
    def _reply(conn: socket.socket, answer: dict) -> bool:
        try:
            conn.sendall(json.dumps(answer).encode() + b"\n")
            return True
        except OSError:
            return False

    def _dispatch(self, message: dict, conn: socket.socket) -> dict:
        op = message.get("op")
        if op == "ping":
            return {"ok": True, "pid": os.getpid(), "version": self.version,
                    "title_room": title_room(), "children": sorted(self.children),
                    "threads": native_threads(), "started": self.started,
                    "preload_seconds": round(self.preload_seconds, 2),
                    "preload_failures": self.preload_failures}
        if op == "launch":
            return self._launch(message, conn)
        if op == "status":
            self.reap()
            codes = {}
            for pid in message.get("pids") or []:
                pid = int(pid)
                if pid in self.exits:
                    codes[str(pid)] = {"state": "exited", "code": self.exits[pid]}
                elif pid in self.children:
                    codes[str(pid)] = {"state": "running", "code": None}
                else:
                    codes[str(pid)] = {"state": "unknown", "code": None}
            return {"ok": True, "pids": codes}
        if op == "release":
            self.owners.pop(int(message.get("owner") or 0), None)
            if not self.owners:
                _say("released by its last owner; exiting")
                self.stopping = True
            return {"ok": True}
        if op == "exit":
            _say("asked to exit")
            self.stopping = True
            return {"ok": True}
        return {"ok": False, "error": f"unknown op {op!r}"}

    def _launch(self, message: dict, conn: socket.socket) -> dict:
        """Fork a bot; answer its pid once it is set up (command line rewritten)."""
        threads = native_threads()
        if threads > 1:
            return {"ok": False, "error": f"the zygote runs {threads} threads; not forking"}
        title = [str(p) for p in message["title"]]
        if title_size(title) > title_room():
            return {"ok": False, "error": "no room for the command line", "no_room": True}
        read_end, write_end = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        gc.disable()  # no collection between the freeze and the fork
        gc.freeze()
        try:
            pid = os.fork()
        finally:
            gc.enable()  # in the zygote, and first thing in the child
        if pid == 0:  # ------------------------------------------------ the child
            os.close(read_end)
            _child(message, write_end, [self.server, conn], [self.lock_fd])
        os.close(write_end)
        report = b""
        deadline = time.monotonic() + HANDSHAKE_TIMEOUT
        with os.fdopen(read_end, "rb", buffering=0) as pipe:
            while time.monotonic() < deadline:
                ready, _, _ = select.select([pipe], [], [], max(deadline - time.monotonic(), 0))
                if not ready:
                    break
                chunk = pipe.read(4096)
                if not chunk:
                    break
                report += chunk
        if report != b"ok":
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(pid, 0)
            error = report.decode(errors="replace").removeprefix("error: ") or (
                "the child did not get ready")
            return {"ok": False, "error": f"fork failed: {error}"}
        self.children[pid] = {"strategy_id": message.get("strategy_id"), "at": time.time()}
        _say(f"forked bot pid {pid} for strategy {message.get('strategy_id')}")
        return {"ok": True, "pid": pid}


# ------------------------------------------------------------------------------ the child


def _child(message: dict, report_fd: int, sockets: list, fds: list[int]) -> None:
    """In the forked child: set up (see the module docstring), report, run the bot. No return."""
    try:
        os.setsid()
        for sock in sockets:
            sock.close()
        for fd in fds:
            os.close(fd)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        null = os.open(os.devnull, os.O_RDONLY)
        console = os.open(message["console"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(null, 0)
        os.dup2(console, 1)
        os.dup2(console, 2)
        os.close(null)
        os.close(console)
        os.chdir(message["cwd"])
        os.environ.clear()
        os.environ.update({str(k): str(v) for k, v in (message.get("env") or {}).items()})
        title = [str(p) for p in message["title"]]
        set_title(title)
        set_comm(Path(title[1] if len(title) > 1 else title[0]).name)
        sys.argv = title[1:] or title
        for entry in reversed(message.get("sys_path") or []):
            sys.path.insert(0, str(entry))
        if "numpy" in sys.modules:  # `random` reseeds itself after a fork; numpy does not
            sys.modules["numpy"].random.seed()
        os.write(report_fd, b"ok")
        os.close(report_fd)
    except BaseException as exc:  # noqa: BLE001 - reported to the zygote, then gone
        try:
            os.write(report_fd, f"error: {type(exc).__name__}: {exc}".encode())
        except OSError:
            pass
        os._exit(CHILD_SETUP_FAILED)
    os._exit(_run(message.get("entry") or DEFAULT_ENTRY, list(message.get("args") or [])))


def _run(entry: str, args: list[str]) -> int:
    """Call `module:function(args)` like a program's main; its exit code."""
    code: object = 0
    try:
        module, _, name = entry.partition(":")
        getattr(importlib.import_module(module), name)(args)
    except SystemExit as exc:
        code = exc.code
    except KeyboardInterrupt:
        code = 130
    except BaseException:  # noqa: BLE001 - printed like an uncaught exception
        traceback.print_exc()
        code = 1
    if code is None:
        code = 0
    elif not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    try:
        atexit._run_exitfuncs()  # what a normal interpreter exit runs (logging.shutdown, …)
    except BaseException:  # noqa: BLE001, S110 - exiting anyway
        pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    return code & 0xFF


# ------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    """Run the zygote (see the module docstring for the options)."""
    parser = argparse.ArgumentParser(description="Forks FreqTrade bots (BTC Watcher).")
    parser.add_argument("--socket", required=True, help="the Unix socket to listen on")
    parser.add_argument("--lock", required=True,
                        help="pid file, locked while this zygote runs (one zygote per socket)")
    parser.add_argument("--owner", type=int, action="append", default=[],
                        help="pid of a process using the zygote (repeatable)")
    parser.add_argument("--grace", type=float, default=60.0,
                        help="seconds without a live owner before the zygote exits")
    parser.add_argument("--title-room", default="",
                        help="blank padding: room for the bots' rewritten command lines")
    args = parser.parse_args(argv)
    for key, value in SINGLE_THREAD_ENV.items():
        os.environ[key] = value
    try:
        ctypes.CDLL("libc.so.6").mallopt(M_ARENA_MAX, ARENAS)
    except (OSError, AttributeError):  # not glibc: its default arenas
        pass
    set_comm("btcw-zygote")
    lock_fd = os.open(args.lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        _say(f"another zygote holds {args.lock}; exiting")
        return 3
    os.ftruncate(lock_fd, 0)
    os.write(lock_fd, f"{os.getpid()}\n".encode())
    zygote = Zygote(args.socket, lock_fd, args.owner, args.grace)
    zygote.preload()
    zygote.listen()
    _say(f"listening on {args.socket} (title room {title_room()} bytes)")
    try:
        zygote.serve()
    finally:
        zygote.close()
        os.ftruncate(lock_fd, 0)  # kept (not unlinked), so a racing zygote locks the same file
        _say("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
