"""The streaming pass-through: `/api/strategy/<id>/<path>` → that bot's `/api/v1/<path>`.

`/api/strategy/<id>/api/v1/<path>` works too, so `FtRestClient("http://host:8080/api/strategy/7",
user, password)` and FreqUI (which add `/api/v1/…` themselves) talk to a bot unchanged.

This is the gateway's hot path, so it is a plain WSGI layer in front of the Flask app rather
than a Flask view: no request context, no routing table, no session machinery per request.
Routes and logins come from in-memory caches (see routes_cache.py, auth.py), the bot is reached
over its pooled keep-alive connections (BotClient.urlopen), the status, content type, headers
(minus hop-by-hop ones) and body bytes pass through. Everything else (websockets, the
management API) goes on to Flask.
"""

from __future__ import annotations

import json
import logging
import time
from http import HTTPStatus
from urllib.parse import quote

from app.gateway.auth import AuthFailure, GatewayAuth
from app.gateway.routes_cache import Route, RouteTable, mask
from app.runtime.bot_client import BotClient, BotError, http_status, pooled_client
from app.system.settings import refresh_if_changed

log = logging.getLogger(__name__)

PREFIX = "/api/strategy/"
API_V1 = "api/v1/"
METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"))
PUBLIC = frozenset((("GET", "ping"), ("HEAD", "ping")))
LOGIN, REFRESH = "token/login", "token/refresh"
SAFE_PATH_CHARS = "/:@!$&'()*+,;=-._~%"
SAFE_QUERY_CHARS = SAFE_PATH_CHARS + "?"
STREAM_ABOVE = 1024 * 1024  # bodies larger than this (or of unknown size) are streamed
CHUNK = 64 * 1024
SETTINGS_CHECK_EVERY = 2.0  # seconds between looks for a config reload (as the web app does)

# Request headers never forwarded to a bot: hop-by-hop ones, the caller's own credentials and
# cookies (the gateway injects the bot's), and what urllib3 sets itself.
DROP_REQUEST = frozenset((
    "HTTP_CONNECTION", "HTTP_KEEP_ALIVE", "HTTP_PROXY_AUTHENTICATE", "HTTP_PROXY_AUTHORIZATION",
    "HTTP_TE", "HTTP_TRAILER", "HTTP_TRANSFER_ENCODING", "HTTP_UPGRADE", "HTTP_HOST",
    "HTTP_AUTHORIZATION", "HTTP_COOKIE", "HTTP_X_CSRFTOKEN", "HTTP_X_CSRF_TOKEN",
    "HTTP_CONTENT_LENGTH", "HTTP_CONTENT_TYPE", "HTTP_EXPECT",
))
DROP_RESPONSE = frozenset((
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
    "trailers", "transfer-encoding", "upgrade",
))

TITLES = {401: "Login required", 403: "Forbidden", 404: "Not found",
          405: "Method not allowed", 413: "Request too large", 502: "Bot unreachable",
          504: "Bot timed out"}
_REASONS = {s.value: f"{s.value} {s.phrase}" for s in HTTPStatus}


def status_line(code: int) -> str:
    """'200 OK' for a code (codes unknown to Python get a generic phrase)."""
    return _REASONS.get(code) or f"{code} Status"


def json_error(start_response, code: int, message: str, extra_headers=(), **extra):
    """A gateway error, shaped like the web app's (error/message/status) plus FreqTrade's
    `detail`, so FreqUI and freqtrade-client show the message too."""
    body = {"error": TITLES.get(code, "Error"), "message": message, "detail": message,
            "status": code}
    body.update(extra)
    data = json.dumps(body).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(data))),
               ("Cache-Control", "no-store"), *extra_headers]
    start_response(status_line(code), headers)
    return [data]


def json_ok(start_response, payload) -> list[bytes]:
    """A 200 JSON answer produced by the gateway itself (token endpoints)."""
    data = json.dumps(payload).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(data))), ("Cache-Control", "no-store")])
    return [data]


class GatewayProxy:
    """WSGI middleware: proxies /api/strategy/… to bots, passes everything else to `fallback`."""

    def __init__(self, app, fallback):
        self.app = app
        self.fallback = fallback
        self.routes = RouteTable(app, self._gateway_settings().route_cache_seconds)
        self.auth = GatewayAuth(app)
        self._clients: dict[tuple, BotClient] = {}
        self.max_body = int(app.config.get("MAX_CONTENT_LENGTH") or 2 * 1024 * 1024)

    def _gateway_settings(self):
        return self.app.extensions["btcw_settings"].settings.system.gateway

    def _refresh_settings(self) -> None:
        """Pick up a config reload announced by another process (timeouts, cache seconds)."""
        try:
            with self.app.app_context():
                refresh_if_changed()
            self.routes.ttl = self._gateway_settings().route_cache_seconds
        except Exception:  # noqa: BLE001 - keep serving with the settings we have
            log.exception("gateway: settings refresh failed")

    # ------------------------------------------------------------------ dispatch

    def __call__(self, environ, start_response):
        holder = self.app.extensions["btcw_settings"]
        if time.monotonic() - holder.checked_at >= SETTINGS_CHECK_EVERY:
            self._refresh_settings()
        path = environ.get("PATH_INFO", "")
        if not path.startswith(PREFIX) or environ.get("HTTP_UPGRADE"):
            return self.fallback(environ, start_response)
        try:
            return self.handle(environ, start_response, path)
        except Exception:
            log.exception("gateway: unexpected error for %s", path)
            return json_error(start_response, 500, "Gateway error; it has been logged.")

    def handle(self, environ, start_response, path: str):
        """Authenticate, find the route, forward, and pass the answer through."""
        method = environ["REQUEST_METHOD"]
        id_text, _, sub = path[len(PREFIX):].partition("/")
        if not id_text.isdigit():
            return json_error(start_response, 404,
                              f"Strategy id must be a number, got {id_text!r}.")
        strategy_id = int(id_text)
        if sub.startswith(API_V1):
            sub = sub[len(API_V1):]
        elif sub == "api/v1":
            sub = ""
        if method not in METHODS:
            return json_error(start_response, 405, f"Method {method} is not supported.")

        route = self.routes.get(strategy_id)
        if route is None:
            return json_error(start_response, 404, f"No strategy with id {strategy_id}.",
                              strategy_id=strategy_id)
        if method == "POST" and sub == REFRESH:  # the refresh token is its own credential
            try:
                return json_ok(start_response, self.auth.refresh_tokens(environ))
            except AuthFailure as exc:
                return json_error(start_response, exc.status, exc.message)
        if (method, sub) not in PUBLIC and method != "OPTIONS":
            try:
                caller = self.auth.identify(environ, method)
            except AuthFailure as exc:
                # Like FreqTrade: a Basic challenge only on the login route (elsewhere it
                # would make browsers running FreqUI pop up a password dialog).
                headers = [("WWW-Authenticate", 'Basic realm="BTC Watcher gateway"')] \
                    if exc.status == 401 and sub == LOGIN else []
                return json_error(start_response, exc.status, exc.message, headers,
                                  **exc.details)
            if method == "POST" and sub == LOGIN:
                return json_ok(start_response, self.auth.issue_tokens(caller))
        if not sub:
            return json_error(start_response, 404, "Give an API path after the strategy id, "
                              f"e.g. {PREFIX}{strategy_id}/ping.", strategy_id=strategy_id)
        if not route.routable:
            return json_error(start_response, 502, f"The bot of {route.label} is not running "
                              f"(status: {route.status}).", strategy_id=strategy_id)
        return self.forward(environ, start_response, route, method, sub)

    # ------------------------------------------------------------------ forwarding

    def client_for(self, route: Route) -> BotClient:
        """The pooled client of a route (one keep-alive pool per bot and per process)."""
        gw = self._gateway_settings()
        key = (route, gw.timeout, gw.connect_timeout)
        client = self._clients.get(key)
        if client is None:
            client = pooled_client(route.host or "127.0.0.1", route.port, route.username,
                                   route.password, timeout=gw.timeout,
                                   connect_timeout=gw.connect_timeout, name=route.label)
            if len(self._clients) > 4096:
                self._clients.clear()
            self._clients[key] = client
        return client

    def forward(self, environ, start_response, route: Route, method: str, sub: str):
        """Send the request to the bot and pass its answer back (streamed when large)."""
        body = self._body(environ)
        if body is False:
            return json_error(start_response, 413, f"Request body is larger than "
                              f"{self.max_body // 1024} KiB.")
        headers = [("Authorization", route.basic_header)]
        forwarded_for = environ.get("REMOTE_ADDR")
        for key, value in environ.items():
            if key[:5] == "HTTP_" and key not in DROP_REQUEST:
                if key == "HTTP_X_FORWARDED_FOR":
                    forwarded_for = f"{value}, {forwarded_for}" if forwarded_for else value
                else:
                    headers.append((key[5:].replace("_", "-").title(), value))
        if environ.get("CONTENT_TYPE"):
            headers.append(("Content-Type", environ["CONTENT_TYPE"]))
        if forwarded_for:
            headers.append(("X-Forwarded-For", forwarded_for))
        if body is None and method in ("POST", "PUT", "PATCH"):
            body = b""

        if not sub.isascii() or not sub.replace("/", "").replace("_", "").isalnum():
            sub = quote(sub, safe=SAFE_PATH_CHARS)
        target = "/api/v1/" + sub
        query = environ.get("QUERY_STRING")
        if query:
            if not query.isascii() or any(c in query for c in " \r\n\t"):
                query = quote(query, safe=SAFE_QUERY_CHARS)
            target += "?" + query

        client = self.client_for(route)
        try:
            resp = client.raw(method, target, headers, body)
            out_headers = [(k, v) for k, v in resp.headers if k.lower() not in DROP_RESPONSE]
            if resp.complete:
                start_response(status_line(resp.status), out_headers)
                return []
            length = resp.header("content-length")
            if length is not None and int(length) <= STREAM_ABOVE:
                data = mask(resp.read(), route.secrets)  # in one piece: a 502 still possible
                start_response(status_line(resp.status), out_headers)
                return [data]
        except BotError as exc:
            return self._bot_error(start_response, route, exc)
        start_response(status_line(resp.status), out_headers)
        return _Stream(resp, route)

    def _body(self, environ) -> bytes | None | bool:
        """The request body (None when there is none); False when it is too large."""
        length = environ.get("CONTENT_LENGTH")
        stream = environ["wsgi.input"]
        if length:
            try:
                size = int(length)
            except ValueError:
                return None
            if size > self.max_body:
                return False
            return stream.read(size) if size else b""
        if environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked":
            data = stream.read(self.max_body + 1)
            return False if len(data) > self.max_body else data
        return None

    def _bot_error(self, start_response, route: Route, exc: BotError):
        code = http_status(exc)
        log.warning("gateway: %s → %d: %s", route.label, code, exc.message)
        message = exc.message
        if code == 502 and "not reachable" in message:
            message = (f"The bot of {route.label} is not reachable at {route.upstream} "
                       f"({_tail(message)}). Is it running?")
        return json_error(start_response, code, message, strategy_id=route.strategy_id)


def _tail(message: str) -> str:
    """The reason in parentheses at the end of a BotClient message."""
    start = message.rfind("(")
    return message[start + 1:message.rfind(")")] if start >= 0 else message


class _Stream:
    """A WSGI body that streams a bot's answer (secrets masked across chunk boundaries) and
    always releases or drops the connection."""

    def __init__(self, resp, route: Route):
        self.resp = resp
        self.route = route

    def __iter__(self):
        secrets = self.route.secrets
        keep = max((len(s) for s in secrets), default=1) - 1
        pending = b""
        try:
            for chunk in self.resp.stream(CHUNK):
                data = mask(pending + chunk, secrets)
                # Hold back a tail that could be the start of a secret split across chunks.
                pending = data[-keep:] if keep else b""
                if len(data) > keep:
                    yield data[:len(data) - keep] if keep else data
                else:
                    pending = data
            if pending:
                yield pending
        except BotError as exc:  # headers are sent: all we can do is end the body early
            log.warning("gateway: %s failed while streaming its answer: %s", self.route.label,
                        exc.message)

    def close(self) -> None:
        """Drop the connection if the body was not read to the end (caller went away)."""
        self.resp.close()
