"""Backup, verify and restore of a big database, beside the raw tools on the same data.

    .venv/bin/python bench/backup.py [--signals 1000000] [--strategies 999]
                                     [--notifications 100000] [--engines sqlite,postgresql]

For each engine it builds a throwaway database at the current schema (its own Redis, and for
PostgreSQL its own server from Debian's packages), fills it with `--strategies` strategies,
`--signals` signals (with payloads and indicators like a bot's) and `--notifications`
notifications, and measures:

- raw tool: SQLite `sqlite3 DB ".backup FILE"`; PostgreSQL `pg_dump --format=custom` and
  `pg_restore` into a fresh database;
- BTC Watcher: `backup` (database copy/dump + the manifest's table digests + the tar), `verify`
  (scratch restore and digest comparison), `restore` (verify the archive, replace the live
  database in one transaction, compare the live digests with the manifest); sizes.

Targets (this machine, 2 cores): backup ≤ 2× the raw tool's time; restore + verify of 1 M signals
≤ 3 minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.throwaway import throwaway_app  # noqa: E402

BATCH = 20_000


def _fill(app, signals: int, strategies: int, notifications: int) -> None:
    from app.extensions import db
    from app.notifications.models import Notification
    from app.signals.models import Signal
    from app.strategies.models import Strategy

    rng = random.Random(7)
    start = datetime(2026, 1, 1)
    with app.app_context():
        db.session.execute(db.insert(Strategy), [
            {"name": f"bench-{i}", "strategy_class": "MA_Cross_BTC", "strategy_file": "ma.py",
             "api_username": "u", "api_password": f"p{i}", "jwt_secret": f"j{i}",
             "ws_token": f"w{i}", "webhook_token": f"t{i}", "pairs": ["BTC/USDT"]}
            for i in range(strategies)])
        db.session.commit()
        for first in range(0, signals, BATCH):
            rows = []
            for n in range(first, min(first + BATCH, signals)):
                rate = 60000 + rng.random() * 5000
                rows.append({
                    "strategy_id": 1 + n % strategies, "dedupe_key": f"bench-{n}",
                    "message_type": "strategy_msg", "pair": "BTC/USDT", "action": "enter_long",
                    "direction": "long", "rate": rate, "strength_raw": rng.random(),
                    "strength_level": "medium", "priority": "P1", "enter_tag": "bench",
                    "indicators": {"rsi": round(rng.random() * 100, 2), "ema_fast": rate},
                    "payload": {"type": "strategy_msg", "msg": f'{{"btcw":1,"n":{n}}}'},
                    "received_at": start + timedelta(seconds=n),
                    "open_date": start + timedelta(minutes=n)})
            db.session.execute(db.insert(Signal), rows)
            db.session.commit()
        for first in range(0, notifications, BATCH):
            db.session.execute(db.insert(Notification), [
                {"kind": "signal", "priority": "P1", "signal_id": n + 1, "strategy_id": 1,
                 "pair": "BTC/USDT", "title": f"[P1] BTC/USDT #{n}", "body": "medium signal",
                 "data": {"n": n}, "created_at": start + timedelta(seconds=n)}
                for n in range(first, min(first + BATCH, notifications))])
            db.session.commit()


def _timed(fn, *args, **kwargs):
    started = time.monotonic()
    result = fn(*args, **kwargs)
    return time.monotonic() - started, result


def _pg_tool(name: str) -> str:
    from app.backups.service import _tool

    return _tool(name)


def run_engine(engine: str, signals: int, strategies: int, notifications: int) -> dict:
    from app.backups import service

    with throwaway_app(engine, "backup") as world:
        app, base, pg = world.app, world.base, world.pg
        fill, _ = _timed(_fill, app, signals, strategies, notifications)
        out: dict = {"engine": engine, "signals": signals, "fill_seconds": fill}
        raw_dir = base / "raw"
        raw_dir.mkdir()
        if engine == "sqlite":
            db_file = base / "btcw.db"
            out["database_bytes"] = db_file.stat().st_size
            out["raw_backup_seconds"], _ = _timed(
                subprocess.run, ["sqlite3", str(db_file), f".backup {raw_dir / 'copy.db'}"],
                check=True)
            out["raw_bytes"] = (raw_dir / "copy.db").stat().st_size
            out["raw_restore_seconds"], _ = _timed(
                subprocess.run, ["sqlite3", str(base / "restored.db"),
                                 f".restore {raw_dir / 'copy.db'}"], check=True)
        else:
            env = {**os.environ, "PGPASSWORD": ""}
            args = ["-h", "127.0.0.1", "-p", str(pg.port), "-U", "postgres"]
            out["raw_backup_seconds"], _ = _timed(
                subprocess.run, [_pg_tool("pg_dump"), "--format=custom", *args, "-d", "bench",
                                 "-f", str(raw_dir / "dump")], check=True, env=env)
            out["raw_bytes"] = (raw_dir / "dump").stat().st_size
            pg.create_database("rawrestore")
            out["raw_restore_seconds"], _ = _timed(
                subprocess.run, [_pg_tool("pg_restore"), *args, "-d", "rawrestore",
                                 "--no-owner", str(raw_dir / "dump")], check=True, env=env)
        with app.app_context():
            out["backup_seconds"], row = _timed(service.run_backup, "manual",
                                                verify_after=False, prune_after=False)
            out["backup_bytes"] = row.size_bytes
            out["verify_seconds"], _ = _timed(service.verify, row.filename)
            out["restore_seconds"], report = _timed(service.restore, row.filename)
            out["restored_rows"] = report["rows"]
        out["backup_vs_raw"] = out["backup_seconds"] / out["raw_backup_seconds"]
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--signals", type=int, default=1_000_000)
    parser.add_argument("--strategies", type=int, default=999)
    parser.add_argument("--notifications", type=int, default=100_000)
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = [run_engine(e, args.signals, args.strategies, args.notifications)
               for e in args.engines.split(",")]
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"{args.signals:,} signals, {args.strategies} strategies, "
          f"{args.notifications:,} notifications; {os.cpu_count()} cores")
    print(f"{'engine':11} {'raw backup':>10} {'backup':>8} {'ratio':>6} {'verify':>8} "
          f"{'restore':>8} {'restore+verify':>15} {'raw restore':>12} {'raw MiB':>8} "
          f"{'backup MiB':>10}")
    for r in results:
        print(f"{r['engine']:11} {r['raw_backup_seconds']:9.1f}s {r['backup_seconds']:7.1f}s "
              f"{r['backup_vs_raw']:6.2f} {r['verify_seconds']:7.1f}s {r['restore_seconds']:7.1f}s "
              f"{r['verify_seconds'] + r['restore_seconds']:14.1f}s "
              f"{r['raw_restore_seconds']:11.1f}s {r['raw_bytes'] / 2**20:8.0f} "
              f"{r['backup_bytes'] / 2**20:10.0f}")


if __name__ == "__main__":
    main()
