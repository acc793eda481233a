"""Benchmark of the signal webhook receiver: signals/s and latency on SQLite and PostgreSQL.

    .venv/bin/python bench/signal_ingest.py [--signals 20000] [--concurrency 32] [--workers 2]

Starts everything it measures and stops it again: a Redis server, a throwaway PostgreSQL
cluster (tests/support/servers.py), a SQLite file, and per database the web app under gunicorn
with gevent workers on a free port. For each database it prints

* sustained ingestion: N signals posted by C concurrent keep-alive connections (bounded), as
  signals/s with p50/p99 latency, every response checked (200, stored, not a duplicate);
* the raw INSERT rate of the same database in the same run (the same row, one INSERT + COMMIT per
  row on one connection, straight through the DB driver) and the ratio ingest / raw;
* a 10x burst: ten times the connections fire at once; then a count check that every signal is
  in the table exactly once, published (outbox empty) and, when graded, handed to notifications.

The posters are gevent greenlets speaking plain HTTP/1.1 over raw sockets (cheap, so the client
takes little of the CPU it shares with the server on a small machine). Bodies are the two kinds a
bot sends: strategy messages of the btcw_signals mixin and entry webhooks (all values strings,
as FreqTrade formats them), strengths spread over 0..1 so most are graded.
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import secrets  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import sqlite3  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402
import gevent.pool  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.signals.webserver import GunicornWeb  # noqa: E402
from tests.support.servers import PostgresServer, RedisServer  # noqa: E402

# ------------------------------------------------------------------------------- payloads


def make_bodies(count: int, run: str, start: int = 0) -> list[bytes]:
    """`count` distinct bodies (unique dedupe keys from `start` on): strategy messages, entries."""
    rng = random.Random(f"{run}-{start}")  # noqa: S311 - not security
    base = datetime(2026, 1, 1, tzinfo=UTC)
    bodies = []
    for i in range(start, start + count):
        strength = round(rng.random(), 3)
        if i % 2 == 0:
            message = {
                "btcw": 1, "kind": "signal", "strategy": "Bench", "pair": "ETH/USDT",
                "action": "enter_long" if i % 4 == 0 else "exit_long",
                "signal_strength": strength, "rate": 3000 + rng.random() * 100,
                "candle": (base + timedelta(minutes=i)).isoformat(), "timeframe": "1m",
                "enter_tag" if i % 4 == 0 else "exit_tag": "bench",
                "indicators": {"rsi": round(rng.random() * 100, 2)},
            }
            body = {"type": "strategy_msg", "strategy": "Bench", "msg": json.dumps(message)}
        else:
            body = {
                "type": "entry", "strategy": "Bench", "trade_id": str(i), "exchange": "binance",
                "pair": "BTC/USDT", "base_currency": "BTC", "quote_currency": "USDT",
                "direction": "Long", "enter_tag": f"bench s={strength}", "order_type": "limit",
                "order_rate": "64000.5", "open_rate": "64000.5", "current_rate": "64000.1",
                "amount": "0.0015", "stake_amount": "96.0", "stake_currency": "USDT",
                "open_date": str(base + timedelta(seconds=i)), "sub_trade": "False",
            }
        bodies.append(json.dumps(body).encode())
    return bodies


def request_bytes(port: int, strategy_id: int, token: str, body: bytes) -> bytes:
    head = (f"POST /api/v1/signals/webhook/{strategy_id}?token={token} HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n")
    return head.encode() + body


# ------------------------------------------------------------------------------- posting


class Poster:
    """One keep-alive connection posting requests one after the other."""

    def __init__(self, port: int, connect_times: list[float]):
        self.port = port
        self.sock: socket.socket | None = None
        self.buffer = b""
        self.connect_times = connect_times

    def _connect(self) -> None:
        started = time.perf_counter()
        self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        self.connect_times.append(time.perf_counter() - started)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def post(self, raw: bytes) -> tuple[int, bytes]:
        """Send one request, read one response; (status, body). Reconnects once if closed."""
        for attempt in (1, 2):
            try:
                if self.sock is None:
                    self._connect()
                self.sock.sendall(raw)
                return self._read()
            except (ConnectionError, OSError):
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _read(self) -> tuple[int, bytes]:
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self.buffer += chunk
        head, _, rest = self.buffer.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        length = 0
        close = False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
        while len(rest) < length:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("server closed the connection mid-body")
            rest += chunk
        body, self.buffer = rest[:length], rest[length:]
        if close:
            self.close()
        return status, body

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock = None


def post_all(port: int, requests: list[bytes], concurrency: int) -> dict:
    """Post every request over `concurrency` connections; rate, latencies and failures."""
    latencies: list[float] = []
    connect_times: list[float] = []
    failures: list[str] = []
    duplicates = 0
    index = {"next": 0}

    def worker() -> None:
        nonlocal duplicates
        poster = Poster(port, connect_times)
        try:
            while True:
                i = index["next"]
                if i >= len(requests):
                    return
                index["next"] = i + 1
                started = time.perf_counter()
                try:
                    status, body = poster.post(requests[i])
                except OSError as exc:
                    failures.append(f"connection: {exc}")
                    continue
                latencies.append(time.perf_counter() - started)
                if status != 200:
                    failures.append(f"{status}: {body[:200]!r}")
                elif b'"duplicate":true' in body:
                    duplicates += 1
        finally:
            poster.close()

    started = time.perf_counter()
    pool = gevent.pool.Pool(concurrency)
    for _ in range(concurrency):
        pool.spawn(worker)
    pool.join()
    elapsed = time.perf_counter() - started
    latencies.sort()

    def pct(p: float) -> float:
        if not latencies:
            return 0.0
        return latencies[min(int(len(latencies) * p), len(latencies) - 1)] * 1000

    return {"count": len(requests), "seconds": elapsed, "rate": len(requests) / elapsed,
            "p50": pct(0.50), "p99": pct(0.99), "max": latencies[-1] * 1000 if latencies else 0,
            "mean": statistics.fmean(latencies) * 1000 if latencies else 0,
            "failures": failures, "duplicates": duplicates,
            "connect_max": max(connect_times, default=0) * 1000}


# ------------------------------------------------------------------------------- CPU use


def tree_cpu(pids: list[int]) -> float:
    """CPU seconds (user + system) used so far by these processes and all their children."""
    import psutil

    total = 0.0
    seen: set[int] = set()
    for pid in pids:
        try:
            root = psutil.Process(pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        for proc in procs:
            if proc.pid in seen:
                continue
            seen.add(proc.pid)
            try:
                times = proc.cpu_times()
                total += times.user + times.system
            except psutil.NoSuchProcess:
                pass
    return total


def measured(servers: dict[str, list[int]], run) -> dict:
    """run() with the CPU seconds each server group and this client spent on it added."""
    import resource

    before = {name: tree_cpu(pids) for name, pids in servers.items()}
    before_client = resource.getrusage(resource.RUSAGE_SELF)
    result = run()
    after_client = resource.getrusage(resource.RUSAGE_SELF)
    result["cpu_by_server"] = {name: tree_cpu(pids) - before[name]
                               for name, pids in servers.items()}
    result["server_cpu"] = sum(result["cpu_by_server"].values())
    result["client_cpu"] = ((after_client.ru_utime - before_client.ru_utime)
                            + (after_client.ru_stime - before_client.ru_stime))
    return result


# ------------------------------------------------------------------------------ databases


def prepare_database(url: str, redis_url: str, config_dir: Path, var_dir: Path) -> tuple[int, str]:
    """Create the schema and one strategy; (strategy id, webhook token)."""
    from app import create_app
    from app.extensions import db
    from app.strategies.models import Strategy

    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "REDIS_URL": redis_url,
                      "CONFIG_DIR": str(config_dir), "VAR_DIR": str(var_dir),
                      "SECRET_KEY": "bench-secret"})
    token = secrets.token_urlsafe(24)
    with app.app_context():
        db.drop_all()
        db.create_all()
        strategy = Strategy(name="bench", strategy_class="Bench", strategy_file="Bench.py",
                            pairs=["ETH/USDT", "BTC/USDT"], api_username="bench",
                            api_password=secrets.token_hex(8), jwt_secret=secrets.token_hex(32),
                            ws_token=secrets.token_hex(8), webhook_token=token)
        db.session.add(strategy)
        db.session.commit()
        strategy_id = strategy.id
        db.session.remove()
        db.engine.dispose()
    return strategy_id, token


def count_rows(url: str, strategy_id: int) -> dict:
    """Rows of the bench strategy, and how many still wait in the outbox."""
    sql = ("SELECT count(*), count(DISTINCT dedupe_key), "
           "sum(CASE WHEN published_at IS NULL THEN 1 ELSE 0 END), "
           "sum(CASE WHEN dispatched_at IS NULL THEN 1 ELSE 0 END), "
           "sum(CASE WHEN priority <> 'IGNORE' THEN 1 ELSE 0 END) "
           "FROM signals WHERE strategy_id = %s")
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url[len("sqlite:///"):])
        row = conn.execute(sql.replace("%s", "?"), (strategy_id,)).fetchone()
    else:
        import psycopg

        conn = psycopg.connect(url)
        cur = conn.cursor()
        cur.execute(sql, (strategy_id,))
        row = cur.fetchone()
    conn.close()
    return {"rows": row[0], "distinct": row[1], "unpublished": row[2] or 0,
            "undispatched": row[3] or 0, "graded": row[4] or 0}


RAW_COLUMNS = ("strategy_id", "dedupe_key", "message_type", "pair", "action", "direction",
               "rate", "indicators", "strength_raw", "strength_level", "priority", "payload",
               "received_at", "open_date", "enter_tag")


def raw_insert_rate(url: str, strategy_id: int, count: int, body: bytes) -> float:
    """Rows/s of plain `INSERT` + `COMMIT` per row on one connection of the same database."""
    now = datetime.now(UTC).replace(tzinfo=None)
    rows = [(strategy_id, secrets.token_hex(32), "strategy_msg", "ETH/USDT", "enter_long", "long",
             3000.5, '{"rsi": 21.4}', 0.83, "strong", "P0", body.decode(), now, now, "bench")
            for _ in range(count)]
    names = ", ".join(RAW_COLUMNS)
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url[len("sqlite:///"):], isolation_level=None)
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=10000"):
            conn.execute(f"PRAGMA {pragma}")
        sql = f"INSERT INTO signals ({names}) VALUES ({', '.join('?' * len(RAW_COLUMNS))})"  # noqa: S608
        started = time.perf_counter()
        for row in rows:
            conn.execute("BEGIN")
            conn.execute(sql, row)
            conn.execute("COMMIT")
    else:
        import psycopg

        conn = psycopg.connect(url)
        cur = conn.cursor()
        sql = f"INSERT INTO signals ({names}) VALUES ({', '.join(['%s'] * len(RAW_COLUMNS))})"  # noqa: S608
        started = time.perf_counter()
        for row in rows:
            cur.execute(sql, row)
            conn.commit()
    elapsed = time.perf_counter() - started
    conn.close()
    return count / elapsed


# --------------------------------------------------------------------------------- web app


def notify_jobs(redis_url: str) -> int:
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        return int(client.llen("rq:queue:notifications"))
    finally:
        client.close()


def postmaster_pid(postgres: PostgresServer | None) -> list[int]:
    if postgres is None:
        return []
    return [int((Path(postgres.data) / "postmaster.pid").read_text().split()[0])]


def run_database(label: str, url: str, redis: RedisServer, postgres: PostgresServer | None,
                 args, folder: Path) -> dict:
    """Sustained run, raw INSERT rate, burst and count check against one database."""
    import redis as redis_client

    config_dir = folder / "config"
    var_dir = folder / f"var-{label}"
    var_dir.mkdir()
    redis_client.Redis.from_url(redis.url).flushdb()
    strategy_id, token = prepare_database(url, redis.url, config_dir, var_dir)
    env = dict(os.environ)
    env.update({"DATABASE_URL": url, "REDIS_URL": redis.url, "BTCW_CONFIG_DIR": str(config_dir),
                "BTCW_VAR_DIR": str(var_dir), "SECRET_KEY": "bench-secret"})
    if args.psycopg_wait:
        env["PSYCOPG_WAIT_FUNC"] = args.psycopg_wait
    server = GunicornWeb(env, args.workers, folder / f"gunicorn-{label}.log").start()
    result: dict = {"label": label}
    try:
        port = server.port
        pids = {"web": [server.proc.pid], "redis": [redis.proc.pid]}
        if postgres is not None:
            pids["postgres"] = postmaster_pid(postgres)
        warm = make_bodies(args.warmup, f"{label}-warm", 0)
        post_all(port, [request_bytes(port, strategy_id, token, b) for b in warm],
                 args.concurrency)
        bodies = make_bodies(args.signals, label, args.warmup)
        requests = [request_bytes(port, strategy_id, token, b) for b in bodies]
        result["sustained"] = measured(pids, lambda: post_all(port, requests, args.concurrency))

        burst_bodies = make_bodies(args.signals, f"{label}-burst", args.warmup + args.signals)
        burst = [request_bytes(port, strategy_id, token, b) for b in burst_bodies]
        result["burst"] = measured(pids, lambda: post_all(port, burst, args.concurrency * 10))
        time.sleep(0.5)  # the receivers mark the outbox in batches every 50 ms
        expected = args.warmup + 2 * args.signals
        result["expected"] = expected
        result["counts"] = count_rows(url, strategy_id)
        result["notify_jobs"] = notify_jobs(redis.url)
    finally:
        server.stop()
    # After the count check, so the raw rows do not disturb it.
    result["raw_insert"] = raw_insert_rate(url, strategy_id, args.raw, bodies[0])
    return result


def print_result(r: dict, args) -> None:
    s, b, c = r["sustained"], r["burst"], r["counts"]
    cpu_ms = s["server_cpu"] * 1000 / s["count"]
    client_ms = s["client_cpu"] * 1000 / s["count"]
    cores = os.cpu_count() or 1
    print(f"\n== {r['label']} ==")
    print(f"sustained: {s['count']} signals, {args.concurrency} connections: "
          f"{s['rate']:,.0f} signals/s  p50 {s['p50']:.1f} ms  p99 {s['p99']:.1f} ms  "
          f"max {s['max']:.0f} ms  failures {len(s['failures'])}  duplicates {s['duplicates']}")
    parts = ", ".join(f"{name} {seconds * 1000 / s['count']:.2f}"
                      for name, seconds in s["cpu_by_server"].items())
    print(f"  CPU per signal: {cpu_ms:.2f} ms in the servers ({parts}) + {client_ms:.2f} ms in "
          f"this client -> {cores} idle cores would carry about "
          f"{cores * 1000 / (cpu_ms + client_ms):,.0f} signals/s")
    print(f"raw INSERT+COMMIT, same database, one connection: {r['raw_insert']:,.0f} rows/s  "
          f"-> ingest/raw = {s['rate'] / r['raw_insert']:.2f}")
    print(f"burst: {b['count']} signals, {args.concurrency * 10} connections at once: "
          f"{b['rate']:,.0f} signals/s  p50 {b['p50']:.1f} ms  p99 {b['p99']:.1f} ms  "
          f"max {b['max']:.0f} ms (slowest TCP connect {b['connect_max']:.0f} ms)  "
          f"failures {len(b['failures'])}")
    ok = (c["rows"] == c["distinct"] == r["expected"] and c["unpublished"] == 0
          and c["undispatched"] == 0 and r["notify_jobs"] == c["graded"]
          and not s["failures"] and not b["failures"])
    print(f"count check: {c['rows']} rows for {r['expected']} signals sent "
          f"({c['distinct']} distinct), unpublished {c['unpublished']}, "
          f"not handed on {c['undispatched']}, notify jobs {r['notify_jobs']} for "
          f"{c['graded']} graded -> {'OK, nothing lost' if ok else 'MISMATCH'}")
    for failure in (s["failures"] + b["failures"])[:5]:
        print("  failure:", failure)
    r["ok"] = ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--signals", type=int, default=20000, help="signals per run")
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=32, help="posting connections")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn gevent workers")
    parser.add_argument("--raw", type=int, default=5000, help="rows for the raw INSERT rate")
    parser.add_argument("--only", choices=("sqlite", "postgresql"), default=None)
    parser.add_argument("--psycopg-wait", default=None,
                        help="PSYCOPG_WAIT_FUNC for the web workers, e.g. wait_c (blocking)")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="btcw-bench-"))
    (folder / "config").mkdir()
    for f in (ROOT / "config").glob("*.yml"):
        shutil.copy(f, folder / "config" / f.name)
    print(f"signal ingest bench: {os.cpu_count()} CPUs, load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}, {args.workers} gunicorn gevent "
          f"workers, {args.concurrency} keep-alive connections, Python {sys.version.split()[0]}")
    redis_server = RedisServer().start()
    postgres = None
    results = []
    try:
        if args.only in (None, "sqlite"):
            results.append(run_database("SQLite", f"sqlite:///{folder / 'bench.db'}",
                                        redis_server, None, args, folder))
            print_result(results[-1], args)
        if args.only in (None, "postgresql"):
            postgres = PostgresServer().start()
            results.append(run_database("PostgreSQL", postgres.url(), redis_server, postgres,
                                        args, folder))
            print_result(results[-1], args)
    finally:
        if postgres is not None:
            postgres.stop()
        redis_server.cleanup()
        shutil.rmtree(folder, ignore_errors=True)
    print(f"\nload average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0 if all(r.get("ok") for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
