"""Real FreqTrade bots for tests: a market simulator, a supervisor and two demo bots per session.

Why a separate world: the per-test `app` fixture of conftest empties every table and flushes
Redis db 0 after each test, which would take the bots' rows away from under a running
supervisor. So bot tests use their own session-scoped world that nothing wipes:

- `bots_app`: a second app on its **own database** (SQLite file, or a `btcw_bots` database on the
  test PostgreSQL server when BTCW_TEST_DB=postgres), **Redis db 1** of the test Redis, its own
  config dir and var dir. Rows there survive the whole session. Port range: 200 random ports
  (`bots_world.port_start` …) so parallel test sessions on one machine do not collide; the
  strategy library is a copy of user_data/strategies in the var dir (tests may drop files in
  `bots_world.strategies_dir`, e.g. a broken strategy).
- `bots_ctx`: pushes an app context of `bots_app` for one test (nothing is wiped afterwards: a
  test that creates strategies stops and deletes what it made; `make_strategy()` helps).
- `bots_client`: a test client of `bots_app`; `bots_api_token`: a Bearer token of a user in it.
- `simulator`: `python -m app.simulator` on a free port (the bots' exchange).
- `supervisor_process`: `flask supervisor run` as a subprocess against that database/Redis;
  `.kill()` (SIGKILL), `.start()`, `.stop()` (SIGTERM, stops its bots), `.pid`, `.log_text()`.
- `bots_web`: the web app (gunicorn, one gevent worker) at `bots_world.public_url`, where the
  bots' webhooks land (stored as signals in the bots database, handed on via Redis db 1); a
  `tests.signals.webserver.GunicornWeb` (`.url`, `.port`, `.login(user, password)`), log in
  `bots_world.var_dir / "web.log"`. `demo_bots` starts it first, so every demo bot's webhooks
  are received; do not start another server on that port.
- `demo_bots`: two strategies (MA_Cross_BTC on BTC/USDT, RSI_ETH on ETH/USDT) started once per
  session and running; a list of `DemoBot(id, name, strategy_class, pair)`. Never stop them in
  a test; restart them only if you wait for `running` again.

Helpers: `make_strategy(name, class, pairs, **columns)` creates a row with fresh credentials;
`discard_strategy(id)` stops it if needed and deletes it; `bot_processes(var_dir)` lists this
world's `freqtrade trade` processes. Outside pytest (bench/bot_start.py) the same world is built
with `make_world()`, `create_bots_app()`, `SimulatorProcess` and `SupervisorProcess`.

The launcher is the one config/system.yml names (system.runtime.launcher) unless
$BTCW_TEST_LAUNCHER says `subprocess` or `fork` (`bots_world.launcher`). With the fork launcher
the world's zygote (var/run/zygote.pid) is stopped when the supervisor fixture ends.

Never start bots per test (each costs ~330 MB and ~4 s of CPU); reuse `demo_bots`. A test that
needs its own bot (a broken strategy, a port test) starts at most one and discards it. The
session ends with SIGTERM to the supervisor, which must stop its bots: any `freqtrade trade`
still alive with a config under this world's var dir is then killed and reported as an error.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from config import yaml_io
from tests.support.servers import free_port, wait_port

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SUPERVISOR_HOST = "127.0.0.1"
PORT_RANGE_SIZE = 200


@dataclass
class BotsWorld:
    """Where the bot tests live: database, Redis, config and var dirs, ports."""

    database_url: str
    redis_url: str
    config_dir: Path
    var_dir: Path
    strategies_dir: Path
    port_start: int
    port_end: int
    simulator_port: int
    relay_port: int
    public_url: str  # the bots' webhooks go to {public_url}/api/v1/signals/webhook/<id>
    launcher: str = "subprocess"  # system.runtime.launcher of this world

    def env(self) -> dict[str, str]:
        """Environment for a subprocess (flask supervisor run, …) that uses this world."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("FREQTRADE__")}
        env.update({
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "BTCW_CONFIG_DIR": str(self.config_dir),
            "BTCW_VAR_DIR": str(self.var_dir),
            "SECRET_KEY": "bots-test-secret-key",
            "PYTHONUNBUFFERED": "1",
        })
        return env


def _free_port_range(size: int) -> int:
    """The start of `size` consecutive ports nobody listens on now, below the ephemeral range.

    Random, so that test sessions running side by side on one machine rarely collide; below
    net.ipv4.ip_local_port_range so that outgoing connections do not take ports from it.
    """
    from app.runtime.port_pool import port_is_bindable

    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    top = max(min(low, 45000) - size, 12000)
    rng = random.Random()  # noqa: S311 - not security
    for _ in range(200):
        start = rng.randrange(10000, top)
        if all(port_is_bindable("127.0.0.1", p) for p in range(start, start + size)):
            return start
    raise RuntimeError("no free port range for the bot tests")


def versions_cache() -> Path:
    """Where the tests keep the FreqTrade releases they install besides the default (kept
    between runs, like pip's cache: an install is minutes, a reuse nothing);
    $BTCW_TEST_FREQTRADE_VERSIONS moves it."""
    folder = Path(os.environ.get("BTCW_TEST_FREQTRADE_VERSIONS")
                  or Path.home() / ".cache" / "btcw-tests" / "freqtrade-versions")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def make_world(base: Path, database_url: str | None, redis_url: str,
               launcher: str | None = None) -> BotsWorld:
    """Lay out a bots world under `base`: config and strategies copies, var dir, ports.

    `database_url` None means a SQLite file in `base`. `launcher` (default $BTCW_TEST_LAUNCHER,
    else what config/system.yml says) is the world's system.runtime.launcher. Used by the
    fixtures and bench/.
    """
    launcher = launcher or os.environ.get("BTCW_TEST_LAUNCHER") or None
    var = base / "var"
    var.mkdir(parents=True, exist_ok=True)
    strategies = base / "strategies"
    shutil.copytree(ROOT / "user_data" / "strategies", strategies,
                    ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)
    config = base / "config"
    config.mkdir(exist_ok=True)
    for f in (ROOT / "config").glob("*.yml"):
        shutil.copy(f, config / f.name)
    start = _free_port_range(PORT_RANGE_SIZE)
    world = BotsWorld(
        database_url=database_url or f"sqlite:///{base / 'bots.db'}",
        redis_url=redis_url,
        config_dir=config, var_dir=var, strategies_dir=strategies,
        port_start=start, port_end=start + PORT_RANGE_SIZE - 1,
        simulator_port=free_port(), relay_port=free_port(), public_url=f"http://127.0.0.1:{free_port()}",
    )
    system = yaml_io.load((config / "system.yml").read_text())
    section = system["system"]
    section["capacity"].update(port_range_start=world.port_start, port_range_end=world.port_end)
    section["simulator"].update(port=world.simulator_port, host="127.0.0.1")
    section["web"]["public_url"] = world.public_url
    section["exchange_relay"].update(host="127.0.0.1", port=world.relay_port)
    section["gateway"]["port"] = free_port()  # never a `make run` gateway on the default port
    section["freqtrade"].update(strategies_directory=str(strategies), startup_timeout=90,
                                shutdown_timeout=15, versions_directory=str(versions_cache()))
    section["runtime"]["host"] = SUPERVISOR_HOST
    if launcher:
        section["runtime"]["launcher"] = launcher
    world.launcher = section["runtime"].get("launcher", "subprocess")
    (config / "system.yml").write_text(yaml_io.dump(system))
    return world


@pytest.fixture(scope="session")
def bots_world(request, tmp_path_factory, redis_server) -> BotsWorld:
    database_url = None
    if os.environ.get("BTCW_TEST_DB") == "postgres":
        database_url = request.getfixturevalue("postgres_server").create_database("btcw_bots")
    return make_world(tmp_path_factory.mktemp("bots"), database_url,
                      redis_server.url.rsplit("/", 1)[0] + "/1")


def create_bots_app(world: BotsWorld):
    """An app on the world's database and Redis, with a fresh schema."""
    from app import create_app
    from app.extensions import db

    application = create_app({
        "TESTING": True,
        "SECRET_KEY": "bots-test-secret-key",
        "SQLALCHEMY_DATABASE_URI": world.database_url,
        "REDIS_URL": world.redis_url,
        "CONFIG_DIR": str(world.config_dir),
        "VAR_DIR": str(world.var_dir),
    })
    with application.app_context():
        db.drop_all()
        db.create_all()
    return application


@pytest.fixture(scope="session")
def bots_app(bots_world):
    """An app on the bots' own database and Redis db 1 (never wiped during the session)."""
    return create_bots_app(bots_world)


@pytest.fixture
def bots_ctx(bots_app):
    """An app context of bots_app for one test (no wiping afterwards)."""
    from app.extensions import db

    with bots_app.app_context():
        yield bots_app
        db.session.rollback()


@pytest.fixture
def bots_client(bots_app):
    return bots_app.test_client()


@pytest.fixture(scope="session")
def bots_api_token(bots_app) -> str:
    """A Bearer token of user `botsadmin` in the bots database."""
    from app.auth import service

    with bots_app.app_context():
        user = service.user_by_name("botsadmin") or service.create_user(
            "botsadmin", "correct-horse!1")
        _, plain = service.create_token(user, "bots-tests")
    return plain


def make_strategy(name: str, strategy_class: str = "MA_Cross_BTC",
                  pairs: tuple[str, ...] = ("BTC/USDT",), **values):
    """Create a Strategy row (simulator exchange, 1m, fresh credentials); needs an app context."""
    from app.extensions import db
    from app.runtime.credentials import new_credentials
    from app.strategies.models import Strategy

    strategy = Strategy(name=name, strategy_class=strategy_class,
                        strategy_file=f"{strategy_class}.py", exchange="simulator",
                        timeframe="1m", pairs=list(pairs), max_open_trades=1,
                        **{**new_credentials(), **values})
    db.session.add(strategy)
    db.session.commit()
    return strategy


def discard_strategy(strategy_id: int, timeout: float = 60) -> None:
    """Stop a test's own strategy if it runs, free its port, remove its signals and mark it
    deleted (needs app context)."""
    from app.extensions import db
    from app.runtime import control
    from app.runtime.port_pool import PortPool
    from app.strategies.models import Strategy, StrategyEvent

    db.session.rollback()
    strategy = db.session.get(Strategy, strategy_id, populate_existing=True)
    if strategy is None:
        return
    if strategy.status not in control.STOPPED_STATUSES or strategy.desired_state == "running":
        try:
            control.request_stop(strategy_id)
        except control.InvalidTransition:
            pass
        control.wait_for_status(strategy_id, control.STOPPED_STATUSES, timeout)
    PortPool.from_app().release(strategy_id)
    # With bots_web up its bot's webhooks became signals (and maybe notifications): they
    # reference the strategy, so they go first (deliveries and their attempts cascade).
    from app.notifications.models import Notification
    from app.signals.models import Signal

    signals = db.select(Signal.id).where(Signal.strategy_id == strategy_id)
    db.session.execute(db.delete(Notification).where(
        (Notification.strategy_id == strategy_id) | Notification.signal_id.in_(signals)))
    db.session.execute(db.delete(Signal).where(Signal.strategy_id == strategy_id))
    db.session.execute(db.delete(StrategyEvent).where(StrategyEvent.strategy_id == strategy_id))
    # Deleted the way the app deletes (the row stays, marked): its id is never handed to the
    # next strategy, whose bot would otherwise meet this one's files and the supervisor's
    # memory of it.
    from app.clock import utcnow

    db.session.execute(db.update(Strategy).where(Strategy.id == strategy_id)
                       .values(deleted_at=utcnow(), desired_state="stopped"))
    db.session.commit()


# ------------------------------------------------------------------------------ processes


class SimulatorProcess:
    """`python -m app.simulator` on the world's simulator port, as a subprocess."""

    def __init__(self, world: BotsWorld):
        self.world = world
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.world.simulator_port}"

    def start(self) -> SimulatorProcess:
        with open(self.world.var_dir / "simulator.log", "ab") as log:
            self.proc = subprocess.Popen(  # noqa: S603
                [sys.executable, "-m", "app.simulator", "--host", "127.0.0.1",
                 "--port", str(self.world.simulator_port)],
                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=self.world.env(),
                start_new_session=True,
            )
        try:
            wait_port(self.world.simulator_port, 30)
        except TimeoutError:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


def relay_process(world: BotsWorld):
    """The world's exchange relay (`gunicorn wsgi:relay()`, one worker) on world.relay_port."""
    from tests.signals.webserver import GunicornWeb

    return GunicornWeb(world.env(), workers=1, port=world.relay_port, entry="wsgi:relay()",
                       ready="/_relay/stats", log_path=world.var_dir / "relay.log")


@pytest.fixture(scope="session")
def simulator(bots_world):
    """The market simulator (a subprocess) on bots_world.simulator_port, and the exchange relay
    the bots reach it through; yields the simulator's base URL."""
    process = SimulatorProcess(bots_world).start()
    relay = relay_process(bots_world).start()
    yield process.url
    relay.stop()
    process.stop()


class SupervisorProcess:
    """`flask supervisor run` as a subprocess of the test session."""

    def __init__(self, world: BotsWorld, host: str = SUPERVISOR_HOST):
        self.world = world
        self.host = host
        self.proc: subprocess.Popen | None = None
        self.log_path = world.var_dir / f"supervisor-{host}.log"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self, wait: float = 30.0) -> SupervisorProcess:
        """Start it and wait for its heartbeat in Redis."""
        import redis

        from app.runtime import hosts

        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(  # noqa: S603
                [str(BIN / "flask"), "--app", "app", "supervisor", "run", "--host", self.host],
                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=self.world.env(),
                start_new_session=True,
            )
        client = redis.Redis.from_url(self.world.redis_url)
        deadline = time.monotonic() + wait
        try:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"supervisor exited with {self.proc.returncode}:\n"
                                       + self.log_text()[-3000:])
                live = [h for h in hosts.live_hosts(client) if h.host == self.host
                        and h.pid == self.proc.pid]
                if live:
                    return self
                time.sleep(0.2)
        finally:
            client.close()
        raise TimeoutError(f"no heartbeat from the supervisor after {wait}s:\n"
                           + self.log_text()[-3000:])

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: the supervisor dies at once; its bots keep running."""
        if self.alive():
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def stop(self, timeout: float = 90.0) -> None:
        """SIGTERM: the supervisor stops its bots and exits."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.proc = None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


def bot_processes(var_dir: Path) -> list[psutil.Process]:
    """`freqtrade trade` processes whose config lies under `var_dir` (this session's bots)."""
    found = []
    marker = str(var_dir)
    for proc in psutil.process_iter(["cmdline", "status"]):
        try:
            argv = proc.info["cmdline"] or []
            if (proc.info["status"] != psutil.STATUS_ZOMBIE and "trade" in argv
                    and any(a.startswith(marker) and a.endswith("config.json") for a in argv)):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def zygote_pid(var_dir: Path) -> int | None:
    """The pid of the world's running zygote (fork launcher), or None."""
    from app.runtime.launcher import lock_holder

    return lock_holder(var_dir / "run" / "zygote.pid")


def stop_zygote(var_dir: Path) -> int | None:
    """Stop the world's zygote if one runs (its bots are not touched); its pid."""
    from app.runtime.launcher import stop_zygote as stop

    return stop(var_dir / "run")


def kill_leftover_bots(var_dir: Path) -> int:
    """SIGKILL this session's bot processes that are still alive; how many there were."""
    leftovers = bot_processes(var_dir)
    for proc in leftovers:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(leftovers, timeout=10)
    return len(leftovers)


@pytest.fixture(scope="session")
def supervisor_process(bots_world, bots_app, simulator):
    """A running `flask supervisor run` for the bots' world (with the simulator up)."""
    supervisor = SupervisorProcess(bots_world).start()
    yield supervisor
    supervisor.stop()
    leftovers = kill_leftover_bots(bots_world.var_dir)
    stop_zygote(bots_world.var_dir)
    if leftovers:
        pytest.fail(f"{leftovers} bots outlived their supervisor's SIGTERM (killed now)")


@dataclass(frozen=True)
class DemoBot:
    id: int
    name: str
    strategy_class: str
    pair: str


DEMO = (("demo-ma-cross", "MA_Cross_BTC", "BTC/USDT"), ("demo-rsi", "RSI_ETH", "ETH/USDT"))


@pytest.fixture(scope="session")
def bots_web(bots_world, bots_app):
    """The web app (gunicorn + gevent) at bots_world.public_url: where the demo bots' webhooks
    go, on the bots' own database and Redis db."""
    from tests.signals.webserver import GunicornWeb

    port = int(bots_world.public_url.rsplit(":", 1)[1])
    server = GunicornWeb(bots_world.env(), workers=1, port=port,
                         log_path=bots_world.var_dir / "web.log").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def demo_bots(bots_app, bots_web, supervisor_process) -> list[DemoBot]:
    """Two demo strategies started once per session, running against the simulator; their
    webhooks land at bots_web."""
    from app.runtime import control

    bots = []
    with bots_app.app_context():
        for name, cls, pair in DEMO:
            strategy = make_strategy(name, cls, (pair,))
            bots.append(DemoBot(strategy.id, name, cls, pair))
            control.request_start(strategy.id)
        for bot in bots:
            strategy = control.wait_for_status(bot.id, ("running", "error", "crashed"), 120)
            if strategy.status != "running":
                pytest.fail(f"demo bot {bot.name} did not start: {strategy.status_message}\n"
                            + supervisor_process.log_text()[-3000:])
    return bots


def world_relay_enabled(world: BotsWorld) -> bool:
    system = yaml_io.load((world.config_dir / "system.yml").read_text())["system"]
    return bool(system.get("exchange_relay", {}).get("enabled", True))


@contextlib.contextmanager
def standalone_world(prefix: str, launcher: str | None = None, adjust=None):
    """A whole bots world outside pytest (the benches): Redis, SQLite, the simulator, the relay
    and a supervisor in a temp folder; yields (world, app, supervisor) and stops everything
    after. `adjust(system)` may change the world's system.yml section before anything starts."""
    import tempfile

    from tests.support.servers import RedisServer

    base = Path(tempfile.mkdtemp(prefix=prefix))
    redis = RedisServer().start()
    world = make_world(base, None, redis.url, launcher=launcher)
    if adjust is not None:
        path = world.config_dir / "system.yml"
        system = yaml_io.load(path.read_text())
        adjust(system["system"])
        path.write_text(yaml_io.dump(system))
    simulator, supervisor = SimulatorProcess(world), SupervisorProcess(world)
    relay = relay_process(world)
    try:
        app = create_bots_app(world)
        simulator.start()
        if world_relay_enabled(world):
            relay.start()
        supervisor.start()
        yield world, app, supervisor
    finally:
        if supervisor.alive():
            supervisor.stop()
        kill_leftover_bots(world.var_dir)
        stop_zygote(world.var_dir)
        relay.stop()
        simulator.stop()
        redis.cleanup()
