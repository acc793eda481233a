"""Bot start-up and memory: start N real FreqTrade bots (5 by default) and measure them.

    .venv/bin/python bench/bot_start.py [--bots 5] [--settle 10] [--json]

Sets up its own world in a temp folder (Redis, SQLite, the market simulator, a supervisor
subprocess — the same pieces as the bot tests), creates the five demo strategies, asks for all
of them to start at once and reports:

- request → running: from request_start() to status `running` (includes waiting for a start
  slot: the supervisor starts as many bots at once as the machine has cores);
- spawn → ready: from the process's creation to its /api/v1/ping answering;
- memory per bot after `--settle` seconds: RSS and PSS from /proc/<pid>/smaps_rollup (PSS splits
  shared pages between the processes sharing them), and the totals;
- stop: from request_stop() of all bots to all `stopped`.

Everything it starts is stopped at the end (also on Ctrl-C).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEMO = (
    ("bench-ma-cross", "MA_Cross_BTC", "BTC/USDT"),
    ("bench-rsi", "RSI_ETH", "ETH/USDT"),
    ("bench-custom-sol", "Custom_SOL", "SOL/USDT"),
    ("bench-bollinger", "Bollinger_ADA", "ADA/USDT"),
    ("bench-macd", "MACD_DOT", "DOT/USDT"),
)


def smaps_rollup(pid: int) -> dict[str, int]:
    """Rss, Pss, Private_* … of a process in bytes, from /proc/<pid>/smaps_rollup."""
    values = {}
    with open(f"/proc/{pid}/smaps_rollup") as fh:
        for line in fh:
            parts = line.split()
            if len(parts) >= 3 and parts[-1] == "kB":
                values[parts[0].rstrip(":")] = int(parts[1]) * 1024
    return values


def mib(value: float) -> str:
    return f"{value / 2**20:7.1f} MiB"


def run(bots: int, settle: float) -> dict:
    """Start `bots` bots, measure, stop everything; the figures."""
    import psutil

    from app.extensions import db
    from app.runtime import control
    from app.strategies.models import Strategy
    from tests.bots import (
        SimulatorProcess,
        SupervisorProcess,
        create_bots_app,
        kill_leftover_bots,
        make_strategy,
        make_world,
    )
    from tests.support.servers import RedisServer

    base = Path(tempfile.mkdtemp(prefix="btcw-bench-bots-"))
    redis = RedisServer().start()
    world = make_world(base, None, redis.url)
    simulator = SimulatorProcess(world)
    supervisor = SupervisorProcess(world)
    try:
        app = create_bots_app(world)
        simulator.start()
        supervisor.start()
        with app.app_context():
            ids = [make_strategy(name, cls, (pair,)).id
                   for name, cls, pair in (DEMO * (bots // len(DEMO) + 1))[:bots]]
            requested = {}
            for strategy_id in ids:
                requested[strategy_id] = time.monotonic()
                control.request_start(strategy_id)
            running_at: dict[int, float] = {}
            deadline = time.monotonic() + 300
            while len(running_at) < len(ids) and time.monotonic() < deadline:
                db.session.rollback()
                for s in db.session.scalars(db.select(Strategy).where(Strategy.id.in_(ids))):
                    if s.id in running_at:
                        continue
                    if s.status == "running":
                        running_at[s.id] = time.monotonic()
                    elif s.status in ("error", "crashed"):
                        raise RuntimeError(f"{s.name} failed to start: {s.status_message}")
                time.sleep(0.05)
            if len(running_at) < len(ids):
                raise RuntimeError("not every bot started within 300 s")
            db.session.rollback()
            rows = {s.id: s for s in db.session.scalars(
                db.select(Strategy).where(Strategy.id.in_(ids)))}
            wall = {i: running_at[i] - requested[i] for i in ids}
            spawn = {}
            for strategy_id, row in rows.items():
                created = psutil.Process(row.pid).create_time()
                ready = row.started_at.replace(tzinfo=UTC).timestamp()  # stored naive UTC
                spawn[strategy_id] = ready - created
            time.sleep(settle)
            memory = {}
            for strategy_id, row in rows.items():
                roll = smaps_rollup(row.pid)
                memory[strategy_id] = {
                    "name": row.name, "pid": row.pid, "port": row.port,
                    "rss": roll.get("Rss", 0), "pss": roll.get("Pss", 0),
                    "private": roll.get("Private_Clean", 0) + roll.get("Private_Dirty", 0),
                }
            stop_started = time.monotonic()
            for strategy_id in ids:
                control.request_stop(strategy_id)
            for strategy_id in ids:
                control.wait_for_status(strategy_id, ("stopped",), 120)
            stop_seconds = time.monotonic() - stop_started
        return {
            "bots": len(ids),
            "cpu_count": os.cpu_count(),
            "request_to_running": {"median": statistics.median(wall.values()),
                                   "max": max(wall.values())},
            "spawn_to_ready": {"median": statistics.median(spawn.values()),
                               "max": max(spawn.values())},
            "memory": list(memory.values()),
            "memory_total": {"rss": sum(m["rss"] for m in memory.values()),
                             "pss": sum(m["pss"] for m in memory.values())},
            "stop_all_seconds": stop_seconds,
        }
    finally:
        supervisor.stop()
        kill_leftover_bots(world.var_dir)
        simulator.stop()
        redis.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bots", type=int, default=5, help="how many bots (default 5)")
    parser.add_argument("--settle", type=float, default=10.0,
                        help="seconds to let the bots run before measuring memory")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args()
    if args.bots < 1:
        parser.error("--bots must be at least 1")
    result = run(args.bots, args.settle)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    req, spawn = result["request_to_running"], result["spawn_to_ready"]
    print(f"{result['bots']} bots on {result['cpu_count']} cores "
          f"(the supervisor starts {result['cpu_count']} at a time)")
    print(f"request -> running : median {req['median']:5.2f} s   max {req['max']:5.2f} s")
    print(f"spawn   -> ready   : median {spawn['median']:5.2f} s   max {spawn['max']:5.2f} s")
    print("memory after settling (from /proc/<pid>/smaps_rollup):")
    for m in result["memory"]:
        print(f"  {m['name']:18} pid {m['pid']:<7} RSS {mib(m['rss'])}  PSS {mib(m['pss'])}  "
              f"private {mib(m['private'])}")
    total = result["memory_total"]
    print(f"  {'total':18} {'':11} RSS {mib(total['rss'])}  PSS {mib(total['pss'])}")
    print(f"stop all           : {result['stop_all_seconds']:5.2f} s")


if __name__ == "__main__":
    main()
