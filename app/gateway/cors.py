"""The gateway owns CORS for everything under it (FreqUI served from another origin).

The outermost WSGI layer of the gateway. A browser request carries `Origin`; the origin is
allowed when it is the gateway's own, the web app's (`system.web.public_url`: its "Open in
FreqUI" form posts here) or listed in `system.security.cors_origins` (read on each request, so
a config reload applies at once — no bot restart: bots never see a preflight).

- A preflight (OPTIONS with Access-Control-Request-Method) from an allowed origin is answered
  here, 204 with the allowed methods and the requested headers; never passed on to a bot.
- Any other request from an allowed origin goes on; its answer — proxied from a bot or made by
  the gateway itself (login, refresh, 401, 404, 502, 504) — gets Access-Control-Allow-Origin for
  that origin with credentials, and whatever Access-Control-* headers a bot sent are dropped so
  nothing is doubled.
- An origin that is not allowed gets a 403 naming it and the config key, with no CORS headers
  and without the request reaching a bot (websocket upgrades included: a page on another site
  cannot open a bot's message stream with the user's cookie).
Requests without `Origin` (freqtrade-client, curl, same-origin GETs) pass untouched.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

ALLOW_METHODS = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
DEFAULT_HEADERS = "Authorization, Content-Type, X-CSRFToken"
MAX_AGE = "600"
_HEADER_LIST = re.compile(r"^[A-Za-z0-9\-, ]{0,512}$")


def _own_origin(environ: dict) -> str:
    scheme = environ.get("HTTP_X_FORWARDED_PROTO") or environ.get("wsgi.url_scheme", "http")
    host = environ.get("HTTP_X_FORWARDED_HOST") or environ.get("HTTP_HOST", "")
    return f"{scheme.split(',')[0].strip()}://{host.split(',')[0].strip()}"


def _origin_of(url: str) -> str:
    """scheme://host[:port] of a URL (a configured origin is one already)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else url.rstrip("/")


class GatewayCors:
    """WSGI middleware: answers preflights, adds CORS headers, refuses other origins."""

    def __init__(self, inner, allowed: Callable[[], Iterable[str]]):
        self.inner = inner
        self.allowed = allowed

    def origin_allowed(self, origin: str, environ: dict) -> bool:
        """The gateway's own origin, or one listed in system.security.cors_origins."""
        origin = origin.rstrip("/")
        return origin == _own_origin(environ) or origin in {_origin_of(o) for o in
                                                             self.allowed()}

    def __call__(self, environ, start_response):
        origin = environ.get("HTTP_ORIGIN")
        if not origin:
            return self.inner(environ, start_response)
        if not self.origin_allowed(origin, environ):
            return self._refuse(start_response, origin)
        cors = [("Access-Control-Allow-Origin", origin),
                ("Access-Control-Allow-Credentials", "true"), ("Vary", "Origin")]
        if (environ.get("REQUEST_METHOD") == "OPTIONS"
                and environ.get("HTTP_ACCESS_CONTROL_REQUEST_METHOD")):
            requested = environ.get("HTTP_ACCESS_CONTROL_REQUEST_HEADERS", "")
            headers = requested if requested and _HEADER_LIST.match(requested) else \
                DEFAULT_HEADERS
            start_response("204 No Content", [
                *cors, ("Access-Control-Allow-Methods", ALLOW_METHODS),
                ("Access-Control-Allow-Headers", headers), ("Access-Control-Max-Age", MAX_AGE),
                ("Content-Length", "0")])
            return []

        def with_cors(status, headers, exc_info=None):
            kept = [(k, v) for k, v in headers if not k.lower().startswith("access-control-")
                    and not (k.lower() == "vary" and v.strip().lower() == "origin")]
            return start_response(status, [*kept, *cors], exc_info)

        return self.inner(environ, with_cors)

    @staticmethod
    def _refuse(start_response, origin: str):
        message = (f"Origin {origin[:200]} is not allowed to call the gateway; add it to "
                   f"system.security.cors_origins in config/system.yml.")
        body = json.dumps({"error": "Forbidden", "message": message, "detail": message,
                           "status": 403}).encode()
        start_response("403 Forbidden", [("Content-Type", "application/json"),
                                         ("Content-Length", str(len(body))),
                                         ("Cache-Control", "no-store"), ("Vary", "Origin")])
        return [body]
