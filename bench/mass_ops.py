"""Mass operations: start N real bots at once, stop them at once, then stop them all by shutting
the supervisor down.

    .venv/bin/python bench/mass_ops.py [--bots 50] [--launcher fork|subprocess] [--json]

Sets up its own world in a temp folder (Redis, SQLite, the market simulator, a supervisor
subprocess — the pieces of the bot tests) with N strategies, and measures three phases:

1. start: request_start() of every bot in one go → all `running` (the supervisor starts as many
   at once as the machine has cores; the rest wait for a slot);
2. stop: request_stop() of every bot in one go → all `stopped`;
3. shutdown: start them all again, then SIGTERM the supervisor (what Ctrl-C of `make run` does)
   → the supervisor has exited, every bot process is gone and every row says `stopped`.

Each phase ends with every bot in the requested state or the bench fails. The supervisor's log
is searched for database pool exhaustion ("QueuePool limit") and for tracebacks.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bot_start import DEMO, _wait_running  # noqa: E402


def _statuses(ids: list[int]) -> dict[str, int]:
    from app.extensions import db
    from app.strategies.models import Strategy

    db.session.rollback()
    counts: dict[str, int] = {}
    for status in db.session.scalars(db.select(Strategy.status).where(Strategy.id.in_(ids))):
        counts[status] = counts.get(status, 0) + 1
    return counts


def _wait_all(ids: list[int], status: str, timeout: float) -> float:
    """Seconds until every strategy has `status` (raises after `timeout`)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if _statuses(ids) == {status: len(ids)}:
            return time.monotonic() - started
        time.sleep(0.1)
    raise RuntimeError(f"not every bot is {status} after {timeout} s: {_statuses(ids)}")


def _start_all(ids: list[int]) -> dict:
    from app.runtime import control

    requested = time.monotonic()
    for strategy_id in ids:
        control.request_start(strategy_id)
    asked = time.monotonic() - requested
    running_at = _wait_running(ids)
    waits = [at - requested for at in running_at.values()]
    return {"requests_seconds": asked, "all_running_seconds": max(waits),
            "median_running_seconds": statistics.median(waits)}


def _pids(ids: list[int]) -> list[int]:
    from app.extensions import db
    from app.strategies.models import Strategy

    db.session.rollback()
    return [pid for pid in db.session.scalars(db.select(Strategy.pid).where(Strategy.id.in_(ids)))
            if pid]


def run(bots: int, launcher: str | None = None) -> dict:
    """The three phases on `bots` bots; the figures."""
    import psutil

    from app.runtime import control
    from tests.bots import make_strategy, standalone_world

    with standalone_world("btcw-bench-mass-", launcher) as (world, app, supervisor):
        result: dict = {"bots": bots, "launcher": world.launcher, "cpu_count": os.cpu_count()}
        with app.app_context():
            ids = [make_strategy(f"{name}-{n}", cls, (pair,)).id
                   for n, (name, cls, pair) in enumerate((DEMO * (bots // len(DEMO) + 1))[:bots])]
            result["start"] = _start_all(ids)
            result["memory_available_gib"] = psutil.virtual_memory().available / 2**30

            stop_requested = time.monotonic()
            for strategy_id in ids:
                control.request_stop(strategy_id)
            result["stop"] = {"requests_seconds": time.monotonic() - stop_requested}
            result["stop"]["all_stopped_seconds"] = _wait_all(ids, "stopped", 300) + \
                result["stop"]["requests_seconds"]

            result["restart"] = _start_all(ids)
            pids = _pids(ids)
            assert len(pids) == bots, f"{len(pids)} pids for {bots} running bots"
            shutdown = time.monotonic()
            os.kill(supervisor.pid, signal.SIGTERM)
            supervisor.proc.wait(120)
            exited = time.monotonic() - shutdown
            gone, alive = psutil.wait_procs([psutil.Process(p) for p in pids
                                            if psutil.pid_exists(p)], timeout=30)
            result["shutdown"] = {
                "supervisor_exit_seconds": exited,
                "bots_left_running": len(alive),
                "rows": _statuses(ids),
            }
        log = supervisor.log_text()
        result["pool_exhausted"] = log.count("QueuePool limit")
        result["tracebacks"] = log.count("Traceback")
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bots", type=int, default=50)
    parser.add_argument("--launcher", choices=("fork", "subprocess"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(args.bots, args.launcher)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    start, stop, restart, shut = (result["start"], result["stop"], result["restart"],
                                  result["shutdown"])
    print(f"{result['bots']} bots, launcher {result['launcher']}, {result['cpu_count']} cores")
    print(f"{'phase':22} {'requests s':>10} {'all done s':>10} {'median s':>9}  end state")
    print(f"{'start all at once':22} {start['requests_seconds']:10.2f} "
          f"{start['all_running_seconds']:10.1f} {start['median_running_seconds']:9.1f}  "
          f"{result['bots']} running")
    print(f"{'stop all at once':22} {stop['requests_seconds']:10.2f} "
          f"{stop['all_stopped_seconds']:10.1f} {'':9}  {result['bots']} stopped")
    print(f"{'start again':22} {restart['requests_seconds']:10.2f} "
          f"{restart['all_running_seconds']:10.1f} {restart['median_running_seconds']:9.1f}  "
          f"{result['bots']} running")
    print(f"{'supervisor SIGTERM':22} {'':10} {shut['supervisor_exit_seconds']:10.1f} {'':9}  "
          f"rows {shut['rows']}, {shut['bots_left_running']} processes left")
    print(f"database pool exhausted: {result['pool_exhausted']} times; "
          f"tracebacks in the supervisor log: {result['tracebacks']}")


if __name__ == "__main__":
    main()
