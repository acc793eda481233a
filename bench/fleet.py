"""A fleet on one machine: N real FreqTrade bots (fork launcher) on the simulator, at once.

    .venv/bin/python bench/fleet.py [--bots 100] [--settle 20] [--json]

Sets up its own world in a temp folder (Redis, SQLite, the simulator, the exchange relay, a bot
supervisor and the web app under gunicorn), creates N strategies over the five demo classes and
asks for all of them to start in one go. It prints:

- time until all N run; request → running and spawn → ready (median, max);
- memory per bot after `--settle` seconds from /proc/<pid>/smaps_rollup: PSS (shared pages split
  between their sharers), RSS and private (clean + dirty), median; the zygote's own; the sum;
- the control plane's own memory (PSS of web, relay, simulator, supervisor, Redis);
- status sweeps over the N bots (the monitoring job's `sweep_strategies`): the first (every
  call asked of every bot), then `--sweeps` more at the job's interval
  (system.monitoring.strategy_status_interval, 30 s) and at the times the cron starts them
  (clear of the minute's candle close: :20 and :50): each asks health, and profit, the newest
  candle or show_config only when due;
- server time of the web pages and list APIs (median of 5, through gunicorn) while they run;
- stop-all: request_stop() of every bot → all `stopped`.

Targets (2 cores, 24 GB): all 100 running ≤ 120 s, PSS ≤ 64 MiB a bot, sweep ≤ 2 s, stop-all
≤ 30 s, every page ≤ 200 ms while they run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bot_start import DEMO, _memory, _ready_after, _wait_running  # noqa: E402
from bench.mass_ops import _wait_all  # noqa: E402

SWEEP_JOB = "app.tasks.monitoring.sweep_strategies"
PAGES = ("/strategies/", "/strategies/?sort=profit", "/capacity", "/system/", "/signals/",
         "/api/v1/strategies/overview", "/api/v1/system/capacity/detailed",
         "/api/v1/strategies?page=1")


def _control_plane(world, web_pid: int) -> dict[str, int]:
    """PSS of this world's own processes, by role."""
    import psutil

    roles = {"web": [], "relay": [], "simulator": [], "supervisor": [], "redis": []}
    for proc in psutil.process_iter(["cmdline", "pid"]):
        try:
            line = " ".join(proc.info["cmdline"] or [])
            env = proc.environ()
        except (psutil.Error, OSError):
            continue
        if env.get("BTCW_VAR_DIR") != str(world.var_dir) and "redis-server" not in line:
            continue
        if "wsgi:relay()" in line:
            roles["relay"].append(proc.pid)
        elif "wsgi:web()" in line:
            roles["web"].append(proc.pid)
        elif "app.simulator" in line:
            roles["simulator"].append(proc.pid)
        elif "supervisor run" in line:
            roles["supervisor"].append(proc.pid)
        elif "redis-server" in line and world.redis_url.rsplit(":", 1)[1].split("/")[0] in line:
            roles["redis"].append(proc.pid)
    out = {}
    for role, pids in roles.items():
        total = 0
        for pid in pids:
            try:
                total += _memory(pid)["pss"]
            except OSError:
                continue
        out[role] = total
    return out


def _pages(web) -> dict[str, float]:
    session = web.login("bench", "bench-password-1!")
    out = {}
    for path in PAGES:
        session.get(f"{web.url}{path}", timeout=30)
        times = []
        for _ in range(5):
            started = time.perf_counter()
            answer = session.get(f"{web.url}{path}", timeout=30)
            times.append((time.perf_counter() - started) * 1000)
        out[path] = round(statistics.median(times), 1) if answer.ok else -answer.status_code
    return out


def run(bots: int, settle: float, sweeps: int) -> dict:
    from app.auth import service as auth
    from app.extensions import db
    from app.monitoring.bot_status import sweep_strategies
    from app.runtime import control
    from app.strategies.models import Strategy
    from app.system.settings import current_settings
    from app.tasks import clear_of_candle_close
    from tests.bots import make_strategy, standalone_world, zygote_pid
    from tests.signals.webserver import GunicornWeb

    def adjust(system: dict) -> None:
        system["capacity"]["max_strategies"] = max(bots, 999)
        system["freqtrade"]["startup_timeout"] = 180

    with standalone_world("btcw-bench-fleet-", "fork", adjust) as (world, app, supervisor):
        port = int(world.public_url.rsplit(":", 1)[1])
        web = GunicornWeb(world.env(), workers=2, port=port,
                          log_path=world.var_dir / "web.log").start()
        try:
            with app.app_context():
                auth.create_user("bench", "bench-password-1!")
                ids = [make_strategy(f"{name}-{n}", cls, (pair,)).id
                       for n, (name, cls, pair) in enumerate((DEMO * (bots // len(DEMO) + 1))
                                                             [:bots])]
                requested = time.monotonic()
                for strategy_id in ids:
                    control.request_start(strategy_id)
                running_at = _wait_running(ids)
                all_running = time.monotonic() - requested
                waits = [at - requested for at in running_at.values()]
                time.sleep(settle)
                db.session.rollback()
                rows = list(db.session.scalars(db.select(Strategy).where(Strategy.id.in_(ids))))
                logged = _ready_after(supervisor.log_text())
                spawn = [logged[r.pid] for r in rows if r.pid in logged]
                memory = [_memory(r.pid) for r in rows]
                zygote = zygote_pid(world.var_dir)
                interval = current_settings().system.monitoring.strategy_status_interval
                due = datetime.now(UTC)
                sweep_started = time.monotonic()
                summary = sweep_strategies()
                sweep = time.monotonic() - sweep_started
                steady = []
                for _ in range(sweeps):  # when the cron would run them (app/tasks/worker.py)
                    due = clear_of_candle_close(SWEEP_JOB, due + timedelta(seconds=interval))
                    time.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()))
                    sweep_started = time.monotonic()
                    result = sweep_strategies()
                    steady.append((time.monotonic() - sweep_started, result))
                pages = _pages(web)
                control_plane = _control_plane(world, web.proc.pid)
                stop_requested = time.monotonic()
                for strategy_id in ids:
                    control.request_stop(strategy_id)
                _wait_all(ids, "stopped", 300)
                stopped = time.monotonic() - stop_requested
        finally:
            web.stop()
        median = {k: statistics.median(m[k] for m in memory) for k in ("pss", "rss", "private")}
        return {
            "bots": bots, "all_running_seconds": round(all_running, 1),
            "request_to_running": {"median": round(statistics.median(waits), 2),
                                   "max": round(max(waits), 2)},
            "spawn_to_ready": {"median": round(statistics.median(spawn), 2) if spawn else None,
                               "max": round(max(spawn), 2) if spawn else None},
            "per_bot_mib": {k: round(v / 2**20, 1) for k, v in median.items()},
            "bots_pss_total_mib": round(sum(m["pss"] for m in memory) / 2**20),
            "zygote_mib": {k: round(v / 2**20, 1) for k, v in _memory(zygote).items()}
            if zygote else None,
            "control_plane_pss_mib": {k: round(v / 2**20, 1) for k, v in control_plane.items()},
            "sweep_seconds": round(sweep, 2),
            "sweep_probe_seconds": summary.get("probe_seconds"),
            "steady_sweep_seconds": [round(t, 2) for t, _ in steady],
            "steady_probe_seconds": [r.get("probe_seconds") for _, r in steady],
            "steady_measure_seconds": [r.get("measure_seconds") for _, r in steady],
            "steady_sweep_median": round(statistics.median(t for t, _ in steady), 2)
            if steady else None,
            "sweep_healthy": [summary.get("healthy_strategies")]
            + [r.get("healthy_strategies") for _, r in steady],
            "interval": interval, "pages_ms": pages, "stop_all_seconds": round(stopped, 1),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bots", type=int, default=100)
    parser.add_argument("--settle", type=float, default=20.0)
    parser.add_argument("--sweeps", type=int, default=6,
                        help="steady sweeps after the first, at the job's interval")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(args.bots, args.settle, args.sweeps)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    r = result
    print(f"{r['bots']} real bots, fork launcher, one machine")
    print(f"all running after            {r['all_running_seconds']} s (target ≤ 120)")
    print(f"request → running            median {r['request_to_running']['median']} s, "
          f"max {r['request_to_running']['max']} s")
    print(f"spawn → ready                median {r['spawn_to_ready']['median']} s, "
          f"max {r['spawn_to_ready']['max']} s")
    m = r["per_bot_mib"]
    print(f"memory per bot (median)      PSS {m['pss']} MiB (target ≤ 64), RSS {m['rss']} MiB, "
          f"private {m['private']} MiB; all bots PSS {r['bots_pss_total_mib']} MiB")
    if r["zygote_mib"]:
        print(f"zygote                       PSS {r['zygote_mib']['pss']} MiB, "
              f"RSS {r['zygote_mib']['rss']} MiB")
    print("control plane PSS            " + ", ".join(
        f"{k} {v} MiB" for k, v in r["control_plane_pss_mib"].items()))
    print(f"status sweep over {r['bots']}        first {r['sweep_seconds']} s (every call; "
          f"asking {r['sweep_probe_seconds']} s); then every {r['interval']} s: median "
          f"{r['steady_sweep_median']} s (target ≤ 2): "
          + ", ".join(f"{t} s" for t in r["steady_sweep_seconds"]) + " (asking "
          + ", ".join(f"{p} s" for p in r["steady_probe_seconds"]) + "; measuring "
          + ", ".join(f"{p} s" for p in r["steady_measure_seconds"]) + "); healthy "
          + "/".join(str(h) for h in r["sweep_healthy"]))
    print("pages while running (ms)     " + ", ".join(f"{k} {v}" for k, v in
                                                       r["pages_ms"].items()))
    print(f"stop all                     {r['stop_all_seconds']} s (target ≤ 30)")


if __name__ == "__main__":
    main()
