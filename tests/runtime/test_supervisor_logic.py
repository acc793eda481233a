"""The supervisor's decisions with a fake launcher and an injected clock (no real processes).

The real-process behaviour is in test_bots.py; here every path of the state machine runs in
milliseconds: start, crash → backoff → restart, give up after too many crashes, failed start,
stop, adoption, shutdown.
"""

from __future__ import annotations

import time

import pytest

from app.runtime.launcher import Launcher, LaunchError
from tests.bots import make_strategy

HOST = "127.0.0.1"


class FakeLauncher(Launcher):
    def __init__(self) -> None:
        self.alive: set[int] = set()
        self.next_pid = 4_000_000  # above any real pid_max, so psutil never finds them
        self.launched: list[tuple[int, int]] = []
        self.stopped: list[int] = []
        self.fail_with: str | None = None

    def launch(self, strategy, port, on_spawn=None):
        if self.fail_with:
            raise LaunchError(self.fail_with, exit_code=2)
        pid = self.next_pid
        self.next_pid += 1
        if on_spawn:
            on_spawn(pid)
        self.alive.add(pid)
        self.launched.append((strategy.id, port))
        return pid

    def is_alive(self, pid):
        return pid in self.alive

    def stop(self, pid, strategy=None, timeout=None):
        self.alive.discard(pid)
        self.stopped.append(pid)
        return "terminated"

    def matches(self, pid, strategy_id, port):
        return pid in self.alive

    def failure_reason(self, strategy_id):
        return "ERROR: something broke"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def world(app):
    from app.runtime.supervisor import Supervisor

    launcher, clock = FakeLauncher(), Clock()
    supervisor = Supervisor(app, host=HOST, launcher=launcher, clock=clock)
    return supervisor, launcher, clock


def settle(supervisor, timeout: float = 10.0) -> None:
    """Wait for the supervisor's background threads."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with supervisor._lock:
            threads = list(supervisor._threads)
        if not threads:
            return
        threads[0].join(0.2)
    raise AssertionError("supervisor threads still busy")


def row(strategy_id):
    from app.extensions import db
    from app.strategies.models import Strategy

    db.session.rollback()
    return db.session.get(Strategy, strategy_id, populate_existing=True)


def events(strategy_id):
    from app.extensions import db
    from app.strategies.models import StrategyEvent

    return list(db.session.scalars(db.select(StrategyEvent.kind)
                                   .where(StrategyEvent.strategy_id == strategy_id)
                                   .order_by(StrategyEvent.id)))


def alerts(strategy_id):
    from app.extensions import db
    from app.monitoring.models import Alert

    return [(a.kind, a.severity) for a in db.session.scalars(
        db.select(Alert).where(Alert.strategy_id == strategy_id).order_by(Alert.id))]


def start(supervisor, strategy_id):
    from app.runtime import control

    control.request_start(strategy_id)
    supervisor.handle_command({"action": "start", "strategy_id": strategy_id})
    settle(supervisor)
    return row(strategy_id)


def test_start_records_pid_port_and_event(world):
    from app.runtime.port_pool import PortPool

    supervisor, launcher, _ = world
    strategy = make_strategy("alpha")
    got = start(supervisor, strategy.id)
    assert got.status == "running" and got.pid == 4_000_000 and got.host == HOST
    assert PortPool.from_app().port_of(strategy.id) == (HOST, got.port)
    assert launcher.launched == [(strategy.id, got.port)]
    assert events(strategy.id) == ["start_requested", "started"]
    # A second command or reconcile pass does not launch a duplicate.
    supervisor.handle_command({"action": "start", "strategy_id": strategy.id})
    supervisor.reconcile()
    settle(supervisor)
    assert len(launcher.launched) == 1


def test_crash_backoff_restart_then_give_up(world):
    from app.runtime.port_pool import PortPool

    supervisor, launcher, clock = world
    strategy = make_strategy("crashy")
    pid = start(supervisor, strategy.id).pid
    delays = []
    for crash in range(1, 6):
        launcher.alive.discard(pid)
        supervisor.check_processes()
        got = row(strategy.id)
        assert got.status == "starting" and got.pid is None
        assert f"crash {crash} of at most 5" in got.status_message
        delay = supervisor.bots[strategy.id].restart_at - clock.now
        delays.append(delay)
        clock.now += delay - 0.01
        supervisor.restart_due()
        settle(supervisor)
        assert row(strategy.id).status == "starting", "restarted before the backoff ran out"
        clock.now += 0.02
        supervisor.restart_due()
        settle(supervisor)
        got = row(strategy.id)
        assert got.status == "running" and got.pid != pid
        pid = got.pid
        clock.now += 5
    assert delays == [1, 2, 4, 8, 16]
    launcher.alive.discard(pid)
    supervisor.check_processes()
    got = row(strategy.id)
    assert (got.status, got.desired_state, got.pid, got.port) == ("crashed", "stopped", None, None)
    assert "Gave up after 6 crashes within 10 minutes" in got.status_message
    assert "something broke" in got.status_message
    assert PortPool.from_app().port_of(strategy.id) is None
    assert strategy.id not in supervisor.bots
    assert alerts(strategy.id)[-1] == ("bot_crashed", "critical")
    assert alerts(strategy.id).count(("bot_crashed", "warning")) == 5
    assert events(strategy.id).count("crashed") == 6
    # Not restarted any more, whatever the clock says.
    clock.now += 1000
    supervisor.restart_due()
    supervisor.reconcile()
    settle(supervisor)
    assert row(strategy.id).status == "crashed"


def test_failed_start_is_an_error_with_the_bots_message_and_frees_the_port(world):
    from app.runtime.port_pool import PortPool

    supervisor, launcher, _ = world
    launcher.fail_with = "ERROR: Impossible to load Strategy 'Nope'."
    strategy = make_strategy("nope")
    got = start(supervisor, strategy.id)
    assert (got.status, got.desired_state) == ("error", "stopped")
    assert got.status_message == "ERROR: Impossible to load Strategy 'Nope'."
    assert PortPool.from_app().port_of(strategy.id) is None
    assert events(strategy.id)[-1] == "error"
    supervisor.reconcile()
    settle(supervisor)
    assert row(strategy.id).status == "error", "an error must not be retried on its own"


def test_a_failing_restart_after_a_crash_counts_as_a_crash(world):
    supervisor, launcher, clock = world
    strategy = make_strategy("flaky")
    pid = start(supervisor, strategy.id).pid
    launcher.alive.discard(pid)
    supervisor.check_processes()
    launcher.fail_with = "Could not load markets"
    clock.now += 1
    supervisor.restart_due()
    settle(supervisor)
    got = row(strategy.id)
    assert got.status == "starting" and "Restart failed: Could not load markets" in got.status_message
    assert supervisor.bots[strategy.id].state == "backoff"
    assert supervisor.bots[strategy.id].restart_at == pytest.approx(clock.now + 2)


def test_stop_and_restart(world):
    from app.runtime import control
    from app.runtime.port_pool import PortPool

    supervisor, launcher, _ = world
    strategy = make_strategy("stoppable")
    first = start(supervisor, strategy.id).pid
    control.request_restart(strategy.id)
    supervisor.handle_command({"action": "restart", "strategy_id": strategy.id})
    settle(supervisor)
    got = row(strategy.id)
    assert got.status == "running" and got.pid != first and first in launcher.stopped
    control.request_stop(strategy.id)
    assert row(strategy.id).status == "stopping"
    supervisor.handle_command({"action": "stop", "strategy_id": strategy.id})
    settle(supervisor)
    got = row(strategy.id)
    assert (got.status, got.pid, got.port) == ("stopped", None, None)
    assert PortPool.from_app().port_of(strategy.id) is None
    assert events(strategy.id)[-1] == "stopped"


def test_stopping_many_bots_at_once_holds_no_connection_while_they_stop(world, app):
    """Twenty slow stops at once (each waits on its bot) finish with the pool's few connections."""
    from app.extensions import db
    from app.runtime import control

    supervisor, launcher, _ = world
    ids = [start(supervisor, make_strategy(f"mass-{n}").id).id for n in range(20)]
    checked_out = []
    real_stop = launcher.stop

    def slow_stop(pid, strategy=None, timeout=None):
        assert strategy.api_username and strategy.port  # the real stop asks the bot's API first
        time.sleep(0.3)
        checked_out.append(db.engine.pool.checkedout())
        time.sleep(0.3)  # a bot taking its time to exit
        return real_stop(pid, strategy, timeout)

    launcher.stop = slow_stop
    for strategy_id in ids:
        control.request_stop(strategy_id)
        supervisor.handle_command({"action": "stop", "strategy_id": strategy_id})
    settle(supervisor, timeout=60)
    assert [row(i).status for i in ids] == ["stopped"] * 20
    # Without the fix each stopping bot held one: 15 (pool + overflow), then timeouts.
    assert max(checked_out) <= 5, checked_out  # not one connection per stopping bot


def test_a_lost_command_is_carried_out_by_the_reconcile(world):
    from app.runtime import control

    supervisor, _, _ = world
    strategy = make_strategy("no-command")
    control.request_start(strategy.id)
    supervisor.reconcile()  # without handling the queued command
    settle(supervisor)
    assert row(strategy.id).status == "running"
    control.request_stop(strategy.id)
    supervisor.reconcile()
    settle(supervisor)
    assert row(strategy.id).status == "stopped"


def test_recover_adopts_live_bots_and_restarts_lost_ones(app):
    from app.extensions import db
    from app.runtime import control
    from app.runtime.supervisor import Supervisor

    launcher = FakeLauncher()
    first = Supervisor(app, host=HOST, launcher=launcher, clock=Clock())
    kept, lost = make_strategy("kept"), make_strategy("lost")
    for s in (kept, lost):
        control.request_start(s.id)
    first.reconcile()
    settle(first)
    kept_pid, lost_pid = row(kept.id).pid, row(lost.id).pid
    launcher.alive.discard(lost_pid)  # died while no supervisor was watching
    db.session.rollback()
    second = Supervisor(app, host=HOST, launcher=launcher, clock=Clock())
    second.recover()
    settle(second)
    assert row(kept.id).pid == kept_pid and events(kept.id)[-1] == "adopted"
    got = row(lost.id)
    assert got.status == "running" and got.pid not in (None, lost_pid)
    assert "lost" in events(lost.id)
    assert len(launcher.launched) == 3


def test_shutdown_stops_bots_but_keeps_them_wanted(world):
    supervisor, launcher, _ = world
    strategy = make_strategy("shutdown")
    pid = start(supervisor, strategy.id).pid
    supervisor.shutdown()
    got = row(strategy.id)
    assert (got.status, got.desired_state, got.pid) == ("stopped", "running", None)
    assert pid in launcher.stopped


def test_shutdown_with_keep_bots_leaves_them(app):
    from app.runtime.supervisor import Supervisor

    launcher = FakeLauncher()
    supervisor = Supervisor(app, host=HOST, launcher=launcher, clock=Clock(), keep_bots=True)
    strategy = make_strategy("kept-running")
    pid = start(supervisor, strategy.id).pid
    supervisor.shutdown()
    assert row(strategy.id).status == "running" and launcher.stopped == []
    assert pid in launcher.alive


def test_a_row_wanted_running_without_credentials_gets_them_before_launch(world):
    from app.extensions import db

    supervisor, _, _ = world
    strategy = make_strategy("bare", api_password="", jwt_secret="", webhook_token="")
    strategy.desired_state, strategy.status, strategy.host = "running", "starting", HOST
    db.session.commit()
    supervisor.reconcile()
    settle(supervisor)
    got = row(strategy.id)
    assert got.status == "running"
    assert got.api_password and len(got.jwt_secret) >= 32 and got.webhook_token
