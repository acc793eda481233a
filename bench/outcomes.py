"""Signal outcomes at scale: the backfill of 1 M signals over 5 pairs, and the quality page and
API at that size, on SQLite and PostgreSQL.

    .venv/bin/python bench/outcomes.py [--signals 1000000] [--days 60]
                                       [--engines sqlite,postgresql] [--json]

For each engine it builds a throwaway database at the current schema (its own Redis and
simulator; for PostgreSQL its own server), creates 20 strategies on 1m candles and `--signals`
signals spread over the last `--days` days on the simulator's five pairs (strategy messages
with a strength; enter/exit long/short), then times `flask signals outcomes --backfill`'s work
(`outcomes.backfill`) and counts the upstream klines requests it made; then the outcome job's
quality refresh, and the server time (median of 5) of the Signal quality page, the quality API
(all strategies and one) and a strategy page. Targets: backfill ≤ 5 minutes, quality page and
API ≤ 200 ms.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.pages import _login  # noqa: E402
from bench.throwaway import throwaway_app  # noqa: E402

PAIRS = ("BTC/USDT", "ETH/USDT", "SOL/USDT", "ADA/USDT", "DOT/USDT")
RATES = {"BTC/USDT": 60000.0, "ETH/USDT": 3000.0, "SOL/USDT": 150.0, "ADA/USDT": 0.5,
         "DOT/USDT": 7.0}
ACTIONS = ("enter_long", "exit_long", "enter_short", "exit_short")
BATCH = 20_000


def _fill(app, signals: int, days: int) -> None:
    from app.extensions import db
    from app.signals.models import Signal
    from app.strategies.models import Strategy

    rng = random.Random(11)
    end = datetime.now(UTC).replace(tzinfo=None, second=0, microsecond=0) - timedelta(days=1)
    start = end - timedelta(days=days)
    span = int((end - start).total_seconds() // 60)
    with app.app_context():
        db.session.execute(db.insert(Strategy), [
            {"name": f"bench-{i}", "strategy_class": "MA_Cross_BTC", "strategy_file": "ma.py",
             "api_username": "u", "api_password": f"p{i}", "jwt_secret": f"j{i}",
             "ws_token": f"w{i}", "webhook_token": f"t{i}", "pairs": [PAIRS[i % 5]],
             "timeframe": "1m"} for i in range(20)])
        db.session.commit()
        minutes = sorted(rng.randrange(span) for _ in range(signals))  # in time order
        for first in range(0, signals, BATCH):
            rows = []
            for n in range(first, min(first + BATCH, signals)):
                strategy = n % 20
                pair = PAIRS[strategy % 5]
                at = start + timedelta(minutes=minutes[n])
                strength = rng.random()
                rows.append({
                    "strategy_id": strategy + 1, "dedupe_key": f"bench-{n}",
                    "message_type": "strategy_msg", "pair": pair,
                    "action": ACTIONS[n % 4], "direction": "short" if n % 4 >= 2 else "long",
                    "rate": RATES[pair] * (1 + rng.uniform(-0.05, 0.05)),
                    "strength_raw": strength,
                    "strength_level": "strong" if strength >= 0.8 else "medium"
                    if strength >= 0.6 else "weak" if strength >= 0.4 else "ignore",
                    "priority": "P0" if strength >= 0.8 else "P1" if strength >= 0.6
                    else "P2" if strength >= 0.4 else "IGNORE",
                    "indicators": {}, "payload": {}, "received_at": at, "open_date": at})
            db.session.execute(db.insert(Signal), rows)
            db.session.commit()


def _time(client, url: str, runs: int = 5) -> float:
    client.get(url)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        answer = client.get(url)
        times.append((time.perf_counter() - started) * 1000)
        assert answer.status_code == 200, (url, answer.status_code)
    return round(statistics.median(times), 1)


def run_engine(engine: str, signals: int, days: int) -> dict:
    from app.signals import outcomes
    from config import yaml_io
    from tests.support.servers import free_port, wait_port

    config = Path(tempfile.mkdtemp(prefix="btcw-bench-outcomes-config-"))
    sim_port = free_port()
    simulator = subprocess.Popen([sys.executable, "-m", "app.simulator", "--port",  # noqa: S603
                                  str(sim_port), "--weight-limit", "0"], cwd=ROOT,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(sim_port, 30)
        for f in (ROOT / "config").glob("*.yml"):
            (config / f.name).write_text(f.read_text())
        system = yaml_io.load((config / "system.yml").read_text())
        system["system"]["simulator"]["port"] = sim_port
        system["system"]["exchange_relay"]["enabled"] = False  # straight to the simulator
        (config / "system.yml").write_text(yaml_io.dump(system))
        with throwaway_app(engine, "outcomes", config) as world:
            app = world.app
            started = time.monotonic()
            _fill(app, signals, days)
            out: dict = {"engine": engine, "signals": signals, "days": days,
                         "fill_seconds": round(time.monotonic() - started, 1)}
            with app.app_context():
                started = time.monotonic()
                result = outcomes.backfill()
                out["backfill_seconds"] = round(time.monotonic() - started, 1)
                out["backfill"] = result
                started = time.monotonic()
                outcomes.refresh_quality({1})
                out["quality_refresh_seconds"] = round(time.monotonic() - started, 1)
                client = app.test_client()
                _login(client)
                out["quality_page_ms"] = _time(client, "/signals/quality")
                out["quality_api_all_ms"] = _time(client, "/api/v1/signals/quality")
                out["quality_api_one_ms"] = _time(client, "/api/v1/signals/quality?strategy_id=1")
                out["strategy_page_ms"] = _time(client, "/strategies/1")
                out["calibration_api_ms"] = _time(client,
                                                  "/api/v1/signals/calibration?strategy_id=1")
            return out
    finally:
        simulator.terminate()
        simulator.wait(10)
        shutil.rmtree(config, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--signals", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = [run_engine(e.strip(), args.signals, args.days)
               for e in args.engines.split(",") if e.strip()]
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"{args.signals:,} signals over {args.days} days, 5 pairs, 1m candles")
    print(f"{'':34}" + "".join(f"{r['engine']:>14}" for r in results))
    rows = [("fill (s)", "fill_seconds"), ("backfill (s, target ≤ 300)", "backfill_seconds"),
            ("quality refresh by the job (s)", "quality_refresh_seconds"),
            ("quality page (ms, target ≤ 200)", "quality_page_ms"),
            ("quality API, all (ms)", "quality_api_all_ms"),
            ("quality API, one strategy (ms)", "quality_api_one_ms"),
            ("strategy page (ms)", "strategy_page_ms"),
            ("calibration API (ms)", "calibration_api_ms")]
    for label, key in rows:
        print(f"{label:34}" + "".join(f"{r[key]:>14}" for r in results))
    print(f"{'upstream klines requests':34}" + "".join(f"{r['backfill']['requests']:>14}"
                                                      for r in results))
    print(f"{'scored done / unavailable':34}" + "".join(
        f"{str(r['backfill']['done']) + ' / ' + str(r['backfill']['unavailable']):>14}"
        for r in results))


if __name__ == "__main__":
    main()
