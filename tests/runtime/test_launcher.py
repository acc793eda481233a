"""Launcher pieces that need no bot: the generated config, reading FreqTrade's failure."""

from __future__ import annotations

import json

from app.runtime.launcher import describe_failure, meaningful_lines
from tests.bots import make_strategy

STRATEGY_LOG = """\
2026-11-24 10:00:01,100 - freqtrade.loggers - INFO - Enabling colorized output.
2026-11-24 10:00:01,200 - freqtrade.configuration.configuration - INFO - Using config: x.json
2026-11-24 10:00:02,300 - freqtrade.resolvers.iresolver - WARNING - Could not import /s/Bad.py \
due to 'invalid syntax (Bad.py, line 5)'
2026-11-24 10:00:02,301 - freqtrade - ERROR - Impossible to load Strategy 'Bad'. This class does \
not exist or contains Python code errors.
"""

MARKETS_LOG = """\
2026-11-24 10:00:01,100 - freqtrade.exchange.common - WARNING - _load_async_markets() returned \
exception: "Error in reload_markets due to ExchangeNotAvailable". Retrying still for 3 times.
2026-11-24 10:00:09,100 - freqtrade.exchange.exchange - ERROR - Could not load markets.
2026-11-24 10:00:09,200 - freqtrade - ERROR - Could not load markets, therefore cannot start. \
Please investigate the above error for more details.
"""


def test_the_strategy_load_error_is_picked_out():
    lines = meaningful_lines(STRATEGY_LOG)
    assert lines == [
        "WARNING: Could not import /s/Bad.py due to 'invalid syntax (Bad.py, line 5)'",
        "ERROR: Impossible to load Strategy 'Bad'. This class does not exist or contains Python "
        "code errors.",
    ]


def test_market_errors_and_fallbacks():
    message = describe_failure(MARKETS_LOG, "fallback")
    assert message.endswith("ERROR: Could not load markets, therefore cannot start. Please "
                            "investigate the above error for more details.")
    assert "INFO" not in message
    # Plain output (a traceback before logging started) still yields its error line.
    trace = "Traceback (most recent call last):\n  File \"x\", line 1\nValueError: bad thing\n"
    assert describe_failure(trace, "fallback").endswith("ValueError: bad thing")
    assert describe_failure("", "exited with code 2") == "exited with code 2"


def test_bot_files_hold_port_credentials_webhook_and_library(app, tmp_path):
    from app.runtime import paths
    from app.runtime.launcher import SubprocessLauncher, write_bot_files

    strategy = make_strategy("files", "RSI_ETH", ("ETH/USDT",), webhook_token="tok-123")
    path = write_bot_files(strategy, 18555, "127.0.0.1")
    assert path == paths.config_path(strategy.id)
    assert path.stat().st_mode & 0o777 == 0o600
    config = json.loads(path.read_text())
    api = config["api_server"]
    assert (api["listen_ip_address"], api["listen_port"]) == ("127.0.0.1", 18555)
    assert (api["username"], api["password"]) == (strategy.api_username, strategy.api_password)
    assert api["jwt_secret_key"] == strategy.jwt_secret
    assert config["webhook"]["url"] == (
        f"http://127.0.0.1:8000/api/v1/signals/webhook/{strategy.id}?token=tok-123")
    assert config["strategy"] == "RSI_ETH" and config["dry_run"] is True
    assert config["strategy_path"] == str(paths.strategies_dir())
    assert config["db_url"] == f"sqlite:///{paths.bot_dir(strategy.id)}/tradesv3.dryrun.sqlite"
    assert (paths.bot_dir(strategy.id) / "user_data").is_dir()
    # Per-bot files live under the app's var dir, not in the project's var/.
    assert str(paths.bot_dir(strategy.id)).startswith(app.config["VAR_DIR"])
    argv = SubprocessLauncher("127.0.0.1").command(strategy.id)
    assert argv[1:] == ["trade", "-c", str(path), "--logfile", str(paths.log_path(strategy.id))]


def test_a_pid_that_is_not_this_strategys_bot_does_not_match(app):
    import os

    from app.runtime.launcher import SubprocessLauncher

    launcher = SubprocessLauncher("127.0.0.1")
    assert not launcher.matches(os.getpid(), 1, 8082)  # pytest is not freqtrade
    assert not launcher.matches(4_000_000, 1, 8082)  # no such process
    assert launcher.stop(4_000_000, None, timeout=1) == "gone"


def test_an_unusable_strategy_record_fails_the_launch_with_a_clear_message(app):
    import pytest

    from app.runtime.launcher import LaunchError, SubprocessLauncher

    strategy = make_strategy("no-pairs", pairs=())
    with pytest.raises(LaunchError, match="configuration is not valid: a bot needs at least one"):
        SubprocessLauncher("127.0.0.1").launch(strategy, 18556)


def _fake_freqtrade(tmp_path, body: str):
    """An executable standing in for `freqtrade` (argv: trade -c CONFIG --logfile LOG)."""
    import stat
    import sys

    script = tmp_path / "fake-freqtrade"
    script.write_text(f"#!{sys.executable}\nimport sys, time, signal\nlog = sys.argv[5]\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


def _short_timeouts(app, startup: int, shutdown: int):
    import dataclasses

    holder = app.extensions["btcw_settings"]
    original = holder.settings
    ft = dataclasses.replace(original.system.freqtrade, startup_timeout=startup,
                             shutdown_timeout=shutdown)
    holder.settings = dataclasses.replace(
        original, system=dataclasses.replace(original.system, freqtrade=ft))
    return original


def test_a_process_that_exits_early_gives_its_logged_error_and_code(app, tmp_path):
    import pytest

    from app.runtime.launcher import LaunchError, SubprocessLauncher

    script = _fake_freqtrade(tmp_path, (
        "open(log, 'a').write('2026-01-01 00:00:00,000 - freqtrade - ERROR - Could not load "
        "markets, therefore cannot start.\\n')\nprint('console noise')\nsys.exit(2)"))
    strategy = make_strategy("exits")
    spawned = []
    with pytest.raises(LaunchError) as raised:
        SubprocessLauncher("127.0.0.1", executable=script).launch(strategy, 18557,
                                                                 on_spawn=spawned.append)
    assert raised.value.exit_code == 2
    assert raised.value.message == "ERROR: Could not load markets, therefore cannot start."
    assert len(spawned) == 1


def test_no_ping_within_the_startup_timeout_kills_the_process(app, tmp_path):
    import psutil
    import pytest

    from app.runtime.launcher import LaunchError, SubprocessLauncher

    original = _short_timeouts(app, startup=2, shutdown=2)
    try:
        script = _fake_freqtrade(tmp_path, "time.sleep(60)")
        strategy = make_strategy("silent")
        spawned = []
        with pytest.raises(LaunchError, match="did not answer /api/v1/ping on port 18558 "
                                              "within 2 s") as raised:
            SubprocessLauncher("127.0.0.1", executable=script).launch(
                strategy, 18558, on_spawn=spawned.append)
        assert raised.value.timed_out
        assert not psutil.pid_exists(spawned[0]) or (
            psutil.Process(spawned[0]).status() == psutil.STATUS_ZOMBIE)
    finally:
        app.extensions["btcw_settings"].settings = original


def test_stop_escalates_to_sigkill_when_sigterm_is_ignored(app, tmp_path):
    import subprocess
    import time

    from app.runtime.launcher import SubprocessLauncher

    script = _fake_freqtrade(tmp_path, (
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('ready', flush=True)\n"
        "time.sleep(60)"))
    launcher = SubprocessLauncher("127.0.0.1", executable=script)
    out = tmp_path / "out"
    with out.open("wb") as fh:
        proc = subprocess.Popen([str(script), "trade", "-c", "x", "--logfile", str(tmp_path / "l")],
                                stdout=fh, start_new_session=True)
    deadline = time.monotonic() + 10
    while b"ready" not in out.read_bytes() and time.monotonic() < deadline:
        time.sleep(0.05)
    started = time.monotonic()
    assert launcher.is_alive(proc.pid)
    assert launcher.stop(proc.pid, None, timeout=1) == "killed"
    assert 1 <= time.monotonic() - started < 8
    # (psutil reaped the child inside stop(), so Popen cannot see the signal any more.)
    assert not launcher.is_alive(proc.pid)
    proc.wait(5)
