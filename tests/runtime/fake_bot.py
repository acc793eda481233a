"""Stand-ins for FreqTrade's `main(argv)`, run by a ForkLauncher's zygote in tests.

Each takes FreqTrade's argv (`trade -c CONFIG --logfile LOG`); the launcher tests pass one as
`ForkLauncher(entry="tests.runtime.fake_bot:<name>")`, so no real bot is needed to test the
fork mechanics (command line, exit codes, stop, the zygote's crash).
"""

from __future__ import annotations

import json
import signal
import sys
import time
from http.server import BaseHTTPRequestHandler, HTTPServer


def exits_early(argv: list[str]) -> None:
    """Log a FreqTrade-like error, print to the console and exit with code 2."""
    with open(argv[4], "a") as log:
        log.write("2026-01-01 00:00:00,000 - freqtrade - ERROR - Could not load markets, "
                  "therefore cannot start.\n")
    print("console noise", flush=True)
    sys.exit(2)


def sleeps(argv: list[str]) -> None:
    """Never answer (a bot stuck before its API comes up)."""
    time.sleep(60)


def ignores_sigterm(argv: list[str]) -> None:
    """Answer /api/v1/ping but ignore SIGTERM (stop() must escalate to SIGKILL)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    serves_ping(argv)


class _Ping(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's name
        body = json.dumps({"status": "pong"}).encode()
        self.send_response(200 if self.path == "/api/v1/ping" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def serves_ping(argv: list[str]) -> None:
    """Answer /api/v1/ping on the config's api_server address until SIGTERM (exit code 0)."""
    with open(argv[2]) as fh:
        api = json.load(fh)["api_server"]
    server = HTTPServer((api["listen_ip_address"], api["listen_port"]), _Ping)
    print(f"serving on {api['listen_port']}", flush=True)

    def stop(_signum, _frame):
        raise KeyboardInterrupt

    if signal.getsignal(signal.SIGTERM) is not signal.SIG_IGN:
        signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
