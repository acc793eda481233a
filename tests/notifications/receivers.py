"""Real receivers on loopback for the notification tests: an HTTP server that records what the
chat/webhook channels post, and an SMTP server (aiosmtpd), optionally with STARTTLS or SSL."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from tests.support.servers import free_port

# One success body every vendor accepts: Feishu code 0, WeCom/DingTalk errcode 0, Telegram ok,
# WeCom gettoken access_token, SMSEagle result.status.
OK_BODY = {"code": 0, "msg": "success", "errcode": 0, "errmsg": "ok", "ok": True,
           "access_token": "TOKEN-1", "expires_in": 7200,
           "result": {"message_id": 1, "status": "ok"}}


@dataclass
class Recorded:
    """One request the receiver got."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    raw_query: str = ""
    at: float = field(default_factory=time.monotonic)

    @property
    def json(self):
        """The body parsed as JSON."""
        return json.loads(self.body)

    def q(self, name: str) -> str:
        """One query parameter."""
        return self.query[name][0]


Reply = tuple[int, object, dict[str, str]]


class HttpReceiver:
    """A threaded HTTP server that records every request and answers as told.

    `reply(status, body, headers)` queues answers (used in order, then OK_BODY);
    `responder` may decide per request; `hold()` makes the next request wait (after being
    recorded) until `release()` — a receiver "holding the request".
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.requests: list[Recorded] = []
        self.replies: deque[Reply] = deque()
        self.responder: Callable[[Recorded], Reply | None] | None = None
        self._lock = threading.Condition()
        self._hold = threading.Event()
        self._hold.set()
        self._holding_next = False
        self.server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def reply(self, status: int = 200, body: object = None, headers: dict | None = None):
        """Queue one answer."""
        self.replies.append((status, OK_BODY if body is None else body, headers or {}))
        return self

    def hold(self) -> None:
        """Hold the next request open (recorded, unanswered) until release()."""
        self._holding_next = True
        self._hold.clear()

    def release(self) -> None:
        self._hold.set()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Recorded]:
        """Wait until at least `count` requests arrived; return them."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self.requests) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"expected {count} requests, got {len(self.requests)}")
                self._lock.wait(left)
            return list(self.requests)

    def _record(self, handler: BaseHTTPRequestHandler) -> Reply:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        parts = urlsplit(handler.path)
        rec = Recorded(handler.command, parts.path, parse_qs(parts.query),
                       {k: v for k, v in handler.headers.items()}, body, parts.query)
        hold = False
        with self._lock:
            self.requests.append(rec)
            if self._holding_next:
                hold, self._holding_next = True, False
            self._lock.notify_all()
        if hold:
            self._hold.wait(60)
        answer = self.responder(rec) if self.responder else None
        if answer is None:
            answer = self.replies.popleft() if self.replies else (200, OK_BODY, {})
        return answer

    def start(self) -> HttpReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self):
                status, body, headers = receiver._record(self)
                data = body if isinstance(body, bytes) else (
                    body.encode() if isinstance(body, str) else json.dumps(body).encode())
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", headers.pop("Content-Type",
                                                                 "application/json"))
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client went away (a killed worker)

            do_GET = do_POST = do_PUT = _handle

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.release()
        if self.server:
            self.server.shutdown()
            self.server.server_close()


class SmtpReceiver:
    """aiosmtpd on loopback: plain, STARTTLS (required) or implicit SSL, optional AUTH."""

    def __init__(self, mode: str = "none", cert_dir: Path | None = None,
                 credentials: tuple[str, str] | None = None):
        self.mode = mode
        self.cert_dir = cert_dir
        self.credentials = credentials
        self.port = free_port()
        self.messages: list = []
        self.logins: list[str] = []
        self.controller = None

    def start(self) -> SmtpReceiver:
        import ssl

        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult

        receiver = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                receiver.messages.append(envelope)
                return "250 OK"

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = receiver.credentials is not None and (
                auth_data.login.decode(), auth_data.password.decode()) == receiver.credentials
            if ok:
                receiver.logins.append(auth_data.login.decode())
            return AuthResult(success=ok)

        kwargs: dict = {"hostname": "127.0.0.1", "port": self.port}
        context = None
        if self.mode in ("starttls", "ssl"):
            cert, key = self_signed_cert(self.cert_dir)
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(cert, key)
        if self.mode == "starttls":
            kwargs.update(tls_context=context, require_starttls=True)
        elif self.mode == "ssl":
            kwargs.update(ssl_context=context)
        if self.credentials:
            kwargs.update(authenticator=authenticator, auth_require_tls=self.mode == "starttls",
                          auth_exclude_mechanism=["CRAM-MD5"])
        self.controller = Controller(Handler(), **kwargs)
        self.controller.start()
        return self

    def wait_for(self, count: int, timeout: float = 10.0) -> list:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} mails, got {len(self.messages)}")
            time.sleep(0.05)
        return list(self.messages)

    def stop(self) -> None:
        if self.controller:
            self.controller.stop()


def self_signed_cert(folder: Path) -> tuple[str, str]:
    """A throwaway certificate for 127.0.0.1 (openssl), made once per folder."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    if not cert.exists():
        subprocess.run(  # noqa: S603
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",  # noqa: S607
             "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
            check=True, capture_output=True,
        )
    return str(cert), str(key)
