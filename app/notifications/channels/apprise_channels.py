"""Channels that go through apprise: email (SMTP), SMS providers, and any other apprise URL.

Apprise does these well: SMTP with STARTTLS/SSL and MIME, and dozens of SMS providers (Twilio,
Vonage, Plivo, SMSEagle, ...) behind one URL format. Its own pacing is switched off
(`request_rate_per_sec = 0`): our dispatcher paces and retries. Apprise reports only success or
failure, so its log lines at WARNING and above become the stored error text.

A channel with several apprise URLs sends to each; the ones that succeeded are remembered as
`parts_done` so a retry only repeats the ones that failed.
"""

from __future__ import annotations

import logging
from urllib.parse import quote, urlencode

from app.notifications.channels.base import Channel, Message, SendError, SendResult

DEFAULT_PORTS = {"starttls": 587, "ssl": 465, "none": 25}
APPRISE_MODES = {"starttls": "starttls", "ssl": "ssl", "none": "insecure"}


def _instantiate(url: str, timeout: float):
    import apprise

    plugin = apprise.Apprise.instantiate(url)
    if plugin is None:
        return None
    plugin.request_rate_per_sec = 0  # no sleeping between requests: the dispatcher paces
    plugin.socket_connect_timeout = min(timeout, 5.0)
    plugin.socket_read_timeout = timeout
    return plugin


def private_url(url: str) -> str:
    """An apprise URL as apprise prints it with privacy on (secrets masked)."""
    plugin = _instantiate(url, 5.0)
    if plugin is None:
        return "(not a valid apprise URL)"
    return plugin.url(privacy=True)


class AppriseChannel(Channel):
    """Any apprise URLs (`urls`); the `sms` type is the same for apprise's SMS providers."""

    type = "apprise"
    via_apprise = True
    text_limit: int | None = None

    @property
    def requests_per_send(self) -> int:  # type: ignore[override]
        """One request per apprise URL."""
        return max(len(self.apprise_urls()), 1)

    def apprise_urls(self) -> list[str]:
        """The apprise URLs this channel sends to."""
        return list(self.settings.urls)

    def extra_query(self, message: Message) -> dict[str, str]:
        """Query arguments added to every URL for this message (none by default)."""
        return {}

    def send(self, message: Message, parts_done: tuple[str, ...] = ()) -> SendResult:
        """Notify every URL not yet done; raise SendError naming the ones that failed."""
        import apprise

        done = list(parts_done)
        errors = []
        for index, url in enumerate(self.apprise_urls()):
            part = str(index)
            if part in done:
                continue
            extra = self.extra_query(message)
            if extra:
                url += ("&" if "?" in url else "?") + urlencode(extra)
            plugin = _instantiate(url, self.settings.timeout)
            if plugin is None:
                raise SendError(f"URL #{index + 1} is not a valid apprise URL",
                                permanent=True, parts_done=tuple(done))
            body = message.body
            title = message.title
            if self.text_limit:
                body, title = message.text(limit=self.text_limit), ""
            with apprise.LogCapture(level=logging.WARNING) as captured:
                ok = plugin.notify(body=body or title, title=title)
            if ok:
                done.append(part)
            else:
                detail = " ".join(captured.getvalue().split())[:400] or "apprise reported failure"
                errors.append(f"{plugin.url(privacy=True)}: {detail}")
        if errors:
            raise SendError("; ".join(errors), parts_done=tuple(done))
        return SendResult(detail=f"{len(done)} apprise URL(s)", parts_done=tuple(done))

    def target(self) -> str:
        """The URLs with apprise's own masking."""
        return ", ".join(private_url(u) for u in self.apprise_urls())


class AppriseSmsChannel(AppriseChannel):
    """SMS through any of apprise's SMS providers (Twilio, Vonage, SMSEagle, ...)."""

    type = "sms"
    text_limit = 480


class EmailChannel(AppriseChannel):
    """Email over SMTP (STARTTLS, SSL or plain), through apprise's email plugin."""

    type = "email"

    def apprise_urls(self) -> list[str]:
        """One mailto:// URL built from host, port, security, credentials, from and to."""
        s = self.settings
        port = s.port or DEFAULT_PORTS[s.security]
        schema = "mailto" if s.security == "none" else "mailtos"
        auth = ""
        if s.username:
            auth = f"{quote(s.username, safe='')}:{quote(s.password, safe='')}@"
        query = {"smtp": s.host, "from": s.from_addr, "to": ",".join(s.to),
                 "mode": APPRISE_MODES[s.security], "verify": "yes" if s.verify_tls else "no",
                 "rto": f"{s.timeout:g}", "cto": f"{min(s.timeout, 5.0):g}"}
        return [f"{schema}://{auth}{s.host}:{port}/?{urlencode(query)}"]

    def extra_query(self, message: Message) -> dict[str, str]:
        """A header carrying the delivery's idempotency key (for the receiving side)."""
        return {"+X-BTCW-Idempotency-Key": message.idempotency_key} if \
            message.idempotency_key else {}

    def target(self) -> str:
        """Server and recipients; the password never shown."""
        s = self.settings
        port = s.port or DEFAULT_PORTS[s.security]
        who = f" as {s.username}" if s.username else ""
        return f"{s.host}:{port} ({s.security}){who} → {', '.join(s.to)}"
