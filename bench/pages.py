"""Pages and list APIs at fleet size: 999 running strategies, 1 M signals, 100 k notifications.

    .venv/bin/python bench/pages.py [--strategies 999] [--signals 1000000]
                                    [--notifications 100000] [--engines sqlite,postgresql]
                                    [--runs 5] [--json]

For each engine it builds a throwaway database at the current schema (its own Redis; for
PostgreSQL its own server from Debian's packages), fills it like bench/backup.py, marks every
strategy running with a pid, a port and what a status sweep caches (status, health, profit
summary, process usage), and times every page and list API in the server (Flask test client,
logged in), median and p95 of `--runs` requests after one warm-up. PostgreSQL gets the
`ANALYZE` its autovacuum runs after a bulk load (without statistics its planner may scan).

The bots' address is an unroutable one (10.255.255.1): a page that calls bots while it renders
waits for connect timeouts and shows up at once. Target: every page and list API ≤ 200 ms.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.backup import _fill  # noqa: E402
from bench.throwaway import throwaway_app  # noqa: E402

UNROUTABLE = "10.255.255.1"
PAGES = [
    "/strategies/", "/strategies/?page=5", "/strategies/?q=bench-9&status=running",
    "/strategies/?sort=profit", "/signals/", "/signals/?pair=BTC/USDT&level=medium",
    "/notifications/", "/notifications/inbox", "/capacity", "/system/", "/system/exchange",
    "/proxies/", "/backups/",
]
APIS = [
    "/api/v1/strategies", "/api/v1/strategies?page=3&per_page=50", "/api/v1/strategies/overview",
    "/api/v1/signals", "/api/v1/signals?strategy_id=7", "/api/v1/notifications",
    "/api/v1/system/capacity", "/api/v1/system/capacity/detailed",
    "/api/v1/system/strategies/health", "/api/v1/system/status", "/api/v1/system/statistics",
    "/api/v1/signals/quality", "/api/v1/system/exchange", "/api/v1/proxies",
]


def _running_fleet(app, strategies: int) -> None:
    """Every strategy running (pid, port, host) with the sweep's cached figures in Redis."""
    from app.clock import utcnow
    from app.extensions import db, redis_store
    from app.monitoring.bot_status import STATUS_KEY
    from app.monitoring.bot_usage import USAGE_KEY
    from app.strategies.models import Strategy

    now = time.time()
    with app.app_context():
        ids = list(db.session.scalars(db.select(Strategy.id).order_by(Strategy.id)))
        db.session.execute(db.update(Strategy), [
            {"id": sid, "status": "running", "desired_state": "running", "port": 20000 + n,
             "pid": 4_000_000 + n, "host": UNROUTABLE, "started_at": utcnow()}
            for n, sid in enumerate(ids)])
        db.session.commit()
        pipe = redis_store.client.pipeline(transaction=False)
        for n, sid in enumerate(ids):
            pipe.set(STATUS_KEY.format(id=sid), json.dumps({
                "strategy_id": sid, "name": f"bench-{n}", "status": "healthy",
                "response_time": 12.5, "data": {"state": "running", "last_process": now,
                                                "last_candle_close": now - 30},
                "error": None, "notes": [], "health_score": 95 - n % 20, "deductions": [],
                "stalled": False, "candle_age": 30.0, "stall_window": 300, "stall_reason": "",
                "last_update": now, "monitoring_mode": "multi_instance",
                "summary": {"profit_all_coin": (n % 37) - 18.5, "profit_all_percent": n % 7,
                            "profit_closed_coin": 1.0, "trade_count": n % 11,
                            "open_trades": n % 3, "max_open_trades": 3},
            }), ex=3600)
            pipe.set(USAGE_KEY.format(id=sid), json.dumps({
                "pid": 4_000_000 + n, "cpu_percent": 0.5 + n % 5, "memory_rss": 150 * 2**20,
                "memory_pss": 70 * 2**20, "measured_at": now}), ex=3600)
        pipe.execute()


def _login(client) -> None:
    from app.auth import service as auth

    auth.create_user("bench", "bench-password-1!")
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    answer = client.post("/login", data={"username": "bench", "password": "bench-password-1!",
                                         "csrf_token": token})
    assert answer.status_code in (302, 303), answer.status_code


def _time(client, url: str, runs: int) -> dict:
    client.get(url)  # warm-up
    times, status, size = [], 0, 0
    for _ in range(runs):
        started = time.perf_counter()
        answer = client.get(url)
        times.append((time.perf_counter() - started) * 1000)
        status, size = answer.status_code, len(answer.get_data())
    times.sort()
    return {"median_ms": round(statistics.median(times), 1),
            "p95_ms": round(times[min(len(times) - 1, int(0.95 * len(times)))], 1),
            "status": status, "kib": round(size / 1024, 1)}


def run_engine(engine: str, strategies: int, signals: int, notifications: int,
               runs: int) -> dict:
    with throwaway_app(engine, "pages") as world:
        app, pg = world.app, world.pg
        started = time.monotonic()
        _fill(app, signals, strategies, notifications)
        _running_fleet(app, strategies)
        if pg:  # what autovacuum does soon after a bulk load: the planner's statistics
            with app.app_context():
                from app.extensions import db

                db.session.execute(db.text("ANALYZE"))
                db.session.commit()
        out: dict = {"engine": engine, "fill_seconds": round(time.monotonic() - started, 1),
                     "strategies": strategies, "signals": signals,
                     "notifications": notifications, "pages": {}}
        with app.app_context():
            client = app.test_client()
            _login(client)
            for path in PAGES:
                out["pages"][path] = _time(client, path, runs)
            for path in APIS:
                out["pages"][path] = _time(client, path, runs)
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--strategies", type=int, default=999)
    parser.add_argument("--signals", type=int, default=1_000_000)
    parser.add_argument("--notifications", type=int, default=100_000)
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = [run_engine(e.strip(), args.strategies, args.signals, args.notifications,
                          args.runs) for e in args.engines.split(",") if e.strip()]
    if args.json:
        print(json.dumps(results, indent=2))
        return
    engines = [r["engine"] for r in results]
    print(f"{args.strategies} running strategies, {args.signals:,} signals, "
          f"{args.notifications:,} notifications; server time, median / p95 of {args.runs} (ms)")
    print(f"{'page / API':48}" + "".join(f"{e:>22}" for e in engines) + "   size")
    worst = 0.0
    for path in results[0]["pages"]:
        cells = []
        for r in results:
            fig = r["pages"][path]
            worst = max(worst, fig["median_ms"])
            flag = "" if fig["status"] == 200 else f" [{fig['status']}]"
            cells.append(f"{fig['median_ms']:>9.1f} / {fig['p95_ms']:<7.1f}{flag:>4}")
        print(f"{path:48}" + "".join(f"{c:>22}" for c in cells)
              + f"   {results[0]['pages'][path]['kib']} KiB")
    print(f"slowest median: {worst:.1f} ms (target ≤ 200 ms)")


if __name__ == "__main__":
    main()
