"""Stand-in FreqTrade bots: HTTP endpoints that answer the REST routes the status sweep uses.

Used where real bots (330 MB each) cannot be: unit tests of the sweep (a few threaded servers in
the test process, each with a mutable `config`) and bench/status_sweep.py (one gevent process
serving hundreds of ports). They answer `/api/v1/ping`, `health`, `show_config`,
`pair_candles`, `status`, `count` and `profit` in FreqTrade 2026.9's shapes, with HTTP Basic
auth, an optional delay, a bot state, an error status and candles that stop at a given time.

    python -m tests.support.standin_bots --base-port 21000 --count 999 [--host 127.0.0.2]
        [--delay-ms 2-30]
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

DEFAULTS = {
    "state": "running",  # what show_config reports
    "timeframe": "1m",
    "delay": 0.0,  # seconds before answering (a fixed delay; see delay_range)
    "delay_range": None,  # (low, high) seconds: a random delay per request
    "status_code": 200,  # anything else: every authenticated route answers with it
    "loop_age": 3.0,  # seconds since FreqTrade's loop last ran (health last_process)
    "candles_stop_at": None,  # unix time: no candle after this (a stalled exchange)
    "username": None,  # when set, Basic credentials must match
    "password": None,
    "trades": (0, 0),  # (all, closed) trades, as /profit counts them
}
_UNITS = {"m": 60, "h": 3600, "d": 86400}


def _tf_seconds(tf: str) -> int:
    return int(tf[:-1]) * _UNITS[tf[-1]]


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S+00:00")


def _authorized(environ, config) -> bool:
    header = environ.get("HTTP_AUTHORIZATION", "")
    if not header.lower().startswith("basic "):
        return False
    if config.get("username") is None:
        return True
    try:
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
    except ValueError:
        return False
    return user == config["username"] and password == config["password"]


_PADDING = "x" * 2400  # show_config of a real bot is ~3 KB


def _body(path: str, query: str, config: dict, port: int) -> object:
    now = time.time()
    tf = config["timeframe"]
    step = _tf_seconds(tf)
    if path == "health":
        last = now - config["loop_age"]
        return {"last_process": _iso(last), "last_process_loc": _iso(last),
                "last_process_ts": int(last), "bot_start": _iso(now - 3600),
                "bot_start_ts": int(now - 3600), "bot_startup": _iso(now - 3600),
                "bot_startup_ts": int(now - 3600)}
    if path == "show_config":
        return {"version": "2026.9", "strategy_version": None, "api_version": 2.5,
                "dry_run": True, "trading_mode": "spot", "short_allowed": False,
                "stake_currency": "USDT", "stake_amount": "unlimited", "max_open_trades": 3.0,
                "timeframe": tf, "exchange": "binance", "strategy": f"Standin{port}",
                "bot_name": f"standin-{port}", "state": config["state"], "runmode": "dry_run",
                "force_entry_enable": False, "position_adjustment_enable": False,
                "_padding": _PADDING}
    if path == "pair_candles":
        stop = min(now, config["candles_stop_at"] or now)
        newest_open = (int(stop) // step - 1) * step  # the newest *closed* candle
        return {"pair": "BTC/USDT", "timeframe": tf, "timeframe_ms": step * 1000,
                "strategy": f"Standin{port}", "columns": ["date", "open", "high", "low", "close",
                                                          "volume", "__date_ts"],
                "all_columns": [], "data": [[_iso(newest_open), 1.0, 1.1, 0.9, 1.05, 12.5,
                                             newest_open * 1000]],
                "length": 1, "buy_signals": 0, "sell_signals": 0, "enter_long_signals": 0,
                "exit_long_signals": 0, "enter_short_signals": 0, "exit_short_signals": 0,
                "last_analyzed": _iso(stop), "last_analyzed_ts": int(stop),
                "data_start_ts": newest_open * 1000, "data_start": _iso(newest_open),
                "data_stop": _iso(newest_open), "data_stop_ts": newest_open * 1000,
                "annotations": []}
    if path == "status":
        return []
    if path == "count":
        return {"current": 0, "max": 3, "total_stake": 0.0}
    if path == "profit":
        total, closed = config["trades"]
        return {"profit_all_coin": 0.0, "trade_count": total, "closed_trade_count": closed}
    return None


def make_app(config_for: Callable[[int], dict], sleep: Callable[[float], None] = time.sleep,
             asked: list[str] | None = None):
    """A WSGI app answering as the bot whose config config_for(server port) returns; the API
    paths called are appended to `asked` when given."""

    def app(environ, start_response):
        port = int(environ.get("SERVER_PORT") or 0)
        config = {**DEFAULTS, **config_for(port)}
        delay = config["delay"]
        if config["delay_range"]:
            delay += random.uniform(*config["delay_range"])
        if delay:
            sleep(delay)
        path = environ.get("PATH_INFO", "")
        if not path.startswith("/api/v1/"):
            return _reply(start_response, 404, {"detail": "Not Found"})
        name = path[len("/api/v1/"):]
        if asked is not None:
            asked.append(name)
        if name == "ping":
            return _reply(start_response, 200, {"status": "pong"})
        if not _authorized(environ, config):
            return _reply(start_response, 401, {"detail": "Unauthorized"})
        if config["status_code"] != 200:
            return _reply(start_response, config["status_code"],
                          {"detail": f"stand-in error {config['status_code']}"})
        body = _body(name, environ.get("QUERY_STRING", ""), config, port)
        if body is None:
            return _reply(start_response, 404, {"detail": "Not Found"})
        return _reply(start_response, 200, body)

    return app


def _reply(start_response, code: int, body) -> list[bytes]:
    data = json.dumps(body).encode()
    reasons = {200: "OK", 401: "Unauthorized", 404: "Not Found", 500: "Internal Server Error",
               503: "Service Unavailable"}
    start_response(f"{code} {reasons.get(code, 'Error')}",
                   [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


class StandinBot:
    """One stand-in bot in a thread of the test process; change `config` to change its answers."""

    def __init__(self, **config):
        from werkzeug.serving import make_server

        self.config = dict(config)
        self.asked: list[str] = []  # the API paths called, in order ("health", "profit", …)
        self.server = make_server("127.0.0.1", 0,
                                  make_app(lambda _port: self.config, asked=self.asked),
                                  threaded=True)
        self.port = self.server.server_port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        """Stop serving (the port refuses connections afterwards)."""
        self.server.shutdown()
        self.server.server_close()


def serve(base_port: int, count: int, delay_range: tuple[float, float] | None,
          host: str = "127.0.0.1") -> None:
    """Serve `count` stand-in bots on consecutive ports in one gevent process (bench)."""
    from gevent import monkey

    monkey.patch_all()
    import gevent
    from gevent.pywsgi import WSGIServer

    config = {"delay_range": delay_range}
    app = make_app(lambda _port: config, sleep=gevent.sleep)
    servers = [WSGIServer((host, base_port + i), app, log=None, error_log=None)
               for i in range(count)]
    for server in servers:
        server.start()
    print(f"ready {count} stand-in bots on {host}:{base_port}-{base_port + count - 1}",
          flush=True)
    gevent.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-port", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to listen on")
    parser.add_argument("--delay-ms", default="2-30",
                        help="random answer delay per request, LOW-HIGH milliseconds")
    args = parser.parse_args()
    low, _, high = args.delay_ms.partition("-")
    delay = (float(low) / 1000, float(high or low) / 1000)
    serve(args.base_port, args.count, delay if delay[1] > 0 else None, args.host)


if __name__ == "__main__":
    main()
