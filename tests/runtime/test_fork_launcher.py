"""The fork launcher and its zygote, with stand-in bots (tests/runtime/fake_bot.py).

One zygote (it imports FreqTrade: ~3.5 s of CPU) serves the module; two tests start another on
purpose (a crash, an upgrade). Real FreqTrade bots forked by it are tested in test_bots.py when
the bots world uses the fork launcher (the default; BTCW_TEST_LAUNCHER=subprocess for the other).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import psutil
import pytest

from tests.bots import make_strategy
from tests.support.servers import free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """The zygote's folder for this module; its zygote is stopped at the end."""
    from app.runtime.launcher import stop_zygote

    folder = tmp_path_factory.mktemp("zygote")
    yield folder
    stop_zygote(folder)


def _launcher(run_dir: Path, entry: str, **options):
    from app.runtime.launcher import ForkLauncher

    options.setdefault("watch", False)
    options.setdefault("fallback", False)
    return ForkLauncher("127.0.0.1", run_dir=run_dir, entry=f"tests.runtime.fake_bot:{entry}",
                        sys_path=(str(ROOT),), **options)


def _kill(pid: int | None) -> None:
    if pid is None:
        return
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _socket_inodes(pid: int) -> set[str]:
    found = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:"):
            found.add(target)
    return found


def _short_startup(app, seconds: int):
    import dataclasses

    holder = app.extensions["btcw_settings"]
    original = holder.settings
    ft = dataclasses.replace(original.system.freqtrade, startup_timeout=seconds)
    holder.settings = dataclasses.replace(
        original, system=dataclasses.replace(original.system, freqtrade=ft))
    return original


def test_a_forked_bot_looks_like_a_subprocess_bot(app, run_dir):
    from app.runtime import paths
    from app.runtime.launcher import CONSOLE_LOG, SubprocessLauncher

    launcher = _launcher(run_dir, "serves_ping")
    strategy = make_strategy("forked")
    port = free_port()
    spawned: list[int] = []
    pid = None
    try:
        started = time.monotonic()
        pid = launcher.launch(strategy, port, on_spawn=spawned.append)
        assert spawned == [pid] and launcher.fallbacks == 0
        proc = psutil.Process(pid)
        assert proc.ppid() == launcher.zygote_pid
        # The command line of `freqtrade trade` run through its #! line, blank-padded at the end.
        argv = proc.cmdline()
        assert argv[:-1] == launcher.title(strategy.id)[:-1]
        assert argv[-1].rstrip() == str(paths.log_path(strategy.id))
        assert argv[1:3] == [str(launcher.executable), "trade"]
        assert proc.name() == "freqtrade"
        # Its own session and group; adoption checks of both launchers accept it.
        assert os.getsid(pid) == pid and os.getpgid(pid) == pid
        assert launcher.matches(pid, strategy.id, port)
        assert SubprocessLauncher("127.0.0.1").matches(pid, strategy.id, port)
        assert not launcher.matches(pid, strategy.id + 1, port)
        assert not launcher.matches(pid, strategy.id, port + 1)
        # stdout went to console.log; none of the zygote's sockets or files leaked into it.
        console = paths.bot_dir(strategy.id) / CONSOLE_LOG
        assert f"serving on {port}" in console.read_text()
        assert not _socket_inodes(launcher.zygote_pid) & _socket_inodes(pid)
        assert not [f for f in os.listdir(f"/proc/{pid}/fd")
                    if "zygote" in os.readlink(f"/proc/{pid}/fd/{f}")]
        print(f"fork launch to ready: {time.monotonic() - started:.2f} s")
        assert launcher.stop(pid, None, timeout=5) == "terminated"
        assert not launcher.is_alive(pid)
        assert launcher.exit_code(pid) == 0
        pid = None
    finally:
        _kill(pid)


def test_a_forked_bot_that_exits_early_gives_its_logged_error_and_code(app, run_dir):
    from app.runtime.launcher import LaunchError

    launcher = _launcher(run_dir, "exits_early")
    strategy = make_strategy("forked-exits")
    spawned: list[int] = []
    with pytest.raises(LaunchError) as raised:
        launcher.launch(strategy, free_port(), on_spawn=spawned.append)
    assert raised.value.exit_code == 2
    assert raised.value.message == "ERROR: Could not load markets, therefore cannot start."
    assert len(spawned) == 1 and not launcher.is_alive(spawned[0])


def test_a_forked_bot_without_ping_is_killed_at_the_startup_timeout(app, run_dir):
    from app.runtime.launcher import LaunchError

    launcher = _launcher(run_dir, "sleeps")
    launcher.ensure_zygote()  # the timeout below must not be spent starting the zygote
    original = _short_startup(app, 2)
    spawned: list[int] = []
    try:
        port = free_port()
        with pytest.raises(LaunchError, match=f"did not answer /api/v1/ping on port {port} "
                                              "within 2 s") as raised:
            launcher.launch(make_strategy("forked-silent"), port, on_spawn=spawned.append)
        assert raised.value.timed_out
        assert not launcher.is_alive(spawned[0])
    finally:
        app.extensions["btcw_settings"].settings = original
        _kill(spawned[0] if spawned else None)


def test_stop_of_a_forked_bot_escalates_to_sigkill(app, run_dir):
    launcher = _launcher(run_dir, "ignores_sigterm")
    pid = launcher.launch(make_strategy("forked-stubborn"), free_port())
    try:
        started = time.monotonic()
        assert launcher.stop(pid, None, timeout=1) == "killed"
        assert 1 <= time.monotonic() - started < 8
        assert not launcher.is_alive(pid)
        assert launcher.exit_code(pid) == -signal.SIGKILL
        pid = None
    finally:
        _kill(pid)


def test_bots_outlive_a_zygote_crash_and_the_watchdog_starts_a_new_one(app, run_dir):
    launcher = _launcher(run_dir, "serves_ping", watch=True)
    first_bot = second_bot = None
    try:
        old = launcher.ensure_zygote()["pid"]
        strategy = make_strategy("outlives-zygote")
        port = free_port()
        first_bot = launcher.launch(strategy, port)
        os.kill(old, signal.SIGKILL)
        deadline = time.monotonic() + 60
        new = None
        while time.monotonic() < deadline:
            info = launcher._ping()
            if info is not None and info["pid"] != old:
                new = info["pid"]
                break
            time.sleep(0.2)
        assert new, "the watchdog did not start a new zygote within 60 s"
        # The bot of the dead zygote still runs and is still recognised.
        assert launcher.is_alive(first_bot) and launcher.matches(first_bot, strategy.id, port)
        other = make_strategy("after-zygote-crash")
        second_bot = launcher.launch(other, free_port())
        assert psutil.Process(second_bot).ppid() == new and launcher.fallbacks == 0
        assert launcher.stop(first_bot, None, timeout=5) == "terminated"
        assert launcher.stop(second_bot, None, timeout=5) == "terminated"
        first_bot = second_bot = None
    finally:
        launcher.close()
        _kill(first_bot)
        _kill(second_bot)


def test_a_zygote_of_other_code_is_replaced_and_its_bots_keep_running(app, run_dir):
    launcher = _launcher(run_dir, "serves_ping")
    real_version = launcher.version
    bot = None
    try:
        old = launcher.ensure_zygote()["pid"]
        bot = launcher.launch(make_strategy("before-upgrade"), free_port())
        launcher.version = "0:upgraded"  # as if app/runtime/zygote.py had changed
        new = launcher.ensure_zygote()["pid"]
        assert new != old
        assert not psutil.pid_exists(old) or (
            psutil.Process(old).status() == psutil.STATUS_ZOMBIE)
        assert launcher.is_alive(bot)
        launcher.version = real_version
        assert launcher.ensure_zygote()["pid"] == new  # it runs this code: kept
        assert launcher.stop(bot, None, timeout=5) == "terminated"
        bot = None
    finally:
        _kill(bot)


def test_without_a_zygote_the_launch_falls_back_to_a_subprocess(app, tmp_path):
    import stat
    import sys

    from app.runtime.launcher import ForkLauncher, LaunchError

    script = tmp_path / "fake-freqtrade"
    script.write_text(f"#!{sys.executable}\nimport sys\nprint('subprocess')\nsys.exit(2)\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    launcher = ForkLauncher("127.0.0.1", executable=script, run_dir=tmp_path / "run",
                            watch=False)
    launcher.interpreter = str(tmp_path / "no-such-python")
    with pytest.raises(LaunchError) as raised:
        launcher.launch(make_strategy("fallback"), free_port())
    assert raised.value.exit_code == 2 and launcher.fallbacks == 1


def test_the_launcher_is_chosen_by_system_runtime_launcher(app, tmp_path):
    import dataclasses
    import shutil

    from app.runtime.launcher import ForkLauncher, SubprocessLauncher, make_launcher
    from config.loader import ConfigError, load_settings

    holder = app.extensions["btcw_settings"]
    original = holder.settings
    try:
        for kind, cls in (("subprocess", SubprocessLauncher), ("fork", ForkLauncher)):
            runtime = dataclasses.replace(original.system.runtime, launcher=kind)
            holder.settings = dataclasses.replace(
                original, system=dataclasses.replace(original.system, runtime=runtime))
            options = {"run_dir": tmp_path / "run", "watch": False} if kind == "fork" else {}
            assert type(make_launcher("127.0.0.1", **options)) is cls
    finally:
        holder.settings = original
    for f in (ROOT / "config").glob("*.yml"):
        shutil.copy(f, tmp_path / f.name)
    system = tmp_path / "system.yml"
    system.write_text(system.read_text().replace('launcher: "', 'launcher: "bogus-', 1))
    with pytest.raises(ConfigError, match="system.runtime.launcher"):
        load_settings(tmp_path)
