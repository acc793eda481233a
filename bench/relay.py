"""The exchange relay: N real bots on the simulator with a Binance-like weight limit, without and
with the relay.

    .venv/bin/python bench/relay.py [--bots 20] [--candles 5] [--weight-limit 150] [--json]

Each arm sets up its own world (Redis, SQLite, the simulator, a supervisor, the fork launcher),
starts N bots that each trade the simulator's 5 pairs on 1m candles, and watches them for
`--candles` candles after they all run. The simulator charges Binance's request weights per IP
and answers 429, then 418 bans, over `--weight-limit` per minute. That limit is Binance's 6000
scaled to these bots: one bot here asks ~15-30 weight a minute (5 pairs), a real bot with 40+
pairs, order books and tickers ~1500, so 4 of either fill the budget — the "3-4 bots per IP"
wall FreqTrade users hit. Printed per arm: upstream requests and weight per minute, 429/418
answers, the relay's hit rate and its own 429s to bots, and (with the relay) the latency it adds
— measured from a client beside the bots, the same requests direct and through the relay, miss
and hit — plus the relay process's CPU and memory.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bot_start import _wait_running  # noqa: E402

PAIRS = ("BTC/USDT", "ETH/USDT", "SOL/USDT", "ADA/USDT", "DOT/USDT")


def _sim(world, path: str, body: dict | None = None) -> dict:
    import requests

    url = f"http://127.0.0.1:{world.simulator_port}{path}"
    answer = requests.post(url, json=body, timeout=10) if body is not None else requests.get(
        url, timeout=10)
    return answer.json()


def _api_requests(state: dict) -> int:
    return sum(n for path, n in state["requests"].items() if path.startswith("/api/"))


def _latency(world, samples: int = 300) -> dict:
    """Added latency as a client sees it: the same klines requests direct and via the relay."""
    import requests

    direct_url = f"http://127.0.0.1:{world.simulator_port}/api/v3/klines"
    relay_url = f"http://127.0.0.1:{world.relay_port}/simulator/api/v3/klines"
    session = requests.Session()
    now_ms = int(time.time() * 1000)
    figures: dict[str, list[float]] = {"direct": [], "relay miss": [], "relay hit": []}
    for i in range(samples):
        params = {"symbol": "BTCUSDT", "interval": "1m", "limit": 100,
                  "endTime": now_ms - 3_600_000 - i * 60_000}
        for name, url in (("direct", direct_url), ("relay miss", relay_url),
                          ("relay hit", relay_url)):
            started = time.perf_counter()
            session.get(url, params=params, timeout=10).raise_for_status()
            figures[name].append((time.perf_counter() - started) * 1000)
    out = {}
    for name, values in figures.items():
        values.sort()
        out[name] = {"p50": statistics.median(values), "p99": values[int(0.99 * len(values))]}
    out["added_miss_p50"] = out["relay miss"]["p50"] - out["direct"]["p50"]
    out["added_miss_p99"] = out["relay miss"]["p99"] - out["direct"]["p99"]
    return out


def arm(bots: int, candles: int, weight_limit: int, relay: bool) -> dict:
    """One run: N bots for `candles` candles, relay on or off; the figures."""
    import psutil
    import requests

    from app.system.settings import reload_settings
    from config import yaml_io
    from tests.bots import make_strategy, standalone_world

    def adjust(system: dict) -> None:
        system["exchange_relay"].update(enabled=relay, weight_limit=weight_limit)
        system["runtime"]["launcher"] = "fork"

    with standalone_world("btcw-bench-relay-", "fork", adjust) as (world, app, _supervisor):
        _sim(world, "/_sim/limits", {"weight_limit": weight_limit, "ban_seconds": 120})
        result: dict = {"relay": relay, "bots": bots, "weight_limit": weight_limit}
        with app.app_context():
            from app.runtime import control

            ids = [make_strategy(f"relay-bench-{n}", "MA_Cross_BTC", PAIRS).id
                   for n in range(bots)]
            began = time.monotonic()
            for strategy_id in ids:
                control.request_start(strategy_id)
            try:
                _wait_running(ids)
                result["all_running_seconds"] = round(time.monotonic() - began, 1)
            except RuntimeError as exc:  # banned bots may never get to run: that is the finding
                result["all_running_seconds"] = None
                result["start_error"] = str(exc)[:300]
            first = _sim(world, "/_sim/state")
            watch_from = time.monotonic()
            time.sleep(candles * 60)
            minutes = (time.monotonic() - watch_from) / 60
            last = _sim(world, "/_sim/state")
        limits = last["limits"]
        result["minutes"] = round(minutes, 2)
        result["upstream_requests_per_min"] = round(
            (_api_requests(last) - _api_requests(first)) / minutes, 1)
        result["upstream_weight_per_min"] = round(
            (limits["total_weight"] - first["limits"]["total_weight"]) / minutes, 1)
        result["upstream_429"] = limits["refused"].get("429", 0)
        result["upstream_418"] = limits["refused"].get("418", 0)
        if relay:
            stats = requests.get(f"http://127.0.0.1:{world.relay_port}/_relay/stats",
                                 timeout=5).json()
            result["relay_requests"] = stats["counts"]["requests"]
            result["relay_hit_rate"] = stats["hit_rate"]
            result["relay_own_429"] = stats["counts"]["relay"]
            result["relay_overhead_ms"] = stats["overhead_ms"]
            worker = [p for p in psutil.process_iter(["cmdline"])
                      if p.info["cmdline"] and "wsgi:relay()" in " ".join(p.info["cmdline"])
                      and p.environ().get("BTCW_VAR_DIR") == str(world.var_dir)]
            result["relay_rss_mib"] = round(sum(p.memory_info().rss for p in worker) / 2**20, 1)
            result["relay_cpu_seconds"] = round(sum(
                p.cpu_times().user + p.cpu_times().system for p in worker), 2)
            result["relay_cpu_percent_of_one_core"] = round(
                result["relay_cpu_seconds"] / (time.monotonic() - began) * 100, 2)
            # The latency probe needs more weight than the bench's limit: lift both limits
            # (the relay picks a published config change up within 5 s).
            _sim(world, "/_sim/limits", {"weight_limit": 0})
            path = world.config_dir / "system.yml"
            system = yaml_io.load(path.read_text())
            system["system"]["exchange_relay"]["weight_limit"] = 10**6
            path.write_text(yaml_io.dump(system))
            with app.app_context():
                reload_settings()
            time.sleep(7)
            result["latency_ms"] = _latency(world)
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bots", type=int, default=20)
    parser.add_argument("--candles", type=int, default=5)
    parser.add_argument("--weight-limit", type=int, default=150)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    runs = [arm(args.bots, args.candles, args.weight_limit, relay) for relay in (False, True)]
    if args.json:
        print(json.dumps(runs, indent=2))
        return
    without, with_relay = runs
    print(f"{args.bots} bots × 5 pairs, 1m candles, {args.candles} candles watched, simulator "
          f"limit {args.weight_limit} weight/IP/min (Binance 6000 scaled to these bots)")
    print(f"{'':34} {'without relay':>14} {'with relay':>12}")
    for key, label in (("all_running_seconds", "all bots running (s)"),
                       ("upstream_requests_per_min", "upstream requests / min"),
                       ("upstream_weight_per_min", "upstream weight / min"),
                       ("upstream_429", "429 answers"), ("upstream_418", "418 bans")):
        print(f"{label:34} {str(without.get(key)):>14} {str(with_relay.get(key)):>12}")
    ratio = (without["upstream_requests_per_min"] / with_relay["upstream_requests_per_min"]
             if with_relay["upstream_requests_per_min"] else float("inf"))
    print(f"{'fewer upstream requests':34} {'':>14} {ratio:11.1f}×")
    lat = with_relay["latency_ms"]
    print(f"relay: hit rate {with_relay['relay_hit_rate']} %, its own 429s to bots "
          f"{with_relay['relay_own_429']}, RSS {with_relay['relay_rss_mib']} MiB, CPU "
          f"{with_relay['relay_cpu_percent_of_one_core']} % of a core")
    print(f"latency (ms, p50/p99): direct {lat['direct']['p50']:.2f}/{lat['direct']['p99']:.2f}"
          f", via relay miss {lat['relay miss']['p50']:.2f}/{lat['relay miss']['p99']:.2f}, "
          f"hit {lat['relay hit']['p50']:.2f}/{lat['relay hit']['p99']:.2f}; added on a miss "
          f"p50 {lat['added_miss_p50']:.2f}, p99 {lat['added_miss_p99']:.2f}")
    print(f"relay's own overhead (ms, in the relay, bots' requests): "
          f"p50 {with_relay['relay_overhead_ms']['p50']}, p99 "
          f"{with_relay['relay_overhead_ms']['p99']}")


if __name__ == "__main__":
    main()
