"""The one client for talking to a FreqTrade bot's REST API.

Every call to a bot goes through `BotClient`: one pooled keep-alive `requests.Session` per bot,
HTTP Basic auth, a (connect, read) timeout on every call, and typed errors:

- `BotUnreachable`: connection refused/reset, the bot died mid-answer, no port → HTTP 502
- `BotTimeout`: the bot accepted the connection but did not answer in time → HTTP 504
- `BotError`: the bot answered with an error status (carries it and the bot's message)

`http_status(exc)` is the single place that maps these errors to the status BTC Watcher returns.
`fetch_all()` asks many bots at once (gevent greenlets in the gevent-patched web/gateway
processes, a thread pool elsewhere) with a per-bot timeout and never raises for one bad bot.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ReadTimeoutError
from urllib3.util import Retry

from app.system.settings import current_settings

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 10.0
DEFAULT_CONNECT_TIMEOUT = 2.0
API_PREFIX = "/api/v1/"

# A kept-alive connection the bot closed a moment ago fails on reuse; retry that once, but only
# for idempotent methods (a POST may have reached the bot). Refused connections are not retried.
class _StaleConnectionRetry(Retry):
    """Retry a dropped kept-alive connection once, but never a read timeout (a slow bot)."""

    def increment(self, method=None, url=None, response=None, error=None, _pool=None,
                  _stacktrace=None):
        if isinstance(error, ReadTimeoutError):
            raise error
        return super().increment(method, url, response, error, _pool, _stacktrace)


RETRY = _StaleConnectionRetry(total=1, connect=0, read=1, status=0, other=0, redirect=False,
                              raise_on_status=False, raise_on_redirect=False)


# ------------------------------------------------------------------------------------ errors


class BotError(Exception):
    """A bot call failed. `status_code` is the bot's HTTP status (None if it never answered)."""

    def __init__(self, message: str, status_code: int | None = None, bot_message: str = "",
                 target: str = ""):
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.bot_message = bot_message
        self.target = target


class BotUnreachable(BotError):
    """The bot could not be reached: not running, connection refused or reset, died mid-answer."""


class BotTimeout(BotError):
    """The bot accepted the connection but did not answer within the timeout."""


# The one mapping from bot errors to the HTTP status BTC Watcher answers with.
ERROR_STATUS: dict[type[BotError], int] = {
    BotUnreachable: 502,
    BotTimeout: 504,
    BotError: 502,
}


def http_status(exc: BotError) -> int:
    """The HTTP status to answer a caller with for a failed bot call.

    Unreachable → 502, timeout → 504. A bot's own 4xx (bad input, unknown trade) passes through,
    except 401/403, which mean *our* credentials for the bot are wrong → 502. Other bot errors
    (5xx, unparseable answers) → 502.
    """
    for cls in type(exc).__mro__:
        if cls in ERROR_STATUS and cls is not BotError:
            return ERROR_STATUS[cls]
    code = exc.status_code
    if code is not None and 400 <= code < 500 and code not in (401, 403):
        return code
    return ERROR_STATUS[BotError]


def _bot_message(resp: requests.Response) -> str:
    """The bot's own error text: FreqTrade answers {"detail": "..."} or {"error": "..."}."""
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:300]
    if isinstance(body, dict):
        for key in ("detail", "error", "message"):
            if body.get(key):
                value = body[key]
                return value if isinstance(value, str) else str(value)[:300]
    return str(body)[:300]


# ------------------------------------------------------------------------------------ client


def _in_gevent() -> bool:
    """True when this process is gevent monkey-patched (web and gateway workers)."""
    try:
        from gevent import monkey
    except ImportError:  # pragma: no cover - gevent is a dependency
        return False
    return monkey.is_module_patched("socket")


def run_concurrently(count: int, task, width: int, budget: float, name: str) -> None:
    """Run task(0) … task(count-1), at most `width` at once, giving up after `budget` seconds.

    Greenlets in the gevent-patched web and gateway processes, threads everywhere else (RQ
    worker, CLI); tasks still running at the deadline are abandoned, never waited for.
    """
    if _in_gevent():
        from gevent.pool import Pool

        pool = Pool(width)
        for i in range(count):
            pool.spawn(task, i)
        pool.join(timeout=budget)
        pool.kill(block=False)
        return
    executor = ThreadPoolExecutor(max_workers=width, thread_name_prefix=name)
    futures = [executor.submit(task, i) for i in range(count)]
    end = time.monotonic() + budget
    try:
        for future in futures:
            future.result(timeout=max(0.0, end - time.monotonic()))
    except FutureTimeout:
        pass
    finally:
        executor.shutdown(wait=False, cancel_futures=True)


class BotClient:
    """A FreqTrade bot's REST API: pooled session, Basic auth, timeouts, typed errors."""

    def __init__(self, base_url: str | None = None, username: str = "", password: str = "", *,
                 host: str | None = None, port: int | None = None,
                 timeout: float = DEFAULT_TIMEOUT, connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
                 name: str = "", pool_maxsize: int = 16):
        if base_url is None:
            if not port:
                raise BotUnreachable(f"{name or 'Bot'} has no API port (is it running?)",
                                     target=name)
            base_url = f"http://{host or '127.0.0.1'}:{int(port)}"
        self.base_url = base_url.rstrip("/")
        self.username = username
        self.timeout = float(timeout)
        self.connect_timeout = float(min(connect_timeout, timeout))
        self.name = name or self.base_url
        self.session = requests.Session()
        self.session.trust_env = False  # bots are local: no proxy variables, no .netrc
        self.session.auth = (username, password) if username else None
        self.session.headers.update({"Accept": "application/json"})
        self.adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_maxsize,
                                   max_retries=RETRY)
        self.session.mount("http://", self.adapter)
        self.session.mount("https://", self.adapter)
        self._scheme, _, rest = self.base_url.partition("://")
        hostport = rest.split("/", 1)[0]
        self._host, _, port_text = hostport.rpartition(":")
        if not self._host:
            self._host, port_text = hostport, ""
        self._port = int(port_text) if port_text else (443 if self._scheme == "https" else 80)
        self._prefix = rest[len(hostport):]  # a base URL may carry a path
        self._pool_maxsize = pool_maxsize
        self._raw: RawConnectionPool | None = None

    def __repr__(self) -> str:
        return f"<BotClient {self.name} {self.base_url}>"

    @classmethod
    def for_strategy(cls, strategy, timeout: float | None = None) -> BotClient:
        """A client for a Strategy row's bot (host, port, api credentials), pooled per process.

        Timeouts default to system.gateway.timeout / connect_timeout when an app context exists.
        Raises BotUnreachable when the strategy has no port (its bot is not running).
        """
        read, connect = _default_timeouts()
        if timeout is not None:
            read = timeout
        name = f"strategy {strategy.name!r} (id {strategy.id})"
        if not strategy.port:
            raise BotUnreachable(f"The bot of {name} is not running (no API port).", target=name)
        return pooled_client(strategy.host or "127.0.0.1", strategy.port, strategy.api_username,
                             strategy.api_password, timeout=read, connect_timeout=connect,
                             name=name)

    def url(self, path: str) -> str:
        """The full URL of an API path: 'ping', '/ping' and '/api/v1/ping' all work."""
        if path.startswith("/api/"):
            return self.base_url + path
        return self.base_url + API_PREFIX + path.lstrip("/")

    def close(self) -> None:
        """Close the pooled connections."""
        self.session.close()
        if self._raw is not None:
            self._raw.close()

    # --------------------------------------------------------------------------- transport

    def send(self, method: str, path: str, *, params=None, data=None, json=None, headers=None,
             stream: bool = False, timeout: float | None = None,
             auth: bool = True) -> requests.Response:
        """One HTTP request to the bot; returns the raw response whatever its status.

        Connection problems raise BotUnreachable and slow answers BotTimeout, so callers (the
        gateway's streaming proxy among them) only handle the typed errors.
        """
        read = self.timeout if timeout is None else timeout
        url = self.url(path)
        kwargs: dict[str, Any] = {}
        if not auth:
            kwargs["auth"] = None
        try:
            return self.session.request(
                method, url, params=params, data=data, json=json, headers=headers,
                stream=stream, timeout=(min(self.connect_timeout, read), read),
                allow_redirects=False, **kwargs,
            )
        except requests.ConnectTimeout as exc:
            raise BotUnreachable(
                f"The bot of {self.name} did not accept a connection within "
                f"{min(self.connect_timeout, read):g} s.", target=self.name) from exc
        except requests.ReadTimeout as exc:
            raise BotTimeout(f"The bot of {self.name} did not answer within {read:g} s.",
                             target=self.name) from exc
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            raise BotUnreachable(f"The bot of {self.name} is not reachable at {self.base_url} "
                                 f"({_reason(exc)}).", target=self.name) from exc
        except requests.RequestException as exc:
            raise BotError(f"Request to the bot of {self.name} failed: {_reason(exc)}.",
                           target=self.name) from exc

    def raw(self, method: str, target: str, headers: list[tuple[str, str]],
            body: bytes | None = None, *, timeout: float | None = None) -> RawResponse:
        """The gateway's hot path: one request on this bot's own keep-alive connections.

        A lean HTTP/1.1 exchange (no requests/urllib3 machinery): `target` is the path with
        query string ('/api/v1/profit?x=1'), `headers` are sent as given (the caller adds
        Authorization). Read the body with `.read()` or `.stream()`; the connection goes back
        to the pool once the body is consumed. Raises BotUnreachable / BotTimeout.
        """
        read = self.timeout if timeout is None else timeout
        if self._raw is None:
            self._raw = RawConnectionPool(self._host, self._port, self._pool_maxsize)
        return self._raw.request(self, method, self._prefix + target, headers, body,
                                 min(self.connect_timeout, read), read)

    def map_error(self, exc: BaseException, read: float, connected: bool = True) -> BotError:
        """The typed error for a socket failure on the raw transport."""
        if isinstance(exc, TimeoutError):  # socket.timeout is TimeoutError
            if not connected:
                return BotUnreachable(
                    f"The bot of {self.name} did not accept a connection within "
                    f"{min(self.connect_timeout, read):g} s.", target=self.name)
            return BotTimeout(f"The bot of {self.name} did not answer within {read:g} s.",
                              target=self.name)
        return BotUnreachable(f"The bot of {self.name} is not reachable at {self.base_url} "
                              f"({_reason(exc)}).", target=self.name)

    def request(self, method: str, path: str, *, params=None, json=None,
                timeout: float | None = None) -> Any:
        """Call the bot and return its decoded JSON; raise a BotError subclass on failure."""
        resp = self.send(method, path, params=params, json=json, timeout=timeout)
        try:
            if resp.status_code >= 400:
                msg = _bot_message(resp)
                raise BotError(f"The bot of {self.name} answered {resp.status_code}: {msg}",
                               status_code=resp.status_code, bot_message=msg, target=self.name)
            try:
                return resp.json()
            except ValueError as exc:
                raise BotError(f"The bot of {self.name} sent a non-JSON answer to {path}.",
                               status_code=resp.status_code, target=self.name) from exc
        except requests.exceptions.ChunkedEncodingError as exc:  # pragma: no cover - rare
            raise BotUnreachable(f"The bot of {self.name} closed the connection mid-answer.",
                                 target=self.name) from exc

    def get(self, path: str, params: dict | None = None, timeout: float | None = None) -> Any:
        """GET an API path; decoded JSON."""
        return self.request("GET", path, params=params, timeout=timeout)

    def post(self, path: str, json: Any = None, timeout: float | None = None) -> Any:
        """POST an API path with a JSON body; decoded JSON."""
        return self.request("POST", path, json=json, timeout=timeout)

    def delete(self, path: str, timeout: float | None = None) -> Any:
        """DELETE an API path; decoded JSON."""
        return self.request("DELETE", path, timeout=timeout)

    # --------------------------------------------------------------------------- endpoints

    def ping(self, timeout: float | None = None) -> bool:
        """True when the bot's API answers /ping with pong; raises when it cannot be reached."""
        resp = self.send("GET", "ping", timeout=timeout, auth=False)
        if resp.status_code != 200:
            raise BotError(f"The bot of {self.name} answered {resp.status_code} to ping.",
                           status_code=resp.status_code, target=self.name)
        try:
            return resp.json().get("status") == "pong"
        except ValueError:
            return False

    def status(self) -> list[dict]:
        """Open trades."""
        return self.get("status")

    def profit(self) -> dict:
        """Profit summary."""
        return self.get("profit")

    def balance(self) -> dict:
        """Wallet balances (dry-run wallet)."""
        return self.get("balance")

    def trades(self, limit: int | None = None, offset: int | None = None) -> dict:
        """Closed and open trades, newest last (FreqTrade caps a page at 500)."""
        params = {k: v for k, v in (("limit", limit), ("offset", offset)) if v is not None}
        return self.get("trades", params=params or None)

    def logs(self, limit: int | None = None) -> dict:
        """The bot's recent log lines."""
        return self.get("logs", params={"limit": limit} if limit else None)

    def health(self) -> dict:
        """last_process timestamps: a liveness probe for the bot's trading loop."""
        return self.get("health")

    def version(self) -> dict:
        """The bot's FreqTrade version."""
        return self.get("version")

    def show_config(self) -> dict:
        """The bot's running configuration (as FreqTrade exposes it)."""
        return self.get("show_config")

    def start(self) -> dict:
        """Start trading (a bot that is in the stopped state)."""
        return self.post("start")

    def stop(self) -> dict:
        """Stop trading (the process and its API keep running)."""
        return self.post("stop")

    def reload_config(self) -> dict:
        """Reload the bot's configuration (closes its message websockets)."""
        return self.post("reload_config")


def _reason(exc: Exception) -> str:
    """A short human reason for a requests exception."""
    text = str(exc)
    for needle, reason in (("Connection refused", "connection refused"),
                           ("Connection reset", "connection reset"),
                           ("RemoteDisconnected", "connection closed by the bot"),
                           ("Connection aborted", "connection aborted"),
                           ("Name or service not known", "unknown host")):
        if needle in text:
            return reason
    return text[:200]


def _default_timeouts() -> tuple[float, float]:
    """(read, connect) timeouts from system.gateway when an app context exists."""
    try:
        from flask import has_app_context

        if has_app_context():
            gw = current_settings().system.gateway
            return float(gw.timeout), float(gw.connect_timeout)
    except Exception:  # noqa: BLE001, S110 - fall back to the defaults outside an app
        pass
    return DEFAULT_TIMEOUT, DEFAULT_CONNECT_TIMEOUT


# ------------------------------------------------------------------- raw keep-alive transport

_MAX_HEAD = 64 * 1024
_FRESH_IDLE = 1.0  # seconds an idle kept-alive connection is reused without a liveness check
_IDEMPOTENT = frozenset(("GET", "HEAD", "OPTIONS", "PUT", "DELETE"))


class _StaleConnection(Exception):
    """A kept-alive connection that the bot had closed: safe to retry on a fresh one."""


class _Conn:
    """A socket with a receive buffer."""

    __slots__ = ("sock", "buf", "timeout", "idle_since")

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.timeout: float | None = None
        self.idle_since = 0.0

    def set_timeout(self, seconds: float) -> None:
        if self.timeout != seconds:
            self.sock.settimeout(seconds)
            self.timeout = seconds

    def fill(self) -> bool:
        data = self.sock.recv(65536)
        if not data:
            return False
        self.buf += data
        return True

    def head(self) -> bytes:
        """Everything up to the blank line that ends the response head."""
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end >= 0:
                head, self.buf = self.buf[:end], self.buf[end + 4:]
                return head
            if len(self.buf) > _MAX_HEAD:
                raise ValueError("response head too large")
            if not self.fill():
                if self.buf:
                    raise ConnectionResetError("the bot closed the connection mid-answer")
                raise _StaleConnection("connection closed before an answer")

    def line(self) -> bytes:
        while True:
            end = self.buf.find(b"\r\n")
            if end >= 0:
                line, self.buf = self.buf[:end], self.buf[end + 2:]
                return line
            if len(self.buf) > _MAX_HEAD:
                raise ValueError("chunk header too large")
            if not self.fill():
                raise ConnectionResetError("the bot closed the connection mid-answer")

    def take(self, limit: int) -> bytes:
        if not self.buf and not self.fill():
            return b""
        data, self.buf = self.buf[:limit], self.buf[limit:]
        return data

    def alive(self) -> bool:
        """False when the bot closed this idle connection (or sent something unasked)."""
        if self.buf:
            return False
        try:
            self.set_timeout(0.0)
            self.sock.recv(1, socket.MSG_PEEK)  # b"" (closed) or data: unusable either way
            return False
        except BlockingIOError:
            return True
        except OSError:
            return False

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class RawResponse:
    """A bot's answer on a pooled raw connection: status, reason, headers, then the body."""

    __slots__ = ("status", "reason", "headers", "_conn", "_pool", "_client", "_read_timeout",
                 "_left", "_chunked", "_until_close", "_keep")

    def __init__(self, status: int, reason: str, headers: list[tuple[str, str]], conn: _Conn,
                 pool: RawConnectionPool, client: BotClient, read_timeout: float):
        self.status = status
        self.reason = reason
        self.headers = headers  # [(name, value)] as the bot sent them
        self._conn: _Conn | None = conn
        self._pool = pool
        self._client = client
        self._read_timeout = read_timeout
        self._left = 0  # body bytes still to read (Content-Length framing)
        self._chunked = False
        self._until_close = False
        self._keep = True

    @property
    def complete(self) -> bool:
        """True once the body has been read to its end (the connection is released)."""
        return self._conn is None

    def header(self, name: str) -> str | None:
        """The first header of that name (case-insensitive)."""
        name = name.lower()
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    def read(self) -> bytes:
        """The whole body; the connection goes back to the pool."""
        return b"".join(self.stream())

    def stream(self, chunk_size: int = 65536):
        """The body in pieces as it arrives (chunked encoding decoded); raises BotError."""
        conn = self._conn
        if conn is None:
            return
        try:
            if self._chunked:
                yield from self._chunks(conn, chunk_size)
            elif self._until_close:
                while data := conn.take(chunk_size):
                    yield data
            else:
                while self._left > 0:
                    data = conn.take(min(chunk_size, self._left))
                    if not data:
                        raise ConnectionResetError("the bot closed the connection mid-answer")
                    self._left -= len(data)
                    yield data
        except (OSError, ValueError) as exc:
            self.close()
            raise self._client.map_error(exc, self._read_timeout) from exc
        self._done()

    def _chunks(self, conn: _Conn, chunk_size: int):
        while True:
            size = int(conn.line().split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while conn.line():  # optional trailers, then the empty line
                    pass
                return
            while size > 0:
                data = conn.take(min(chunk_size, size))
                if not data:
                    raise ConnectionResetError("the bot closed the connection mid-chunk")
                size -= len(data)
                yield data
            conn.line()  # the CRLF after each chunk

    def _done(self) -> None:
        """The body was read to its end: keep the connection alive if the bot allows."""
        conn, self._conn = self._conn, None
        if conn is not None:
            if self._keep and not self._until_close:
                self._pool.put(conn)
            else:
                conn.close()

    def close(self) -> None:
        """Drop the connection (use when the body will not be read to its end)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


class RawConnectionPool:
    """Idle keep-alive connections to one bot, reused last-in first-out."""

    def __init__(self, host: str, port: int, maxsize: int):
        self.host = host
        self.port = port
        self.maxsize = maxsize
        self.idle: deque[_Conn] = deque()
        self.host_header = f"Host: {host}:{port}\r\n"

    def put(self, conn: _Conn) -> None:
        """Keep an idle connection (or close it when enough are kept)."""
        if len(self.idle) < self.maxsize:
            conn.idle_since = time.monotonic()
            self.idle.append(conn)
        else:
            conn.close()

    def _get(self) -> _Conn | None:
        """The most recently used idle connection that is still open.

        One idle for under a second is taken as is (bots keep connections alive for 5 s and a
        stale one is retried anyway); an older one is checked for a close from the bot first.
        """
        now = time.monotonic()
        while True:
            try:
                conn = self.idle.pop()
            except IndexError:
                return None
            if now - conn.idle_since < _FRESH_IDLE or conn.alive():
                return conn
            conn.close()

    def _connect(self, connect_timeout: float) -> _Conn:
        sock = socket.create_connection((self.host, self.port), timeout=connect_timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = _Conn(sock)
        conn.timeout = connect_timeout
        return conn

    def request(self, client: BotClient, method: str, target: str,
                headers: list[tuple[str, str]], body: bytes | None, connect_timeout: float,
                read_timeout: float) -> RawResponse:
        """Send one request and read the response head; retry once on a stale connection
        (idempotent methods only: a POST may have reached the bot)."""
        lines = [f"{method} {target} HTTP/1.1\r\n", self.host_header]
        lines += [f"{k}: {v}\r\n" for k, v in headers]
        if body is not None:
            lines.append(f"Content-Length: {len(body)}\r\n")
        lines.append("\r\n")
        payload = "".join(lines).encode("latin-1")
        if body:
            payload += body
        for attempt in (0, 1):
            conn = self._get() if attempt == 0 else None
            reused = conn is not None
            connected = reused
            try:
                if conn is None:
                    conn = self._connect(connect_timeout)
                    connected = True
                conn.set_timeout(read_timeout)
                conn.sock.sendall(payload)
                head = conn.head()
            except (OSError, ValueError, _StaleConnection) as exc:
                if conn is not None:
                    conn.close()
                if reused and method in _IDEMPOTENT and not isinstance(exc, TimeoutError):
                    continue
                if isinstance(exc, _StaleConnection):
                    raise BotUnreachable(f"The bot of {client.name} closed the connection "
                                         "without answering.", target=client.name) from exc
                raise client.map_error(exc, read_timeout, connected=connected) from exc
            try:
                return self._response(client, method, head, conn, read_timeout)
            except ValueError as exc:
                conn.close()
                raise BotError(f"The bot of {client.name} sent a malformed answer.",
                               target=client.name) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _response(self, client: BotClient, method: str, head: bytes, conn: _Conn,
                  read_timeout: float) -> RawResponse:
        lines = head.decode("latin-1").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        code, _, reason = rest.partition(" ")
        headers = []
        length = None
        chunked = False
        keep = version != "HTTP/1.0"
        for line in lines[1:]:
            name, _, value = line.partition(":")
            value = value.strip()
            headers.append((name, value))
            low = name.lower()
            if low == "content-length":
                length = int(value)
            elif low == "transfer-encoding":
                chunked = "chunked" in value.lower()
            elif low == "connection":
                keep = value.lower() != "close"
        resp = RawResponse(int(code), reason, headers, conn, self, client, read_timeout)
        resp._keep = keep
        if method == "HEAD" or resp.status in (204, 304) or resp.status < 200:
            resp._done()
        elif chunked:
            resp._chunked = True
        elif length is not None:
            resp._left = length
            if length == 0:
                resp._done()
        else:
            resp._until_close = True
        return resp

    def close(self) -> None:
        """Close every idle connection."""
        while self.idle:
            self.idle.pop().close()


# ---------------------------------------------------------------------------- client pool

_POOL_MAX = 2048
_pool: OrderedDict[tuple, BotClient] = OrderedDict()
_pool_lock = threading.Lock()
_pool_pid = os.getpid()


def pooled_client(host: str, port: int, username: str, password: str, *,
                  timeout: float = DEFAULT_TIMEOUT,
                  connect_timeout: float = DEFAULT_CONNECT_TIMEOUT, name: str = "") -> BotClient:
    """A BotClient reused across calls (and its keep-alive connections), per process.

    Keyed by address and credentials, so a restarted bot with new credentials gets a fresh
    client. The pool is dropped after a fork (a forked child) and holds at most 2048 clients.
    """
    global _pool_pid
    key = (host, int(port), username, password, float(timeout), float(connect_timeout), name)
    with _pool_lock:
        if _pool_pid != os.getpid():
            _pool.clear()  # sockets inherited from the parent must not be shared
            _pool_pid = os.getpid()
        client = _pool.get(key)
        if client is not None:
            _pool.move_to_end(key)
            return client
        client = BotClient(host=host, port=port, username=username, password=password,
                           timeout=timeout, connect_timeout=connect_timeout, name=name)
        _pool[key] = client
        while len(_pool) > _POOL_MAX:
            _, old = _pool.popitem(last=False)
            old.close()
        return client


def forget_clients(host: str | None = None, port: int | None = None) -> None:
    """Close and drop pooled clients (all, or those of one host:port)."""
    with _pool_lock:
        for key in list(_pool):
            if (host is None or key[0] == host) and (port is None or key[1] == port):
                _pool.pop(key).close()


# ------------------------------------------------------------------------------- fetch_all


@dataclass
class FetchResult:
    """One bot's answer in a fetch_all sweep."""

    key: Any
    ok: bool
    data: Any = None
    error: BotError | None = None
    elapsed: float = 0.0

    @property
    def status(self) -> int:
        """200 when ok, else the HTTP status the error maps to (502/504/…)."""
        return 200 if self.ok else http_status(self.error)


def _as_target(item) -> tuple[Any, BotClient | None, BotError | None]:
    """(key, client, error) from a BotClient, a (key, BotClient) pair or a Strategy row."""
    if isinstance(item, BotClient):
        return item.name, item, None
    if isinstance(item, tuple) and len(item) == 2:
        return item[0], item[1], None
    key = getattr(item, "id", item)
    try:
        return key, BotClient.for_strategy(item), None
    except BotError as exc:
        return key, None, exc


def fetch_all(targets: Iterable, path: str, timeout: float = 5.0, *,
              concurrency: int = 64, params: dict | None = None) -> list[FetchResult]:
    """GET `path` from many bots at once, each bounded by `timeout`; results in input order.

    `targets` holds BotClients, (key, BotClient) pairs or Strategy rows (key = strategy id).
    Uses gevent greenlets in monkey-patched processes and a thread pool elsewhere (RQ workers,
    CLI). A bot that fails or is too slow gives a FetchResult with ok=False and its error;
    the whole sweep ends within about timeout + connect timeout even if a bot hangs.
    """
    prepared = [_as_target(t) for t in targets]
    results: list[FetchResult | None] = [None] * len(prepared)

    def one(index: int) -> None:
        key, client, err = prepared[index]
        start = time.monotonic()
        if err is not None:
            results[index] = FetchResult(key, False, error=err)
            return
        try:
            data = client.get(path, params=params, timeout=timeout)
            results[index] = FetchResult(key, True, data=data,
                                         elapsed=time.monotonic() - start)
        except BotError as exc:
            results[index] = FetchResult(key, False, error=exc, elapsed=time.monotonic() - start)
        except Exception as exc:  # noqa: BLE001 - one broken bot must not end the sweep
            log.exception("fetch_all: unexpected error from %s", key)
            results[index] = FetchResult(key, False, error=BotError(str(exc), target=str(key)),
                                         elapsed=time.monotonic() - start)

    if not prepared:
        return []
    width = max(1, min(concurrency, len(prepared)))
    rounds = -(-len(prepared) // width)
    budget = (timeout + DEFAULT_CONNECT_TIMEOUT + 1.0) * rounds
    run_concurrently(len(prepared), one, width, budget, "fetch_all")
    for i, result in enumerate(results):
        if result is None:
            key = prepared[i][0]
            results[i] = FetchResult(key, False, error=BotTimeout(
                f"No answer from {key} within {timeout:g} s.", target=str(key)))
    return results  # type: ignore[return-value]
