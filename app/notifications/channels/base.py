"""What every channel shares: the message it sends, the error it raises, the HTTP plumbing.

A channel's `send()` either returns a SendResult or raises SendError saying whether the message
certainly did not arrive (retry), will never arrive (permanent), or may have arrived
(`maybe_delivered`: the request went out and no answer came back). The dispatcher decides what
to do with each; channels never retry or sleep themselves.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

import requests
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from config.loader import ChannelSettings

USER_AGENT = "BTC-Watcher-Notifications/1.0"


@dataclass(frozen=True)
class Message:
    """One notification as a channel sends it."""

    title: str
    body: str
    link: str = ""
    priority: str = "P1"
    kind: str = "signal"
    notification_id: int = 0
    idempotency_key: str = ""
    created_at: datetime | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def text(self, limit: int | None = None) -> str:
        """Title and body as plain text, cut to `limit` characters with an ellipsis."""
        text = f"{self.title}\n{self.body}".strip()
        if limit is not None and len(text) > limit:
            text = text[: limit - 1].rstrip() + "…"
        return text


@dataclass(frozen=True)
class SendResult:
    """A successful send: the receiver's status code and a short note."""

    status_code: int | None = None
    detail: str = ""
    parts_done: tuple[str, ...] = ()


class SendError(Exception):
    """A send that did not succeed; the flags tell the dispatcher what to do next."""

    def __init__(self, message: str, *, status_code: int | None = None,
                 retry_after: float | None = None, permanent: bool = False,
                 maybe_delivered: bool = False, parts_done: tuple[str, ...] = ()):
        super().__init__(message)
        self.status_code = status_code
        self.retry_after = retry_after
        self.permanent = permanent
        self.maybe_delivered = maybe_delivered
        self.parts_done = parts_done


class Channel:
    """A notification channel of one configured name; subclasses implement send()."""

    type: ClassVar[str] = ""
    via_apprise: ClassVar[bool] = False
    # True when resending the same message cannot make the receiver show it twice.
    dedupes: ClassVar[bool] = False
    # Requests one send may make (the dispatcher's lease covers all of them).
    requests_per_send: ClassVar[int] = 1

    def __init__(self, name: str, settings: ChannelSettings, redis=None):
        self.name = name
        self.settings = settings
        self.redis = redis

    def send(self, message: Message, parts_done: tuple[str, ...] = ()) -> SendResult:
        """Deliver the message or raise SendError."""
        raise NotImplementedError

    def lease_seconds(self) -> int:
        """How long a worker may own one send of this channel before others may take over."""
        return int(self.settings.timeout * 2 * self.requests_per_send) + 5

    def target(self) -> str:
        """Where it sends, with secrets masked, for pages and logs."""
        return self.type


def with_base_url(url: str, base_url: str) -> str:
    """Swap the scheme and host of a vendor URL for a relay's (its path is prefixed)."""
    if not base_url:
        return url
    parts, base = urlsplit(url), urlsplit(base_url)
    return urlunsplit((base.scheme, base.netloc, base.path.rstrip("/") + parts.path,
                       parts.query, parts.fragment))


def mask(value: str, keep: int = 4) -> str:
    """A secret shown as its first characters and dots; short ones fully hidden."""
    if not value:
        return ""
    if value.startswith("${") and value.endswith("}"):
        return value  # an environment variable reference is not the secret
    return value[:keep] + "••••" if len(value) > 2 * keep + 2 else "••••"


def mask_url(url: str) -> str:
    """A webhook URL with its token masked: the host and path stay readable."""
    if not url:
        return ""
    parts = urlsplit(url)
    path = parts.path
    head, _, last = path.rpartition("/")
    if last:
        path = f"{head}/{mask(last)}"
    query = "&".join(f"{k}={mask(v)}" if v else k for k, _, v in
                     (p.partition("=") for p in parts.query.split("&") if p))
    return urlunsplit((parts.scheme, parts.netloc, path, query, ""))


class HttpChannel(Channel):
    """A channel that talks HTTP with requests: one session, a timeout, typed errors."""

    # HTTP status codes after which a retry can help.
    RETRYABLE = frozenset({408, 409, 425, 429, 500, 502, 503, 504})

    def __init__(self, name: str, settings: ChannelSettings, redis=None):
        super().__init__(name, settings, redis)
        self.session = requests.Session()
        self.session.headers["User-Agent"] = USER_AGENT

    def url(self, vendor_url: str) -> str:
        """The vendor URL with the configured base URL applied."""
        return with_base_url(vendor_url, self.settings.base_url)

    def request(self, method: str, url: str, **kwargs) -> requests.Response:
        """One HTTP request; network failures become SendError (maybe_delivered if sent)."""
        timeout = self.settings.timeout
        kwargs.setdefault("timeout", (min(timeout, 5.0), timeout))
        kwargs.setdefault("verify", self.settings.verify_tls)
        kwargs.setdefault("allow_redirects", False)
        try:
            return self.session.request(method, url, **kwargs)
        except requests.exceptions.ConnectTimeout as exc:
            raise SendError(f"connect timeout to {_host(url)}") from exc
        except requests.exceptions.ReadTimeout as exc:
            raise SendError(f"no answer from {_host(url)} within {timeout:g} s; the message "
                            "may have arrived", maybe_delivered=True) from exc
        except requests.exceptions.ConnectionError as exc:
            if _not_sent(exc):
                raise SendError(f"cannot connect to {_host(url)}: {_reason(exc)}") from exc
            raise SendError(f"connection to {_host(url)} broke after sending: "
                            f"{_reason(exc)}; the message may have arrived",
                            maybe_delivered=True) from exc
        except requests.exceptions.RequestException as exc:
            raise SendError(f"bad request to {_host(url)}: {exc}", permanent=True) from exc

    def post_json(self, url: str, payload: dict, headers: dict | None = None,
                  ) -> requests.Response:
        """POST a JSON body (UTF-8, compact) and return the response."""
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        all_headers = {"Content-Type": "application/json; charset=utf-8", **(headers or {})}
        return self.request("POST", url, data=body, headers=all_headers)

    def check_status(self, response: requests.Response, service: str) -> None:
        """Raise SendError for a non-2xx answer (429 honours Retry-After)."""
        code = response.status_code
        if 200 <= code < 300:
            return
        snippet = response.text[:300].strip()
        retry_after = retry_after_header(response) if code in (429, 503) else None
        raise SendError(f"{service} answered HTTP {code}: {snippet or response.reason}",
                        status_code=code, retry_after=retry_after,
                        permanent=code not in self.RETRYABLE)


def retry_after_header(response: requests.Response) -> float | None:
    """Seconds from a Retry-After header given in seconds (dates are ignored)."""
    value = response.headers.get("Retry-After", "")
    try:
        return max(float(value), 0.0)
    except ValueError:
        return None


def json_body(response: requests.Response, service: str) -> dict:
    """The JSON object of a 2xx answer, or SendError (the receiver did take the request)."""
    try:
        data = response.json()
    except ValueError as exc:
        raise SendError(f"{service} answered HTTP {response.status_code} without JSON: "
                        f"{response.text[:200]!r}", status_code=response.status_code) from exc
    if not isinstance(data, dict):
        raise SendError(f"{service} answered with JSON that is not an object",
                        status_code=response.status_code)
    return data


def _host(url: str) -> str:
    return urlsplit(url).netloc or url


def _reason(exc: Exception) -> str:
    inner = exc.args[0] if exc.args else exc
    reason = getattr(inner, "reason", None) or inner
    return str(reason)[:200]


def _not_sent(exc: requests.exceptions.ConnectionError) -> bool:
    """True when the connection never opened, so the receiver cannot have the message."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        item = stack.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, NewConnectionError | ConnectTimeoutError | ConnectionRefusedError):
            return True
        stack += [getattr(item, "reason", None), item.__cause__, item.__context__]
        stack += [a for a in getattr(item, "args", ()) if isinstance(a, BaseException)]
    return False
