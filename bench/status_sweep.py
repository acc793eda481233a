"""One strategy status sweep over N bots: real FreqTrade bots plus stand-ins up to N (999).

    .venv/bin/python bench/status_sweep.py [--bots 999] [--real 2] [--rounds 3]
        [--concurrency 64] [--delay-ms 2-30] [--json]

Sets up its own world in a temp folder (Redis, SQLite, the market simulator and a supervisor,
the same pieces as the bot tests) and starts `--real` demo bots (real `freqtrade trade`
processes, ~330 MB each; at most 3 on a small machine). The rest of the N bots are stand-in
HTTP endpoints on another loopback address (127.0.0.2), one port each, served by one gevent
process (tests/support/standin_bots.py) that answers FreqTrade's health, show_config and
pair_candles routes in FreqTrade's shapes after a random 2-30 ms delay.

Each round runs `app.monitoring.bot_status.sweep_strategies()` exactly as the periodic job does
in an RQ work horse (no gevent, a thread pool of `--concurrency`): three API calls per bot
through BotClient, health scores, stall checks, one bulk UPDATE, samples and the Redis cache.
It prints the probe time (all bots asked) and the whole sweep time. Target: <= 5 s for 999.

Everything it starts is stopped at the end (also on Ctrl-C).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

STANDIN_HOST = "127.0.0.2"
REAL = (("bench-ma-cross", "MA_Cross_BTC", "BTC/USDT"), ("bench-rsi", "RSI_ETH", "ETH/USDT"),
        ("bench-macd", "MACD_DOT", "DOT/USDT"))


def _free_range(host: str, size: int) -> int:
    """The first port of `size` consecutive ports free on `host` (below the ephemeral range)."""
    from app.runtime.port_pool import port_is_bindable

    for start in range(22000, 32000 - size, 500):
        if all(port_is_bindable(host, p) for p in range(start, start + size)):
            return start
    raise RuntimeError(f"no {size} free consecutive ports on {host}")


def _wait_line(proc: subprocess.Popen, prefix: str, seconds: float) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        line = proc.stdout.readline().decode()
        if line.startswith(prefix):
            return line.strip()
        if proc.poll() is not None:
            raise RuntimeError(f"stand-in server exited with {proc.returncode}")
    raise TimeoutError("stand-in server did not start")


def run(total: int, real: int, rounds: int, concurrency: int, delay_ms: str) -> dict:
    """Set up, sweep `rounds` times, tear down; the figures."""
    from app.clock import utcnow
    from app.extensions import db
    from app.monitoring.bot_status import sweep_strategies
    from app.runtime import control
    from app.runtime.credentials import new_credentials
    from app.strategies.models import Strategy
    from tests.bots import (
        SimulatorProcess,
        SupervisorProcess,
        create_bots_app,
        kill_leftover_bots,
        make_strategy,
        make_world,
        relay_process,
    )
    from tests.support.servers import RedisServer

    base = Path(tempfile.mkdtemp(prefix="btcw-bench-sweep-"))
    redis = RedisServer().start()
    world = make_world(base, None, redis.url)
    simulator = SimulatorProcess(world)
    relay = relay_process(world)  # the bots reach the simulator through it
    supervisor = SupervisorProcess(world)
    standins = None
    standin_count = total - real
    try:
        app = create_bots_app(world)
        holder = app.extensions["btcw_settings"]
        system = holder.settings.system
        holder.settings = dataclasses.replace(holder.settings, system=dataclasses.replace(
            system, monitoring=dataclasses.replace(system.monitoring,
                                                   status_concurrency=concurrency)))
        if standin_count:
            first_port = _free_range(STANDIN_HOST, standin_count)
            standins = subprocess.Popen(
                [sys.executable, "-m", "tests.support.standin_bots", "--host", STANDIN_HOST,
                 "--base-port", str(first_port), "--count", str(standin_count),
                 "--delay-ms", delay_ms],
                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                start_new_session=True)
            _wait_line(standins, "ready", 60)
        if real:
            simulator.start()
            relay.start()
            supervisor.start()
        with app.app_context():
            real_ids = []
            for name, cls, pair in REAL[:real]:
                strategy = make_strategy(name, cls, (pair,))
                control.request_start(strategy.id)
                real_ids.append(strategy.id)
            for strategy_id in real_ids:
                row = control.wait_for_status(strategy_id, ("running", "error", "crashed"), 180)
                if row.status != "running":
                    raise RuntimeError(f"{row.name} did not start: {row.status_message}")
            started = utcnow() - timedelta(hours=1)
            db.session.add_all(Strategy(
                name=f"standin-{i}", strategy_class="Standin", strategy_file="standin.py",
                exchange="simulator", timeframe="1m", pairs=["BTC/USDT"], status="running",
                desired_state="running", host=STANDIN_HOST, port=first_port + i,
                started_at=started, **new_credentials()) for i in range(standin_count))
            db.session.commit()
            if real_ids:  # let the real bots analyse their first candles
                time.sleep(15)
            results = []
            for _ in range(rounds):
                summary = sweep_strategies()
                results.append(summary)
                time.sleep(1)
            real_scores = {s.name: s.health_score for s in db.session.scalars(
                db.select(Strategy).where(Strategy.id.in_(real_ids)))}
            for strategy_id in real_ids:
                control.request_stop(strategy_id)
            for strategy_id in real_ids:
                control.wait_for_status(strategy_id, ("stopped",), 120)
        sweeps = [r["sweep_seconds"] for r in results]
        probes = [r["probe_seconds"] for r in results]
        return {
            "bots": total, "real_bots": real, "standin_bots": standin_count,
            "concurrency": concurrency, "cpu_count": os.cpu_count(), "delay_ms": delay_ms,
            "rounds": results,
            "sweep_seconds": {"median": statistics.median(sweeps), "max": max(sweeps),
                              "min": min(sweeps)},
            "probe_seconds": {"median": statistics.median(probes), "max": max(probes)},
            "real_bot_scores": real_scores,
        }
    finally:
        if standins is not None and standins.poll() is None:
            standins.terminate()
            standins.wait(10)
        supervisor.stop()
        kill_leftover_bots(world.var_dir)
        relay.stop()
        simulator.stop()
        redis.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bots", type=int, default=999, help="bots in the sweep (default 999)")
    parser.add_argument("--real", type=int, default=2,
                        help="how many of them are real FreqTrade bots (0-3, default 2)")
    parser.add_argument("--rounds", type=int, default=3, help="sweeps to run (default 3)")
    parser.add_argument("--concurrency", type=int, default=64,
                        help="bots probed at once (system.monitoring.status_concurrency)")
    parser.add_argument("--delay-ms", default="2-30",
                        help="stand-in answer delay per request, LOW-HIGH ms (default 2-30)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args()
    if not 0 <= args.real <= len(REAL) or args.real > args.bots:
        parser.error(f"--real must be 0..{len(REAL)} and at most --bots")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    result = run(args.bots, args.real, args.rounds, args.concurrency, args.delay_ms)
    if args.json:
        print(json.dumps(result, indent=2, default=str))
        return
    print(f"{result['bots']} bots ({result['real_bots']} real FreqTrade, "
          f"{result['standin_bots']} stand-ins answering after {result['delay_ms']} ms), "
          f"{result['concurrency']} at once, {result['cpu_count']} cores")
    for i, r in enumerate(result["rounds"], 1):
        print(f"  sweep {i}: {r['sweep_seconds']:6.2f} s (bots asked in {r['probe_seconds']:.2f}"
              f" s); {r['healthy_strategies']} healthy, {r['unreachable_strategies']} "
              f"unreachable, {r['timeout_strategies']} timeout, {r['error_strategies']} error, "
              f"average score {r['average_health_score']}")
    s = result["sweep_seconds"]
    verdict = "within" if s["median"] <= 5 else "OVER"
    print(f"sweep time: median {s['median']:.2f} s, max {s['max']:.2f} s "
          f"({verdict} the 5 s target)")
    print(f"real bots' health scores: {result['real_bot_scores']}")


if __name__ == "__main__":
    main()
