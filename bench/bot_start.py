"""Bot start-up and memory: start N real FreqTrade bots (5 by default) and measure them.

    .venv/bin/python bench/bot_start.py [--bots 5] [--wave 3] [--launcher fork|subprocess]
                                        [--settle 10] [--json]

Sets up its own world in a temp folder (Redis, SQLite, the market simulator, a supervisor
subprocess — the same pieces as the bot tests), creates the demo strategies and starts them in
waves of at most `--wave` bots (all at once by default; use 3 on a shared 2-core machine). Per
wave it asks for every bot of the wave to start at once, measures, and stops them. It reports:

- the launcher (system.runtime.launcher, `--launcher` overrides it); for `fork`, how long the
  zygote took to come up after the supervisor started (the waves start once it is up);
- request → running: from request_start() to status `running` (includes waiting for a start
  slot: the supervisor starts as many bots at once as the machine has cores);
- spawn → ready: from the launcher's spawn (Popen / the fork request) to the bot's first
  /api/v1/ping answer, as the launcher logs it in the supervisor's log ("ready … after x s"; the
  process's creation time from psutil is only a fallback: it is off by up to a second);
- memory per bot after `--settle` seconds: RSS and PSS from /proc/<pid>/smaps_rollup (PSS splits
  shared pages between the processes sharing them), the totals per wave, and for `fork` the
  zygote's own share (it holds the pages its bots share);
- stop: from request_stop() of a wave's bots to all `stopped`.

Everything it starts is stopped at the end (also on Ctrl-C), the zygote included.
"""

from __future__ import annotations

import argparse
import json
import os
import re
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


def _memory(pid: int) -> dict[str, int]:
    roll = smaps_rollup(pid)
    return {"rss": roll.get("Rss", 0), "pss": roll.get("Pss", 0),
            "private": roll.get("Private_Clean", 0) + roll.get("Private_Dirty", 0)}


def _wait_running(ids: list[int]) -> dict[int, float]:
    """Poll until every strategy runs; when each got there (raises on error or after 300 s)."""
    from app.extensions import db
    from app.strategies.models import Strategy

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
    return running_at


def run(bots: int, settle: float, launcher: str | None = None, wave: int | None = None) -> dict:
    """Start `bots` bots in waves of `wave`, measure, stop everything; the figures."""
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
        relay_process,
        stop_zygote,
        zygote_pid,
    )
    from tests.support.servers import RedisServer

    base = Path(tempfile.mkdtemp(prefix="btcw-bench-bots-"))
    redis = RedisServer().start()
    world = make_world(base, None, redis.url, launcher=launcher)
    simulator = SimulatorProcess(world)
    relay = relay_process(world)  # the bots reach the simulator through it
    supervisor = SupervisorProcess(world)
    wave = wave or bots
    try:
        app = create_bots_app(world)
        simulator.start()
        relay.start()
        supervisor_started = time.monotonic()
        supervisor.start()
        zygote_boot = None
        if world.launcher == "fork":
            deadline = time.monotonic() + 120
            while _zygote_answers(world) is None and time.monotonic() < deadline:
                time.sleep(0.1)
            if _zygote_answers(world) is None:
                raise RuntimeError("the supervisor's zygote did not come up within 120 s")
            zygote_boot = time.monotonic() - supervisor_started
        wall: dict[int, float] = {}
        spawn: dict[int, float] = {}
        memory: list[dict] = []
        waves: list[dict] = []
        parents: set[int] = set()
        with app.app_context():
            ids = [make_strategy(name, cls, (pair,)).id
                   for name, cls, pair in (DEMO * (bots // len(DEMO) + 1))[:bots]]
            for number, first in enumerate(range(0, len(ids), wave), start=1):
                batch = ids[first:first + wave]
                requested = {}
                for strategy_id in batch:
                    requested[strategy_id] = time.monotonic()
                    control.request_start(strategy_id)
                running_at = _wait_running(batch)
                db.session.rollback()
                rows = {s.id: s for s in db.session.scalars(
                    db.select(Strategy).where(Strategy.id.in_(batch)))}
                logged = _ready_after(supervisor.log_text())
                for strategy_id, row in rows.items():
                    wall[strategy_id] = running_at[strategy_id] - requested[strategy_id]
                    proc = psutil.Process(row.pid)
                    parents.add(proc.ppid())
                    if row.pid in logged:
                        spawn[strategy_id] = logged[row.pid]
                    else:
                        ready = row.started_at.replace(tzinfo=UTC).timestamp()  # naive UTC
                        spawn[strategy_id] = ready - proc.create_time()
                time.sleep(settle)
                wave_memory = []
                for row in rows.values():
                    wave_memory.append({"wave": number, "name": row.name, "pid": row.pid,
                                        "port": row.port, **_memory(row.pid)})
                zygote = zygote_pid(world.var_dir)
                zygote_memory = _memory(zygote) if zygote else None
                stop_started = time.monotonic()
                for strategy_id in batch:
                    control.request_stop(strategy_id)
                for strategy_id in batch:
                    control.wait_for_status(strategy_id, ("stopped",), 120)
                memory.extend(wave_memory)
                waves.append({
                    "wave": number, "bots": len(batch),
                    "rss": sum(m["rss"] for m in wave_memory),
                    "pss": sum(m["pss"] for m in wave_memory),
                    "zygote": zygote_memory,
                    "stop_seconds": time.monotonic() - stop_started,
                })
        zygote = zygote_pid(world.var_dir)
        return {
            "bots": len(ids),
            "wave": wave,
            "launcher": world.launcher,
            "forked": bool(zygote) and parents == {zygote},
            "zygote_boot_seconds": zygote_boot,
            "cpu_count": os.cpu_count(),
            "load_average": os.getloadavg(),
            "request_to_running": {"median": statistics.median(wall.values()),
                                   "max": max(wall.values())},
            "spawn_to_ready": {"median": statistics.median(spawn.values()),
                               "max": max(spawn.values())},
            "memory": memory,
            "waves": waves,
        }
    finally:
        supervisor.stop()
        kill_leftover_bots(world.var_dir)
        stop_zygote(world.var_dir)
        relay.stop()
        simulator.stop()
        redis.cleanup()


_READY = re.compile(r"bot pid (\d+) ready on port \d+ after ([\d.]+) s")


def _ready_after(log_text: str) -> dict[int, float]:
    """pid → seconds from spawn to the first ping answer, from the supervisor's log."""
    return {int(m.group(1)): float(m.group(2)) for m in _READY.finditer(log_text)}


def _zygote_answers(world) -> dict | None:
    """The ping answer of the world's zygote, or None."""
    from app.runtime import zygote
    from app.runtime.launcher import zygote_socket_path

    try:
        return zygote.request(zygote_socket_path(world.var_dir / "run"), {"op": "ping"}, 2.0)
    except zygote.ZygoteError:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bots", type=int, default=5, help="how many bots (default 5)")
    parser.add_argument("--wave", type=int, default=None,
                        help="at most this many bots at once (default: all)")
    parser.add_argument("--launcher", choices=("subprocess", "fork"), default=None,
                        help="system.runtime.launcher for the run (default: config/system.yml)")
    parser.add_argument("--settle", type=float, default=10.0,
                        help="seconds to let the bots run before measuring memory")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args()
    if args.bots < 1 or (args.wave is not None and args.wave < 1):
        parser.error("--bots and --wave must be at least 1")
    result = run(args.bots, args.settle, args.launcher, args.wave)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    req, spawn = result["request_to_running"], result["spawn_to_ready"]
    load = ", ".join(f"{x:.1f}" for x in result["load_average"])
    print(f"{result['bots']} bots, launcher {result['launcher']}"
          f"{' (all forked by the zygote)' if result['forked'] else ''}, waves of "
          f"{result['wave']}, {result['cpu_count']} cores (load {load})")
    if result["zygote_boot_seconds"] is not None:
        print(f"zygote up          : {result['zygote_boot_seconds']:5.2f} s after the "
              "supervisor started")
    print(f"request -> running : median {req['median']:5.2f} s   max {req['max']:5.2f} s")
    print(f"spawn   -> ready   : median {spawn['median']:5.2f} s   max {spawn['max']:5.2f} s")
    print("memory after settling (from /proc/<pid>/smaps_rollup):")
    for m in result["memory"]:
        print(f"  w{m['wave']} {m['name']:18} pid {m['pid']:<7} RSS {mib(m['rss'])}  "
              f"PSS {mib(m['pss'])}  private {mib(m['private'])}")
    for w in result["waves"]:
        line = (f"  wave {w['wave']}: {w['bots']} bots  RSS {mib(w['rss'])}  "
                f"PSS {mib(w['pss'])} ({mib(w['pss'] / w['bots'])} per bot)")
        if w["zygote"]:
            z = w["zygote"]
            line += (f"; zygote RSS {mib(z['rss'])} PSS {mib(z['pss'])}; PSS with zygote "
                     f"{mib((w['pss'] + z['pss']) / w['bots'])} per bot")
        print(line + f"; stop {w['stop_seconds']:.2f} s")


if __name__ == "__main__":
    main()
