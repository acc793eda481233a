"""Generic JSON webhook and generic HTTP SMS gateway (own clients: our payload, our headers).

The webhook POSTs the whole notification as JSON with an `Idempotency-Key` header (the same on
every attempt), and when a secret is set an HMAC-SHA256 signature over "<timestamp>.<body>":
    X-BTCW-Timestamp: 1767580800
    X-BTCW-Signature: sha256=<hex>
The SMS gateway renders its URL and body from sandboxed Jinja templates, so any provider with
an HTTP API can be driven from config.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from app.notifications.channels.base import HttpChannel, Message, SendError, SendResult, mask_url

SMS_TEXT_LIMIT = 480  # three SMS segments
DEFAULT_SMS_BODY = '{"to": {{ to | tojson }}, "message": {{ message | tojson }}}'
_sandbox = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


def webhook_signature(secret: str, timestamp: str, body: bytes) -> str:
    """'sha256=' + hex HMAC-SHA256 of "<timestamp>.<body>" with the secret."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def webhook_payload(message: Message) -> dict:
    """The JSON a generic webhook receives."""
    return {
        "notification_id": message.notification_id,
        "idempotency_key": message.idempotency_key,
        "kind": message.kind,
        "priority": message.priority,
        "title": message.title,
        "body": message.body,
        "link": message.link,
        "created_at": message.created_at.isoformat() + "Z" if message.created_at else None,
        "data": message.data,
    }


class WebhookChannel(HttpChannel):
    """POST the notification as JSON to any URL (optionally signed)."""

    type = "webhook"

    def send(self, message: Message, parts_done: tuple[str, ...] = ()) -> SendResult:
        """POST the payload; any 2xx is success."""
        body = json.dumps(webhook_payload(message), ensure_ascii=False,
                          separators=(",", ":")).encode()
        timestamp = str(int(time.time()))
        headers = {"Content-Type": "application/json; charset=utf-8",
                   "Idempotency-Key": message.idempotency_key,
                   "X-BTCW-Timestamp": timestamp, **self.settings.headers}
        if self.settings.secret:
            headers["X-BTCW-Signature"] = webhook_signature(self.settings.secret, timestamp,
                                                            body)
        response = self.request("POST", self.url(self.settings.webhook_url), data=body,
                                headers=headers)
        self.check_status(response, "Webhook")
        return SendResult(response.status_code)

    def target(self) -> str:
        """The URL with its last path part and query values masked."""
        return mask_url(self.settings.webhook_url) + (" (signed)" if self.settings.secret else "")


def render_gateway_template(template: str, context: dict, what: str) -> str:
    """Render an SMS gateway URL or body template, or raise a permanent SendError."""
    try:
        return _sandbox.from_string(template).render(**context)
    except TemplateError as exc:
        raise SendError(f"SMS gateway {what} template: {exc}", permanent=True) from exc


class SmsGatewayChannel(HttpChannel):
    """Any HTTP SMS gateway: URL, method, headers and body from config templates."""

    type = "sms_gateway"

    def send(self, message: Message, parts_done: tuple[str, ...] = ()) -> SendResult:
        """One request to the gateway with `to` (comma-joined) and the shortened text."""
        s = self.settings
        context = {"to": ",".join(s.to), "recipients": list(s.to),
                   "message": message.text(limit=SMS_TEXT_LIMIT), "title": message.title,
                   "priority": message.priority, "idempotency_key": message.idempotency_key}
        url = render_gateway_template(s.url, context, "url")
        method = s.method.upper()
        kwargs: dict = {"headers": {"Idempotency-Key": message.idempotency_key, **s.headers}}
        if method != "GET":
            body = render_gateway_template(s.body_template or DEFAULT_SMS_BODY, context, "body")
            kwargs["data"] = body.encode()
            kwargs["headers"].setdefault("Content-Type", s.content_type)
        response = self.request(method, url, **kwargs)
        self.check_status(response, "SMS gateway")
        return SendResult(response.status_code)

    def target(self) -> str:
        """Gateway URL (masked) and recipients."""
        return f"{mask_url(self.settings.url)} → {', '.join(self.settings.to) or '(in URL)'}"
