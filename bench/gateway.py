"""Gateway benchmark: one real bot on the market simulator, reached three ways in one run.

    .venv/bin/python bench/gateway.py [--requests 2000] [--clients 4] [--rounds 3]
                                      [--workers 2] [--worker-class gevent|gevent_pywsgi]

1. direct: the bot's own API (HTTP Basic with the bot's credentials);
2. nginx: Debian's nginx (a config written here: proxy_pass to the bot over keep-alive
   connections, the bot's Basic header injected);
3. gateway: `gunicorn -k gevent 'wsgi:gateway()'` with a BTC Watcher user's Basic login.

The same load generator drives all three: a fixed number of requests spread over a few
concurrent clients (one process each, one keep-alive connection each), in interleaved rounds
(medians reported, the machine is shared). Prints requests/s, p50/p99 latency and the CPU the
bot and the proxy spent per request for `/api/v1/ping` and `/api/v1/profit`, the ratios
gateway/nginx and gateway/direct, then the latency with one client at a time (no queueing).
Targets: gateway throughput ≥ 0.8 × nginx, added p50 ≤ 1 ms.

Everything it starts (simulator, bot, Redis, nginx, gunicorn) is stopped at the end.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import multiprocessing
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.system.stack import gunicorn_flags  # noqa: E402
from tests.support.servers import RedisServer, free_port, wait_port  # noqa: E402

PY = str(Path(sys.executable))
BIN = Path(sys.executable).parent
USER, PASSWORD = "bench", secrets.token_urlsafe(12) + "!"
BOT_USER, BOT_PASSWORD = "bench-bot", secrets.token_urlsafe(24)
BOT_SECRETS = {"jwt_secret": secrets.token_hex(32), "ws_token": secrets.token_urlsafe(24)}
PATHS = {"ping": "/api/v1/ping", "profit": "/api/v1/profit"}


# ----------------------------------------------------------------------------- processes


class Stack:
    """The processes of one bench run; stop() ends every one of them."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="btcw-bench-gw-"))
        self.procs: list[subprocess.Popen] = []
        self.roles: dict[str, subprocess.Popen] = {}
        self.redis: RedisServer | None = None

    def cpu_seconds(self, role: str) -> float:
        """User+system CPU time so far of a role's process and its children (nginx/gunicorn
        workers)."""
        import psutil

        try:
            root = psutil.Process(self.roles[role].pid)
            total = 0.0
            for proc in [root, *root.children(recursive=True)]:
                times = proc.cpu_times()
                total += times.user + times.system
            return total
        except psutil.NoSuchProcess:
            return 0.0

    def spawn(self, argv: list[str], log: str, env: dict | None = None) -> subprocess.Popen:
        """Start a child in its own session with its output in a log file."""
        fh = open(self.dir / log, "wb")  # noqa: SIM115 - the child owns it
        proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT,  # noqa: S603
                                env={**os.environ, **(env or {})}, start_new_session=True)
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        """SIGTERM every child's process group, SIGKILL what is left after 10 s."""
        for proc in reversed(self.procs):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 10
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if self.redis:
            self.redis.stop()
            self.redis.cleanup()
        shutil.rmtree(self.dir, ignore_errors=True)


def start_bot(stack: Stack) -> int:
    """The market simulator and one dry-run bot on it; returns the bot's API port."""
    from app.runtime.ft_config import build_bot_config, write_bot_config

    sim_port, bot_port = free_port(), free_port()
    stack.spawn([PY, "-m", "app.simulator", "--port", str(sim_port), "--pairs", "BTC/USDT"],
                "simulator.log")
    wait_port(sim_port, 30)
    bot_dir = stack.dir / "bot"
    config = build_bot_config(
        strategy="MA_Cross_BTC", strategy_path=ROOT / "user_data" / "strategies",
        exchange="simulator", pairs=["BTC/USDT"], api_port=bot_port, api_username=BOT_USER,
        api_password=BOT_PASSWORD, **BOT_SECRETS,
        db_url=f"sqlite:///{bot_dir}/trades.sqlite", user_data_dir=bot_dir,
        simulator_url=f"http://127.0.0.1:{sim_port}", log_file=bot_dir / "bot.log")
    write_bot_config(bot_dir / "config.json", config)
    stack.roles["bot"] = stack.spawn(
        [str(BIN / "freqtrade"), "trade", "-c", str(bot_dir / "config.json")], "bot.log")
    wait_http(bot_port, "/api/v1/ping", 90)
    return bot_port


def start_nginx(stack: Stack, bot_port: int) -> int:
    """nginx in front of the bot: keep-alive upstream, the bot's Basic header injected."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    port = free_port()
    basic = base64.b64encode(f"{BOT_USER}:{BOT_PASSWORD}".encode()).decode()
    folder = stack.dir / "nginx"
    (folder / "tmp").mkdir(parents=True)
    conf = folder / "nginx.conf"
    conf.write_text(f"""
worker_processes 1;
daemon off;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {folder}/tmp/body;
    proxy_temp_path {folder}/tmp/proxy;
    fastcgi_temp_path {folder}/tmp/fastcgi;
    uwsgi_temp_path {folder}/tmp/uwsgi;
    scgi_temp_path {folder}/tmp/scgi;
    upstream bot {{ server 127.0.0.1:{bot_port}; keepalive 16; }}
    server {{
        listen 127.0.0.1:{port};
        location /api/v1/ {{
            proxy_pass http://bot;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Authorization "Basic {basic}";
            proxy_connect_timeout 2s;
            proxy_read_timeout 10s;
        }}
    }}
}}
""")
    stack.roles["nginx"] = stack.spawn([nginx, "-c", str(conf), "-p", str(folder)], "nginx.log")
    wait_port(port, 15)
    return port


def start_gateway(stack: Stack, bot_port: int, workers: int, worker_class: str) -> int:
    """Redis, a SQLite database with a user and the bot's route, and the gunicorn gateway."""
    stack.redis = RedisServer().start()
    var = stack.dir / "var"
    env = {"DATABASE_URL": f"sqlite:///{var}/btcw.db", "REDIS_URL": stack.redis.url,
           "SECRET_KEY": "bench-secret-key-" + "x" * 32, "BTCW_VAR_DIR": str(var)}
    os.environ.update(env)
    from app import create_app
    from app.auth import service
    from app.extensions import db
    from app.strategies.models import Strategy

    app = create_app({"VAR_DIR": str(var)})
    with app.app_context():
        db.create_all()
        service.create_user(USER, PASSWORD)
        db.session.add(Strategy(
            name="bench", strategy_class="MA_Cross_BTC", strategy_file="MA_Cross_BTC.py",
            status="running", desired_state="running", host="127.0.0.1", port=bot_port,
            api_username=BOT_USER, api_password=BOT_PASSWORD, webhook_token=secrets.token_hex(8),
            **BOT_SECRETS))
        db.session.commit()
    port = free_port()
    stack.roles["gateway"] = stack.spawn(
        [str(BIN / "gunicorn"), "-k", worker_class, "-w", str(workers), "-b",
         f"127.0.0.1:{port}", "--log-level", "warning", *gunicorn_flags(), "wsgi:gateway()"],
        "gateway.log", env)
    wait_http(port, "/health", 30)
    return port


def wait_http(port: int, path: str, seconds: float) -> None:
    """Wait until GET path answers 200, or raise."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"127.0.0.1:{port}{path} did not answer within {seconds} s")


# --------------------------------------------------------------------------- load generator


def _client(port: int, path: str, headers: dict, count: int, start_at: float, out) -> None:
    """One client: `count` sequential requests on one keep-alive connection; latencies in s."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    latencies, errors = [], 0
    while time.time() < start_at:
        time.sleep(0.001)
    for _ in range(count):
        t0 = time.perf_counter()
        try:
            conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
            resp.read()
            ok = resp.status == 200
        except (OSError, http.client.HTTPException):
            ok = False
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        latencies.append(time.perf_counter() - t0)
        errors += not ok
    conn.close()
    out.put((latencies, errors))


def load(port: int, path: str, headers: dict, requests: int, clients: int) -> dict:
    """Run `requests` GETs over `clients` concurrent client processes; throughput and latency."""
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    per = requests // clients
    start_at = time.time() + 0.3
    procs = [ctx.Process(target=_client, args=(port, path, headers, per, start_at, out))
             for _ in range(clients)]
    for p in procs:
        p.start()
    results = [out.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(timeout=10)
    wall = time.time() - start_at
    latencies = sorted(x for lat, _ in results for x in lat)
    errors = sum(e for _, e in results)
    return {"rps": len(latencies) / wall, "p50": percentile(latencies, 50) * 1000,
            "p99": percentile(latencies, 99) * 1000,
            "mean": statistics.fmean(latencies) * 1000, "errors": errors}


def percentile(values: list[float], pct: float) -> float:
    """The pct-th percentile of sorted values (nearest rank)."""
    if not values:
        return float("nan")
    index = min(len(values) - 1, max(0, round(pct / 100 * len(values)) - 1))
    return values[index]


# ----------------------------------------------------------------------------------- main


def measure(stack: Stack, target: str, port: int, path: str, headers: dict,
            requests: int, clients: int) -> dict:
    """One load run, plus the CPU the bot and the proxy (if any) spent per request."""
    bot0 = stack.cpu_seconds("bot")
    proxy0 = stack.cpu_seconds(target) if target != "direct" else 0.0
    result = load(port, path, headers, requests, clients)
    done = requests // clients * clients
    result["bot_us"] = (stack.cpu_seconds("bot") - bot0) / done * 1e6
    result["proxy_us"] = ((stack.cpu_seconds(target) - proxy0) / done * 1e6
                          if target != "direct" else 0.0)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per measurement")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients")
    parser.add_argument("--workers", type=int, default=2,
                        help="gunicorn gateway workers (system.gateway.workers is 2)")
    parser.add_argument("--worker-class", default="gevent",
                        help="gunicorn worker class (gevent or gevent_pywsgi)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds (targets interleaved); the median round is reported")
    args = parser.parse_args()

    stack = Stack()
    try:
        print("starting simulator, bot, nginx, Redis and the gateway…", flush=True)
        bot_port = start_bot(stack)
        nginx_port = start_nginx(stack, bot_port)
        gateway_port = start_gateway(stack, bot_port, args.workers, args.worker_class)
        bot_auth = {"Authorization": "Basic " + base64.b64encode(
            f"{BOT_USER}:{BOT_PASSWORD}".encode()).decode()}
        user_auth = {"Authorization": "Basic " + base64.b64encode(
            f"{USER}:{PASSWORD}".encode()).decode()}
        targets = {
            "direct": (bot_port, "", bot_auth),
            "nginx": (nginx_port, "", {}),
            "gateway": (gateway_port, "/api/strategy/1", user_auth),
        }
        for port, prefix, headers in targets.values():  # warm up: pools, auth cache
            load(port, prefix + PATHS["profit"], headers, 200, args.clients)
        load_before = os.getloadavg()[0]
        runs: dict[tuple[str, str], list[dict]] = {}
        for _ in range(args.rounds):
            for endpoint, path in PATHS.items():
                for name, (port, prefix, headers) in targets.items():
                    runs.setdefault((endpoint, name), []).append(
                        measure(stack, name, port, prefix + path, headers, args.requests,
                                args.clients))
        single: dict[tuple[str, str], list[dict]] = {}
        for _ in range(args.rounds):  # latency without queueing: one client at a time
            for endpoint, path in PATHS.items():
                for name, (port, prefix, headers) in targets.items():
                    single.setdefault((endpoint, name), []).append(
                        load(port, prefix + path, headers, args.requests // 4, 1))
        report(runs, single, args, (load_before, os.getloadavg()[0]))
        return 0
    finally:
        stack.stop()


def median_of(results: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in results)


def report(runs: dict, single: dict, args, load: tuple[float, float]) -> None:
    """The table (medians over rounds) and the ratios."""
    print(f"\n{args.requests} requests per run, {args.clients} concurrent keep-alive clients, "
          f"{args.rounds} interleaved rounds (medians shown); gateway = gunicorn "
          f"-k {args.worker_class} -w {args.workers}; {os.cpu_count()} CPUs shared by bot, "
          f"proxies and load generator; load average {load[0]:.1f} → {load[1]:.1f}\n")
    print(f"{'endpoint':8} {'via':8} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'bot µs/req':>10} {'proxy µs/req':>12} {'errors':>6}")
    med = {}
    for (endpoint, name), results in runs.items():
        row = {k: median_of(results, k) for k in ("rps", "p50", "p99", "bot_us", "proxy_us")}
        row["errors"] = sum(r["errors"] for r in results)
        med[(endpoint, name)] = row
        proxy = f"{row['proxy_us']:12.0f}" if name != "direct" else f"{'-':>12}"
        print(f"{endpoint:8} {name:8} {row['rps']:7.0f} {row['p50']:7.2f} {row['p99']:7.2f} "
              f"{row['bot_us']:10.0f} {proxy} {row['errors']:6d}")
    print()
    for endpoint in PATHS:
        gw, ng, di = (med[(endpoint, n)] for n in ("gateway", "nginx", "direct"))
        print(f"{endpoint:8} throughput gateway/nginx {gw['rps'] / ng['rps']:.2f}  "
              f"gateway/direct {gw['rps'] / di['rps']:.2f}   added p50: vs direct "
              f"{gw['p50'] - di['p50']:+.2f} ms, vs nginx {gw['p50'] - ng['p50']:+.2f} ms")
    print(f"\none client at a time ({args.requests // 4} requests, medians): p50 / p99 ms")
    for endpoint in PATHS:
        cells = []
        for name in ("direct", "nginx", "gateway"):
            results = single[(endpoint, name)]
            cells.append(f"{name} {median_of(results, 'p50'):.2f} / "
                         f"{median_of(results, 'p99'):.2f}")
        added = median_of(single[(endpoint, "gateway")], "p50") - median_of(
            single[(endpoint, "direct")], "p50")
        print(f"{endpoint:8} " + "   ".join(cells) + f"   added p50 {added:+.2f} ms")


if __name__ == "__main__":
    sys.exit(main())
