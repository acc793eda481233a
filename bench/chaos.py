"""Chaos bench: kill -9 each kind of process of a running BTC Watcher and measure the recovery.

    .venv/bin/python bench/chaos.py [--rate 50] [--settle 20]

Starts the whole system as `make run` does (`flask up`: supervisord, Redis, simulator, web,
gateway, worker, cron, bot supervisor, five demo bots) in a throwaway folder on free ports, and a
poster that sends strategy-message webhooks at `--rate` signals/s for one demo strategy,
retrying each one until it is accepted (as a bot's webhook retries). Then, one kind at a time, it
kills with SIGKILL: a bot, the bot supervisor, the RQ worker, the cron, a web worker, a gateway
worker, Redis and the simulator, and prints per kind

* seconds until healthy again (/health 200, plus what that kind serves: the killed bot running
  with a new pid, a request through the gateway, the simulator's klines),
* signals sent while it was down and after, stored, published to live pages, handed to
  notifications (a notification decided — its own, or its partner's when it is the second half of
  a mixin signal / order pair, which is notified once), and duplicates (a signal stored twice),
* whether the other bots kept their pids.

Everything runs on this machine's loopback; everything is stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from config import yaml_io  # noqa: E402
from tests.support.servers import free_port  # noqa: E402

BIN = Path(sys.executable).parent
KINDS = ("bot", "supervisor", "worker", "cron", "web worker", "gateway worker", "redis",
         "simulator")


class Stack:
    """`flask up` in a throwaway folder on free ports."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.var = base / "var"
        config = base / "config"
        config.mkdir(parents=True)
        for f in (ROOT / "config").glob("*.yml"):
            shutil.copy(f, config / f.name)
        system = yaml_io.load((config / "system.yml").read_text())
        self.web_port, self.gateway_port = free_port(), free_port()
        self.simulator_port = free_port()
        start = 43000
        system["system"]["web"].update(port=self.web_port,
                                       public_url=f"http://127.0.0.1:{self.web_port}")
        system["system"]["gateway"]["port"] = self.gateway_port
        system["system"]["simulator"]["port"] = self.simulator_port
        system["system"]["exchange_relay"]["port"] = free_port()
        system["system"]["capacity"].update(port_range_start=start, port_range_end=start + 99)
        (config / "system.yml").write_text(yaml_io.dump(system))
        self.env = {**os.environ, "BTCW_VAR_DIR": str(self.var), "BTCW_CONFIG_DIR": str(config),
                    "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
                    "DATABASE_URL": f"sqlite:///{self.var / 'btcw.db'}",
                    "SECRET_KEY": "chaos-bench-key", "BTCW_ADMIN_PASSWORD": "chaos-bench!1"}
        self.url = f"http://127.0.0.1:{self.web_port}"
        self.ctl = [str(BIN / "supervisorctl"), "-c", str(self.var / "run" / "supervisord.conf")]
        self.up: subprocess.Popen | None = None

    def flask(self, *args: str) -> str:
        return subprocess.run([str(BIN / "flask"), "--app", "app", *args], cwd=ROOT, env=self.env,
                              check=True, capture_output=True, text=True, timeout=120).stdout

    def start(self) -> None:
        self.flask("db", "upgrade")
        self.up = subprocess.Popen([str(BIN / "flask"), "--app", "app", "up"], cwd=ROOT,
                                   env=self.env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        wait(lambda: self.health() and len(self.running()) >= 5, 180, "the stack and 5 bots")

    def stop(self) -> None:
        if self.up and self.up.poll() is None:
            self.up.send_signal(signal.SIGINT)
            try:
                self.up.wait(120)
            except subprocess.TimeoutExpired:
                self.up.kill()

    def health(self) -> bool:
        try:
            return requests.get(f"{self.url}/health", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def db(self, sql: str, args: tuple = ()) -> list[tuple]:
        with sqlite3.connect(self.var / "btcw.db", timeout=30) as conn:
            return conn.execute(sql, args).fetchall()

    def running(self) -> dict[int, int]:
        """{strategy id: pid} of the running bots."""
        return dict(self.db("SELECT id, pid FROM strategies WHERE status='running' AND pid "
                            "IS NOT NULL AND deleted_at IS NULL"))

    def program_pid(self, name: str) -> int:
        out = subprocess.run([*self.ctl, "pid", name], capture_output=True, text=True).stdout
        return int(out.strip() or 0)


def wait(check, seconds: float, what: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        try:
            if check():
                return time.monotonic() - started
        except Exception:  # noqa: BLE001, S110 - not yet
            pass
        time.sleep(0.1)
    raise SystemExit(f"timed out waiting for {what}")


class Poster(threading.Thread):
    """Webhooks at a steady rate; each signal retried until accepted. Candle times are unique,
    so each signal is one row, and `windows` maps a phase to the candles sent in it."""

    def __init__(self, url: str, strategy_id: int, token: str, rate: float) -> None:
        super().__init__(daemon=True)
        self.target = f"{url}/api/v1/signals/webhook/{strategy_id}?token={token}"
        self.rate, self.phase = rate, "start"
        self.windows: dict[str, list[str]] = {}
        self.attempts = self.duplicates = 0
        self.stop_now = threading.Event()
        self.base = datetime(2030, 1, 1, tzinfo=UTC)

    def run(self) -> None:
        session, n = requests.Session(), 0
        while not self.stop_now.is_set():
            started = time.monotonic()
            candle = (self.base + timedelta(minutes=n)).isoformat()
            message = {"btcw": 1, "kind": "signal", "strategy": "Chaos", "pair": "BTC/USDT",
                       "action": "enter_long", "signal_strength": 0.9, "rate": 64000.0,
                       "candle": candle, "timeframe": "1m", "enter_tag": "chaos"}
            body = {"type": "strategy_msg", "msg": json.dumps(message)}
            while not self.stop_now.is_set():
                self.attempts += 1
                try:
                    answer = session.post(self.target, json=body, timeout=5)
                    if answer.status_code == 200:
                        self.duplicates += bool(answer.json().get("duplicate"))
                        break
                except requests.RequestException:
                    session = requests.Session()
                time.sleep(0.2)
            self.windows.setdefault(self.phase, []).append(
                candle[:19].replace("T", " ") + ".000000")
            n += 1
            time.sleep(max(0.0, 1 / self.rate - (time.monotonic() - started)))


def kill_and_recover(stack: Stack, kind: str, bots: dict[int, int]) -> tuple[float, list]:
    """SIGKILL one process of `kind`; seconds until it serves again, and the other bots' pids."""
    victim_bot = min(bots)
    if kind == "bot":
        pid = bots[victim_bot]
    elif kind in ("web worker", "gateway worker"):
        master = stack.program_pid(kind.split()[0])
        pid = psutil.Process(master).children()[0].pid
    else:
        pid = stack.program_pid(kind)
    others = {sid: p for sid, p in bots.items() if kind != "bot" or sid != victim_bot}
    os.kill(pid, signal.SIGKILL)
    started = time.monotonic()

    def serving() -> bool:
        if not stack.health():
            return False
        if kind == "bot":
            now = stack.running()
            return victim_bot in now and now[victim_bot] != pid
        if kind == "gateway worker":
            ping = requests.get(f"http://127.0.0.1:{stack.gateway_port}/api/strategy/"
                                f"{victim_bot}/ping", auth=("admin", "chaos-bench!1"), timeout=2)
            return ping.status_code == 200
        if kind == "simulator":
            return requests.get(f"http://127.0.0.1:{stack.simulator_port}/api/v3/ping",
                                timeout=2).status_code == 200
        return stack.program_pid(kind.split()[0]) not in (0, pid)

    wait(serving, 120, f"{kind} to recover")
    unchanged = [sid for sid, p in others.items() if stack.running().get(sid) == p]
    return time.monotonic() - started, [len(unchanged), len(others)]


def count(stack: Stack, strategy_id: int, candles: list[str]) -> tuple[int, int, int]:
    """(stored, published, notified) of the signals with these candles; a signal paired with
    the bot's own entry/exit is notified through its partner."""
    if not candles:
        return 0, 0, 0
    marks = ",".join("?" * len(candles))
    rows = stack.db(
        f"SELECT COUNT(*), COUNT(s.published_at), COUNT(COALESCE(n.id, p.id)) "  # noqa: S608
        f"FROM signals s LEFT JOIN notifications n ON n.signal_id = s.id "
        f"LEFT JOIN notifications p ON p.signal_id = s.related_signal_id WHERE s.strategy_id = ? "
        f"AND s.message_type = 'strategy_msg' AND s.open_date IN ({marks})",
        (strategy_id, *candles))
    return rows[0]


def drain(stack: Stack, strategy_id: int, seconds: float) -> str:
    """Wait until every stored signal of the strategy has its notification decided (the RQ
    worker works the backlog the load left); say how long it took."""
    started = time.monotonic()
    query = ("SELECT COUNT(*) FROM signals s LEFT JOIN notifications n ON n.signal_id = s.id "
             "LEFT JOIN notifications p ON p.signal_id = s.related_signal_id "
             "WHERE s.strategy_id = ? AND s.priority != 'IGNORE' AND n.id IS NULL "
             "AND p.id IS NULL")
    while time.monotonic() - started < seconds:
        left = stack.db(query, (strategy_id,))[0][0]
        if not left:
            return f"{time.monotonic() - started:.0f} s after the load stopped"
        time.sleep(2)
    return f"not within {seconds:.0f} s: {stack.db(query, (strategy_id,))[0][0]} still waiting"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--settle", type=float, default=20.0,
                        help="seconds of steady load after each recovery")
    parser.add_argument("--drain", type=float, default=600,
                        help="seconds to wait for the notification backlog at the end")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="btcw-chaos-"))
    stack = Stack(base)
    print(f"starting the stack in {base} (web :{stack.web_port}) …", flush=True)
    stack.start()
    bots = stack.running()
    target = min(bots)
    token = stack.db("SELECT webhook_token FROM strategies WHERE id=?", (target,))[0][0]
    poster = Poster(stack.url, target, token, args.rate)
    poster.start()
    rows = []
    try:
        time.sleep(args.settle)
        for kind in KINDS:
            poster.phase = kind
            seconds, (kept, others) = kill_and_recover(stack, kind, stack.running())
            time.sleep(args.settle)
            rows.append((kind, seconds, kept, others))
            print(f"  {kind}: healthy again after {seconds:.1f} s", flush=True)
        poster.phase = "end"
        time.sleep(3)
    finally:
        poster.stop_now.set()
        poster.join(30)
        drained = drain(stack, target, args.drain)
        print(f"\n{'killed':16} {'healthy':>8} {'sent':>6} {'stored':>7} {'published':>10} "
              f"{'notified':>9} {'other bots kept pid':>20}")
        for kind, seconds, kept, others in rows:
            sent = poster.windows.get(kind, [])
            stored, published, notified = count(stack, target, sent)
            print(f"{kind:16} {seconds:7.1f}s {len(sent):6} {stored:7} {published:10} "
                  f"{notified:9} {f'{kept}/{others}':>20}")
        total = [c for w in poster.windows.values() for c in w]
        stored, published, notified = count(stack, target, total)
        print(f"\nnotification decisions caught up {drained}")
        print(f"in all: {len(total)} signals sent ({poster.attempts} attempts), {stored} stored,"
              f" {published} published, {notified} notified, {poster.duplicates} answered as "
              f"duplicates, {len(total) - len(set(total))} sent twice")
        stack.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
