"""Loopback stand-ins for a bot's HTTP API, for the cases a healthy bot cannot show.

`FakeBot(handler)` listens on a free loopback port and runs `handler(request, conn)` per
request on a kept-alive connection; handlers decide what goes on the wire (a normal answer, a
sleep, a half answer then a hang-up, chunked bodies…). Every request is recorded with its
headers, and `connections` counts accepted TCP connections (to check keep-alive reuse).

`DyingBot` is a real separate process that answers half a response and is then SIGKILLed,
i.e. a bot process killed in the middle of a request.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from tests.support.servers import free_port


@dataclass
class FakeRequest:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    raw_headers: list[tuple[str, str]] = field(default_factory=list)


def answer(conn: socket.socket, status: int = 200, body: bytes | dict | list = b"",
           headers: list[tuple[str, str]] | None = None, reason: str = "OK") -> None:
    """Write one HTTP/1.1 response with a Content-Length."""
    if not isinstance(body, bytes):
        body = json.dumps(body).encode()
        headers = [("Content-Type", "application/json"), *(headers or [])]
    head = f"HTTP/1.1 {status} {reason}\r\nContent-Length: {len(body)}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in (headers or []))
    conn.sendall(head.encode("latin-1") + b"\r\n" + body)


class FakeBot:
    """A threaded loopback HTTP/1.1 server driven by a handler function."""

    def __init__(self, handler):
        self.handler = handler
        self.port = free_port()
        self.requests: list[FakeRequest] = []
        self.connections = 0
        self._sock = socket.create_server(("127.0.0.1", self.port))
        self._stop = threading.Event()
        self._open: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        self._sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            self._open.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        try:
            while not self._stop.is_set():
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, _, buf = buf.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                raw = [tuple(x.strip() for x in line.split(":", 1)) for line in lines[1:]]
                headers = {k.lower(): v for k, v in raw}
                length = int(headers.get("content-length", "0"))
                while len(buf) < length:
                    buf += conn.recv(65536)
                body, buf = buf[:length], buf[length:]
                request = FakeRequest(method, target, headers, body, raw)
                self.requests.append(request)
                if self.handler(request, conn) is False:
                    return
        except OSError:
            return
        finally:
            try:
                conn.close()
            except OSError:
                pass

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._stop.set()
        self._sock.close()
        for conn in self._open:
            try:
                conn.shutdown(socket.SHUT_RDWR)
                conn.close()
            except OSError:
                pass


def json_bot(payload=None, status: int = 200, headers=None):
    """A FakeBot answering every request with one JSON document."""
    body = payload if payload is not None else {"status": "pong"}
    return FakeBot(lambda req, conn: answer(conn, status, body, headers))


def sleepy_bot(seconds: float):
    """A FakeBot that reads the request and answers only after `seconds`."""
    def handler(req, conn):
        time.sleep(seconds)
        answer(conn, 200, {"late": True})
    return FakeBot(handler)


_DYING = r"""
import socket, sys, time
srv = socket.create_server(("127.0.0.1", int(sys.argv[1])))
print("ready", flush=True)
conn, _ = srv.accept()
conn.recv(65536)
conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
             b'{"partial": ')
print("half", flush=True)
time.sleep(3600)
"""


class DyingBot:
    """A separate process that answers half a response, waiting to be SIGKILLed."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(  # noqa: S603 - fixed script
            [sys.executable, "-c", _DYING, str(self.port)], stdout=subprocess.PIPE, text=True,
            start_new_session=True)
        assert _readline(self.proc, 10).strip() == "ready"  # listening (no probe: one accept)

    def wait_half_sent(self, timeout: float = 10) -> None:
        line = _readline(self.proc, timeout)
        assert line.strip() == "half", line

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


def _readline(proc: subprocess.Popen, timeout: float) -> str:
    out: list[str] = []
    reader = threading.Thread(target=lambda: out.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return out[0] if out else ""
