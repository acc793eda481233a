"""Real FreqTrade bots under a real supervisor (see tests/bots.py for the shared world).

Order matters little, but every test leaves the two demo bots running.
"""

from __future__ import annotations

import dataclasses
import socket
import time

import psutil
import pytest
import requests

from tests.bots import bot_processes, discard_strategy, make_strategy, zygote_pid

pytestmark = pytest.mark.bots


def _row(strategy_id: int):
    from app.extensions import db
    from app.strategies.models import Strategy

    db.session.rollback()
    return db.session.get(Strategy, strategy_id, populate_existing=True)


def _ping(host: str, port: int) -> bool:
    try:
        return requests.get(f"http://{host}:{port}/api/v1/ping", timeout=3).json() == {
            "status": "pong"}
    except requests.RequestException:
        return False


def _events(strategy_id: int) -> list[str]:
    from app.extensions import db
    from app.strategies.models import StrategyEvent

    return list(db.session.scalars(
        db.select(StrategyEvent.kind).where(StrategyEvent.strategy_id == strategy_id)
        .order_by(StrategyEvent.id)))


def test_two_bots_run_and_answer_ping(bots_ctx, demo_bots, bots_world):
    from app.runtime.port_pool import PortPool

    ports = set()
    for bot in demo_bots:
        row = _row(bot.id)
        assert row.status == "running", row.status_message
        assert row.pid and psutil.pid_exists(row.pid)
        assert row.port == bots_world.port_start + row.id  # the preferred port was free
        assert _ping(row.host, row.port)
        assert PortPool.from_app().port_of(row.id) == (row.host, row.port)
        assert "started" in _events(row.id)
        ports.add(row.port)
        if bots_world.launcher == "fork":  # forked by the zygote, not a fallback subprocess
            assert psutil.Process(row.pid).ppid() == zygote_pid(bots_world.var_dir)
    assert len(ports) == 2
    # FreqTrade logs into its own log file per strategy; the console file keeps only what comes
    # before logging is set up.
    from app.runtime import paths

    for bot in demo_bots:
        logged = paths.log_path(bot.id).read_text()
        console = (paths.bot_dir(bot.id) / "console.log").read_text()
        assert f"Using resolved strategy {bot.strategy_class}" in logged
        assert "Using resolved strategy" not in console and "Using config" in console
    # The bot's API requires its generated credentials.
    row = _row(demo_bots[0].id)
    url = f"http://{row.host}:{row.port}/api/v1/show_config"
    assert requests.get(url, timeout=5).status_code == 401
    config = requests.get(url, auth=(row.api_username, row.api_password), timeout=5).json()
    assert config["dry_run"] is True and config["strategy"] == demo_bots[0].strategy_class


def test_killed_bot_is_restarted_and_the_other_is_untouched(bots_ctx, demo_bots):
    victim, other = (_row(b.id) for b in demo_bots)
    other_pid, other_started = other.pid, psutil.Process(other.pid).create_time()
    old_pid = victim.pid
    psutil.Process(old_pid).kill()
    killed_at = time.monotonic()
    deadline = killed_at + 60
    while time.monotonic() < deadline:
        row = _row(victim.id)
        if row.status == "running" and row.pid and row.pid != old_pid:
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"not restarted: {row.status} {row.status_message}")
    elapsed = time.monotonic() - killed_at
    assert elapsed < 10, f"restart took {elapsed:.1f}s"
    assert _ping(row.host, row.port)
    events = _events(victim.id)
    assert events[-2:] == ["crashed", "restarted"]
    still = _row(other.id)
    assert still.pid == other_pid and still.status == "running"
    assert psutil.Process(other_pid).create_time() == other_started
    from app.extensions import db
    from app.monitoring.models import Alert

    alert = db.session.scalars(
        db.select(Alert).where(Alert.strategy_id == victim.id).order_by(Alert.id)).all()[-1]
    assert alert.kind == "bot_crashed" and "SIGKILL" in alert.message


def test_supervisor_killed_and_restarted_adopts_bots(bots_ctx, demo_bots, supervisor_process,
                                                     bots_world):
    before = {b.id: (_row(b.id).pid, _row(b.id).port) for b in demo_bots}
    zygote = zygote_pid(bots_world.var_dir)
    supervisor_process.kill()
    time.sleep(1.5)
    for pid, _port in before.values():
        assert psutil.pid_exists(pid), "a bot died with its supervisor"
    supervisor_process.start()
    time.sleep(4)  # a few supervisor checks
    for strategy_id, (pid, port) in before.items():
        row = _row(strategy_id)
        assert (row.status, row.pid, row.port) == ("running", pid, port)
        assert _events(strategy_id)[-1] == "adopted"
    pids = sorted(p.pid for p in bot_processes(bots_world.var_dir))
    assert pids == sorted(pid for pid, _ in before.values()), "duplicate or missing bots"
    # The fork launcher's zygote outlived the supervisor too, and the new one reuses it.
    assert zygote_pid(bots_world.var_dir) == zygote


def test_forked_bots_outlive_a_zygote_crash_and_a_new_zygote_forks_the_restart(
        bots_ctx, demo_bots, bots_world):
    import os
    import signal

    if bots_world.launcher != "fork":
        pytest.skip("the bots world runs the subprocess launcher")
    old = zygote_pid(bots_world.var_dir)
    assert old
    pids = {b.id: _row(b.id).pid for b in demo_bots}
    os.kill(old, signal.SIGKILL)
    deadline = time.monotonic() + 60
    new = None
    while time.monotonic() < deadline:
        new = zygote_pid(bots_world.var_dir)
        if new and new != old:
            break
        time.sleep(0.2)
    assert new and new != old, "the supervisor did not start a new zygote within 60 s"
    for strategy_id, pid in pids.items():
        row = _row(strategy_id)
        assert (row.status, row.pid) == ("running", pid)
        assert _ping(row.host, row.port)
    # A bot that dies now is restarted by the new zygote (the old one's exit code is lost).
    victim = demo_bots[0].id
    psutil.Process(pids[victim]).kill()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        row = _row(victim)
        if row.status == "running" and row.pid and row.pid != pids[victim]:
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"not restarted: {row.status} {row.status_message}")
    assert psutil.Process(row.pid).ppid() == zygote_pid(bots_world.var_dir)
    assert _ping(row.host, row.port)


def test_preferred_port_taken_by_another_program_uses_the_next_free(bots_ctx, demo_bots,
                                                                   supervisor_process,
                                                                   bots_world):
    from app.runtime import control
    from app.runtime.port_pool import PortPool

    strategy = make_strategy("port-squatted", "RSI_ETH", ("ETH/USDT",))
    preferred = bots_world.port_start + strategy.id
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", preferred))
    squatter.listen()
    try:
        control.request_start(strategy.id)
        row = control.wait_for_status(strategy.id, ("running", "error"), 120)
        assert row.status == "running", row.status_message
        taken = {_row(b.id).port for b in demo_bots}
        expected = min(p for p in range(bots_world.port_start, bots_world.port_end + 1)
                       if p not in taken and p != preferred)
        assert row.port == expected
        assert _ping(row.host, row.port)
        control.request_stop(strategy.id)
        row = control.wait_for_status(strategy.id, ("stopped",), 60)
        assert row.pid is None and row.port is None
        assert PortPool.from_app().port_of(strategy.id) is None
        assert _events(strategy.id)[-1] == "stopped"
    finally:
        squatter.close()
        discard_strategy(strategy.id)


def test_strategy_with_syntax_error_ends_in_error_with_freqtrade_message(
        bots_ctx, demo_bots, supervisor_process, bots_world):
    from app.runtime import control
    from app.runtime.port_pool import PortPool

    source = (bots_world.strategies_dir / "MA_Cross_BTC.py").read_text()
    broken = bots_world.strategies_dir / "Broken_Syntax.py"
    broken.write_text(source.replace("class MA_Cross_BTC", "class Broken_Syntax")
                      + "\n\ndef oops(:\n    pass\n")
    strategy = make_strategy("broken-syntax", "Broken_Syntax")
    try:
        control.request_start(strategy.id)
        row = control.wait_for_status(strategy.id, ("running", "error"), 120)
        assert row.status == "error"
        assert "Impossible to load Strategy 'Broken_Syntax'" in row.status_message
        assert "invalid syntax" in row.status_message or "SyntaxError" in row.status_message
        assert row.port is None and row.pid is None and row.desired_state == "stopped"
        assert PortPool.from_app().port_of(strategy.id) is None
        assert _events(strategy.id)[-1] == "error"
        assert not [p for p in bot_processes(bots_world.var_dir)
                    if str(strategy.id) in " ".join(p.cmdline())
                    and f"/{strategy.id}/config.json" in " ".join(p.cmdline())]
    finally:
        broken.unlink()
        discard_strategy(strategy.id)


def test_capacity_limit_refuses_a_third_start(bots_ctx, demo_bots):
    from app.runtime import control

    holder = bots_ctx.extensions["btcw_settings"]
    original = holder.settings
    capacity = dataclasses.replace(original.system.capacity, max_strategies=2)
    holder.settings = dataclasses.replace(
        original, system=dataclasses.replace(original.system, capacity=capacity))
    strategy = make_strategy("third-one", "RSI_ETH", ("ETH/USDT",))
    try:
        with pytest.raises(control.CapacityError) as raised:
            control.request_start(strategy.id)
        assert raised.value.status == 409
        assert "2 of 2" in str(raised.value) and "max_strategies" in str(raised.value)
        row = _row(strategy.id)
        assert (row.status, row.desired_state) == ("stopped", "stopped")
    finally:
        holder.settings = original
        discard_strategy(strategy.id)


def test_stop_of_a_stopped_strategy_is_refused(bots_ctx, supervisor_process):
    from app.runtime import control

    strategy = make_strategy("never-started")
    try:
        with pytest.raises(control.InvalidTransition, match="not running"):
            control.request_stop(strategy.id)
        with pytest.raises(control.StrategyNotFound):
            control.request_start(999_999)
    finally:
        discard_strategy(strategy.id)


def test_a_second_supervisor_on_another_loopback_address_runs_its_own_bot(
        bots_ctx, demo_bots, supervisor_process, bots_world):
    """SPEC §13 on one machine: a supervisor for 127.0.0.2 takes the bots placed there."""
    from app.runtime import control
    from tests.bots import SupervisorProcess

    second = SupervisorProcess(bots_world, host="127.0.0.2").start()
    strategy = make_strategy("second-host", "RSI_ETH", ("ETH/USDT",))
    try:
        hosts = {h.host for h in control.live_hosts()}
        assert hosts == {"127.0.0.1", "127.0.0.2"}
        control.request_start(strategy.id, host="127.0.0.2")
        row = control.wait_for_status(strategy.id, ("running", "error"), 120)
        assert row.status == "running", row.status_message
        assert row.host == "127.0.0.2" and row.port == bots_world.port_start + strategy.id
        assert _ping("127.0.0.2", row.port)
        listening = {(c.laddr.ip, c.laddr.port) for c in psutil.Process(row.pid).net_connections()
                     if c.status == psutil.CONN_LISTEN}
        assert ("127.0.0.2", row.port) in listening
        assert [_row(b.id).status for b in demo_bots] == ["running", "running"]
        # SIGTERM of a supervisor (system shutdown) stops its bots; they stay wanted running,
        # so the next supervisor of that host starts them again. The other host is untouched.
        pid = row.pid
        second.stop()
        row = _row(strategy.id)
        assert (row.status, row.desired_state, row.pid, row.port) == (
            "stopped", "running", None, None)
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        assert [_row(b.id).status for b in demo_bots] == ["running", "running"]
        assert "127.0.0.2" not in {h.host for h in control.live_hosts()}
    finally:
        second.stop()
        row = _row(strategy.id)
        row.desired_state = "stopped"
        from app.extensions import db

        db.session.commit()
        discard_strategy(strategy.id)


def test_reload_config_goes_through_the_bot_api(bots_ctx, demo_bots):
    from app.runtime import control

    before = _row(demo_bots[1].id)
    reply = control.request_reload_config(before.id)
    assert "reload" in str(reply).lower()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not _ping(before.host, before.port):
        time.sleep(0.5)
    after = _row(before.id)
    assert (after.status, after.pid, after.port) == ("running", before.pid, before.port)
    assert _ping(after.host, after.port)
    assert _events(before.id)[-1] == "config_reloaded"
