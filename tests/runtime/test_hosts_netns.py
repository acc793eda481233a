"""Several hosts for real (SPEC §13): two bot hosts, each its own Linux network namespace with
its own supervisor, exchange relay, var folder and (empty) strategies folder; PostgreSQL, Redis,
the simulator and the web app run here and are reached over the veth pairs — nothing shared
through a loopback or a disk. Placement spreads bots over the hosts, the gateway routes to
host:port, webhooks arrive; a host cut off the network has its bot marked lost, started on the
other host from its trade-database copy, and when it comes back no strategy runs twice."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import requests

from app.system.stack import gunicorn_flags
from config import yaml_io
from tests.bots import create_bots_app, make_strategy, make_world
from tests.signals.webserver import GunicornWeb
from tests.support import netns
from tests.support.servers import PostgresServer, RedisServer, free_port, wait_port

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
pytestmark = [pytest.mark.skipif(bool(netns.available()), reason=netns.available() or "ok")]


class Host:
    """A bot host in a namespace: its config, var and strategies folders, supervisor, relay."""

    def __init__(self, ns: netns.Namespace, base: Path, world, db_port: int, redis_port: int,
                 web_port: int):
        self.ns, self.base = ns, base
        self.var, self.strategies = base / "var", base / "strategies"
        for folder in (self.var, self.strategies, base / "config"):
            folder.mkdir(parents=True, exist_ok=True)
        self.relay_port = free_port()
        system = yaml_io.load((world.config_dir / "system.yml").read_text())
        section = system["system"]
        section["runtime"].update(host=ns.address, reschedule_lost=True, trade_copy_interval=5,
                                  launcher="fork")
        section["simulator"].update(host=ns.gateway)
        section["exchange_relay"].update(host="127.0.0.1", port=self.relay_port)
        section["web"]["public_url"] = f"http://{ns.gateway}:{web_port}"
        section["freqtrade"].update(strategies_directory=str(self.strategies))
        for name in ("notifications.yml", "proxy.yml"):
            (base / "config" / name).write_text((world.config_dir / name).read_text())
        (base / "config" / "system.yml").write_text(yaml_io.dump(system))
        self.env = {**world.env(), "BTCW_CONFIG_DIR": str(base / "config"),
                    "BTCW_VAR_DIR": str(self.var),
                    "DATABASE_URL": f"postgresql://postgres@{ns.gateway}:{db_port}/btcw",
                    "REDIS_URL": f"redis://{ns.gateway}:{redis_port}/0"}
        self.procs: list[subprocess.Popen] = []

    def start(self) -> Host:
        log = open(self.base / "host.log", "ab")  # noqa: SIM115 - closed in stop()
        self.log = log
        self.procs.append(subprocess.Popen(self.ns.argv(  # noqa: S603
            str(BIN / "gunicorn"), "-k", "gevent", "-w", "1", "-b",
            f"127.0.0.1:{self.relay_port}", *gunicorn_flags(), "wsgi:relay()"),
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT))
        self.procs.append(subprocess.Popen(self.ns.argv(  # noqa: S603
            str(BIN / "flask"), "--app", "app", "supervisor", "run", "--host", self.ns.address),
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT))
        return self

    def bot_pids(self, strategy_id: int) -> list[int]:
        """`freqtrade trade` processes of this host's folder for one strategy."""
        config = str(self.var / "bots" / str(strategy_id) / "config.json")
        found = []
        for proc in psutil.process_iter(["cmdline", "status"]):
            with contextlib.suppress(psutil.Error):
                if (proc.info["status"] != psutil.STATUS_ZOMBIE
                        and config in (proc.info["cmdline"] or [])):
                    found.append(proc.pid)
        return found

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(40)
        self.log.close()


@pytest.fixture(scope="module")
def two_hosts(tmp_path_factory):
    a, b = netns.Namespace("a").create(), netns.Namespace("b").create()
    shared = ("127.0.0.1", a.gateway, b.gateway)
    pg, redis = PostgresServer(listen=shared).start(), RedisServer(bind=shared).start()
    base = tmp_path_factory.mktemp("hosts")
    world = make_world(base / "main", pg.url("btcw"), redis.url)
    system = yaml_io.load((world.config_dir / "system.yml").read_text())
    system["system"]["runtime"]["reschedule_lost"] = True
    (world.config_dir / "system.yml").write_text(yaml_io.dump(system))
    app = create_bots_app(world)
    with app.app_context():
        from app.runtime import placement

        placement.publish_sources(world.strategies_dir)  # the main host's library
    simulator = subprocess.Popen([sys.executable, "-m", "app.simulator", "--host", "0.0.0.0",  # noqa: S104,S603
                                  "--port", str(world.simulator_port)], cwd=ROOT,
                                 env=world.env(), stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
    wait_port(world.simulator_port, 30)
    web_port = int(world.public_url.rsplit(":", 1)[1])
    web = GunicornWeb(world.env(), workers=1, port=web_port, bind="0.0.0.0",  # noqa: S104
                      log_path=base / "web.log").start()
    hosts = {}
    try:
        for ns in (a, b):
            hosts[ns.address] = Host(ns, base / ns.name, world, pg.port, redis.port,
                                     web_port).start()
        with app.app_context():
            from app.runtime import control

            deadline = time.monotonic() + 90
            while {h.host for h in control.live_hosts()} != set(hosts):
                assert time.monotonic() < deadline, "the hosts' supervisors did not come up:\n" \
                    + "".join((h.base / "host.log").read_text()[-2000:] for h in hosts.values())
                time.sleep(0.5)
        yield {"app": app, "world": world, "hosts": hosts, "web": web}
    finally:  # every step, whatever the one before did
        steps = [h.stop for h in hosts.values()] + [web.stop, simulator.kill, a.remove,
                                                     b.remove, redis.cleanup, pg.stop]
        for step in steps:
            with contextlib.suppress(Exception):
                step()


def _wait(predicate, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, what
        time.sleep(0.5)


def test_bots_are_placed_routed_and_rescheduled_without_ever_running_twice(two_hosts):
    from app import create_gateway_app
    from app.extensions import db
    from app.runtime import control
    from app.signals.models import Signal
    from app.strategies.models import Strategy, StrategyEvent

    app, world, hosts = two_hosts["app"], two_hosts["world"], two_hosts["hosts"]
    with app.app_context():
        first = make_strategy("host-one", "MA_Cross_BTC", ("BTC/USDT",))
        second = make_strategy("host-two", "RSI_ETH", ("ETH/USDT",))
        for strategy in (first, second):
            control.request_start(strategy.id)
        rows = [control.wait_for_status(s.id, ("running", "error"), 180) for s in (first, second)]
        assert [r.status for r in rows] == ["running", "running"], [r.status_message
                                                                     for r in rows]
        placed = {r.id: r.host for r in rows}
        assert set(placed.values()) == set(hosts), "one bot on each host"
        for row in rows:  # the strategy file came from the database, not a shared folder
            host = hosts[row.host]
            assert (host.strategies / row.strategy_file).exists()
            assert host.bot_pids(row.id), f"no bot process of {row.id} on {row.host}"

        gateway = create_gateway_app({"SECRET_KEY": "bots-test-secret-key",
                                      "SQLALCHEMY_DATABASE_URI": world.database_url,
                                      "REDIS_URL": world.redis_url,
                                      "CONFIG_DIR": str(world.config_dir),
                                      "VAR_DIR": str(world.var_dir)}).test_client()
        for row in rows:
            answer = gateway.get(f"/api/strategy/{row.id}/ping")
            assert answer.status_code == 200 and answer.get_json() == {"status": "pong"}

        def webhooks_in():
            db.session.rollback()
            return all(db.session.scalar(db.select(db.func.count(Signal.id)).where(
                Signal.strategy_id == r.id)) for r in rows)

        _wait(webhooks_in, 120, "no webhook of a bot on each host reached the web app")

        # ---- host loss: cut the host of the first bot off the network
        lost_host, other = hosts[placed[first.id]], hosts[placed[second.id]]
        _wait(lambda: db.session.get(Strategy, first.id) and _copied(first.id), 60,
              "no trade-database copy of the first bot was taken")
        old_pid = lost_host.bot_pids(first.id)[0]
        timeline = []
        cut = time.monotonic()
        lost_host.ns.cut()
        try:
            def row_of(sid):
                db.session.rollback()
                return db.session.get(Strategy, sid)

            _wait(lambda: not psutil.pid_exists(old_pid)
                  or psutil.Process(old_pid).status() == psutil.STATUS_ZOMBIE, 60,
                  "the cut host kept its bot running (no fencing)")
            timeline.append(("old bot stopped on the cut host", time.monotonic() - cut))
            _wait(lambda: db.session.scalar(db.select(StrategyEvent.id).where(
                StrategyEvent.strategy_id == first.id, StrategyEvent.kind == "lost")), 60,
                "the bot of the cut host was not marked lost")
            timeline.append(("marked lost", time.monotonic() - cut))
            _wait(lambda: (r := row_of(first.id)).status == "running"
                  and r.host == other.ns.address, 180, "not running on the other host")
            timeline.append(("running on the other host", time.monotonic() - cut))
            moved = row_of(first.id)
            event = db.session.scalar(db.select(StrategyEvent.message).where(
                StrategyEvent.strategy_id == first.id, StrategyEvent.kind == "rescheduled"))
            assert f"copied on {lost_host.ns.address}" in event, event
            assert other.bot_pids(first.id) and moved.pid in other.bot_pids(first.id)
        finally:
            lost_host.ns.mend()
        mended = time.monotonic()
        time.sleep(15)  # the host is back: its supervisor sees the placement moved
        assert lost_host.bot_pids(first.id) == [], "the strategy runs twice"
        assert len(other.bot_pids(first.id)) == 1
        assert row_of(first.id).host == other.ns.address
        assert row_of(second.id).status == "running"
        _wait(lambda: {h.host for h in control.live_hosts()} == set(hosts), 30,
              "the mended host did not come back")
        timeline.append(("host back, no duplicate", time.monotonic() - mended + 15))
        print("host-loss timeline:", ", ".join(f"{what} +{t:.1f} s" for what, t in timeline))
        lost_at = dict(timeline)["marked lost"]
        assert lost_at <= 15 + 6, timeline  # heartbeat lifetime + a watchdog pass
        assert dict(timeline)["old bot stopped on the cut host"] < lost_at, "ran twice"
        # ---- the Hosts report, and moving a strategy by hand (its trade database goes along)
        from app.strategies import service
        from app.system.hosts import hosts_report

        report = hosts_report()
        assert {h["host"] for h in report["hosts"] if h["alive"]} == set(hosts)
        assert report["totals"]["running"] == 2
        moved = service.move_strategy(second.id, lost_host.ns.address)
        assert moved["started"] and moved["to"] == lost_host.ns.address
        row = control.wait_for_status(second.id, ("running", "error"), 120)
        assert row.status == "running" and row.host == lost_host.ns.address
        assert lost_host.bot_pids(second.id) and not other.bot_pids(second.id)
        restored = db.session.scalar(db.select(StrategyEvent.message).where(
            StrategyEvent.strategy_id == second.id, StrategyEvent.kind == "trades_restored"))
        assert restored and f"copied on {other.ns.address}" in restored, restored
        for sid in (first.id, second.id):
            control.request_stop(sid)
        for sid in (first.id, second.id):
            control.wait_for_status(sid, ("stopped",), 60)
        requests.get(f"{two_hosts['web'].url}/login", timeout=5)


def _copied(strategy_id: int) -> bool:
    from app.extensions import db
    from app.runtime.models import TradeDbCopy

    db.session.rollback()
    return db.session.get(TradeDbCopy, strategy_id) is not None
