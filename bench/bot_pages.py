"""What a forked bot's private memory holds: its pages split by where they came from.

    .venv/bin/python bench/bot_pages.py [--bots 2] [--settle 60] [--top 12]

Starts N real bots with the fork launcher (its own world in a temp folder, as bench/fleet.py),
lets them run `--settle` seconds, then reads /proc/<pid>/pagemap (root) of each bot and of the
zygote. A bot page whose physical frame the zygote does not map is the bot's own; it is

- `copied`: the zygote maps that address too, so the bot wrote to a page it shared (reference
  counts, Python 3.11's in-place specialisation of the bytecode it runs, allocations filling
  free space in the zygote's heap and arenas), or
- `new`: an address the zygote does not map (what the bot allocated after the fork, and file
  pages only the bots read — those are shared between bots, so they count little in PSS).

Per bot: the total, then the largest groups by origin and mapping (anonymous, [heap], file).
The zygote's own pages are every bot's shared part; PSS splits them between the sharers.
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bot_start import DEMO, _wait_running  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")
PFN_MASK = (1 << 55) - 1


def _mappings(pid: int) -> list[tuple[int, int, str]]:
    out = []
    with open(f"/proc/{pid}/maps") as fh:
        for line in fh:
            parts = line.split(None, 5)
            low, high = (int(x, 16) for x in parts[0].split("-"))
            name = parts[5].strip() if len(parts) > 5 else ""
            if name != "[vsyscall]":
                out.append((low, high, name))
    return out


def _present(pid: int) -> dict[int, tuple[int, str]]:
    """{virtual address: (physical frame, mapping name)} of every present page."""
    pages = {}
    with open(f"/proc/{pid}/pagemap", "rb") as fh:
        for low, high, name in _mappings(pid):
            fh.seek(low // PAGE * 8)
            data = fh.read((high - low) // PAGE * 8)
            for i, (entry,) in enumerate(struct.iter_unpack("<Q", data)):
                if entry >> 63:
                    pages[low + i * PAGE] = (entry & PFN_MASK, name)
    return pages


def classify(bot: int, zygote: int) -> dict[str, int]:
    """Bytes of the bot's own pages by "copied|new: mapping"."""
    theirs = _present(zygote)
    frames = {frame for frame, _ in theirs.values()}
    groups: dict[str, int] = {}
    for address, (frame, name) in _present(bot).items():
        if frame in frames:
            continue
        origin = "copied" if address in theirs else "new"
        label = f"{origin}: {os.path.basename(name) if name else 'anonymous'}"
        groups[label] = groups.get(label, 0) + PAGE
    return groups


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bots", type=int, default=2)
    parser.add_argument("--settle", type=float, default=60.0)
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()

    from app.extensions import db
    from app.runtime import control
    from app.strategies.models import Strategy
    from bench.mass_ops import _wait_all
    from tests.bots import make_strategy, standalone_world, zygote_pid

    with standalone_world("btcw-bench-pages-", "fork") as (world, app, _supervisor):
        with app.app_context():
            ids = [make_strategy(f"{name}-{n}", cls, (pair,)).id
                   for n, (name, cls, pair) in enumerate((DEMO * args.bots)[:args.bots])]
            for strategy_id in ids:
                control.request_start(strategy_id)
            _wait_running(ids)
            time.sleep(args.settle)
            db.session.rollback()
            zygote = zygote_pid(world.var_dir)
            for strategy_id in ids:
                pid = db.session.get(Strategy, strategy_id).pid
                groups = classify(pid, zygote)
                copied = sum(v for k, v in groups.items() if k.startswith("copied"))
                print(f"bot {pid}: own pages {sum(groups.values()) / 2**20:.1f} MiB "
                      f"(copied from the zygote {copied / 2**20:.1f} MiB)")
                for label, size in sorted(groups.items(), key=lambda kv: -kv[1])[:args.top]:
                    print(f"  {label:58s} {size / 2**20:6.1f} MiB")
            for strategy_id in ids:
                control.request_stop(strategy_id)
            _wait_all(ids, "stopped", 120)


if __name__ == "__main__":
    main()
