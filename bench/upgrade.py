"""FreqTrade upgrade of running bots: N bots on an older release moved to the default one.

    .venv/bin/python bench/upgrade.py [--bots 5] [--from 2026.8] [--launcher fork|subprocess]

Sets up its own world (Redis, SQLite, the market simulator, a supervisor subprocess — the pieces
of the bot tests), installs `--from` (or reuses the tests' cache of it), starts `--bots` demo
strategies on it, then runs one upgrade job to the default release and prints: the install
time (0 when cached), the verification time (every strategy started once on the target in a
scratch folder), each bot's downtime (stop → snapshot → switch → start → ping and a processed
candle) and the total.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bot_start import DEMO  # noqa: E402


def run(bots: int, source: str, launcher: str | None) -> dict:
    from app.extensions import db
    from app.runtime import control, upgrades, versions
    from app.runtime.models import FreqtradeUpgrade
    from tests.bots import make_strategy, standalone_world

    with standalone_world("btcw-bench-upgrade-", launcher) as (world, app, _supervisor), \
            app.app_context():
        started = time.monotonic()
        cached = versions.is_installed(source)
        versions.install(source)
        install = 0.0 if cached else time.monotonic() - started
        ids = [make_strategy(f"{name}-{n}", cls, (pair,), freqtrade_version=source).id
               for n, (name, cls, pair) in enumerate((DEMO * (bots // len(DEMO) + 1))[:bots])]
        for strategy_id in ids:
            control.request_start(strategy_id)
        for strategy_id in ids:
            row = control.wait_for_status(strategy_id, ("running", "error"), 300)
            if row.status != "running":
                raise RuntimeError(f"{row.name}: {row.status_message}")
        row = upgrades.request_upgrade(versions.default_version(), ids, enqueue=False)
        began = time.monotonic()
        upgrades.run_upgrade(row.id)
        total = time.monotonic() - began
        row = db.session.get(FreqtradeUpgrade, row.id)
        steps = {s["step"]: s["seconds"] for s in row.steps}
        verify_done = max(v for k, v in steps.items() if k.startswith("verified"))
        result = {"bots": bots, "from": source, "to": row.target, "launcher": world.launcher,
                  "install_seconds": install,
                  "verify_seconds": verify_done - steps.get("installed", 0.0),
                  "downtime": {int(k): v for k, v in row.downtime.items()},
                  "total_seconds": total}
        for strategy_id in ids:
            control.request_stop(strategy_id)
        for strategy_id in ids:
            control.wait_for_status(strategy_id, ("stopped",), 120)
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bots", type=int, default=5)
    parser.add_argument("--from", dest="source", default="2026.8")
    parser.add_argument("--launcher", choices=("fork", "subprocess"))
    args = parser.parse_args()
    r = run(args.bots, args.source, args.launcher)
    down = list(r["downtime"].values())
    print(f"{r['bots']} bots {r['from']} → {r['to']}, launcher {r['launcher']}")
    print(f"install {r['install_seconds']:.1f} s (0 = already installed), verify "
          f"{r['verify_seconds']:.1f} s, downtime per bot median "
          f"{sorted(down)[len(down) // 2]:.1f} s / max {max(down):.1f} s, total "
          f"{r['total_seconds']:.1f} s")
    for strategy_id, seconds in sorted(r["downtime"].items()):
        print(f"  strategy {strategy_id}: down {seconds:.1f} s")


if __name__ == "__main__":
    main()
