"""Chat bots with thin clients of our own: Feishu/Lark, WeCom group bot, DingTalk, Telegram,
Discord.

Own clients (not apprise) because each needs something apprise does not give: Feishu's signed
webhooks, a base URL that can point at a relay (or a test receiver) for every one of them, and
the receiver's own retry_after on a 429 (Telegram `parameters.retry_after`, Discord's body),
handed to our dispatcher instead of a sleep inside the library.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from urllib.parse import quote_plus

from app.notifications.channels.base import (
    HttpChannel,
    Message,
    SendError,
    SendResult,
    json_body,
    mask,
    mask_url,
    retry_after_header,
)


def truncate_bytes(text: str, limit: int) -> str:
    """Cut text so its UTF-8 encoding fits in `limit` bytes (WeCom counts bytes)."""
    encoded = text.encode()
    if len(encoded) <= limit:
        return text
    return encoded[: limit - 3].decode(errors="ignore") + "…"


def feishu_sign(timestamp: str, secret: str) -> str:
    """Feishu/Lark custom-bot signature: base64(HMAC-SHA256(key="<ts>\\n<secret>", msg=""))."""
    key = f"{timestamp}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()


def dingtalk_sign(timestamp_ms: str, secret: str) -> str:
    """DingTalk robot signature: urlencode(base64(HMAC-SHA256(secret, "<ts_ms>\\n<secret>")))."""
    digest = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(),
                      hashlib.sha256).digest()
    return quote_plus(base64.b64encode(digest).decode())


class FeishuChannel(HttpChannel):
    """Feishu custom bot webhook, signed when the bot has a signature secret."""

    type = "feishu"
    service = "Feishu"
    # Codes that no retry can fix: bad token, signature, IP allow-list, keyword filter, request.
    PERMANENT_CODES = frozenset({9499, 19001, 19002, 19021, 19022, 19024})

    def send(self, message: Message, parts_done: tuple[str, ...] = ()) -> SendResult:
        """POST a text message; Feishu answers {"code": 0} when it took it."""
        payload: dict = {"msg_type": "text", "content": {"text": message.text(limit=19000)}}
        if self.settings.secret:
            timestamp = str(int(time.time()))
            payload["timestamp"] = timestamp
            payload["sign"] = feishu_sign(timestamp, self.settings.secret)
        response = self.post_json(self.url(self.settings.webhook_url), payload)
        self.check_status(response, self.service)
        data = json_body(response, self.service)
        code = data.get("code", data.get("StatusCode", 0))
        if code not in (0, None):
            text = data.get("msg") or data.get("StatusMessage") or ""
            raise SendError(f"{self.service} refused the message: code {code} {text}".strip(),
                            status_code=response.status_code,
                            permanent=code in self.PERMANENT_CODES)
        return SendResult(response.status_code)

    def target(self) -> str:
        """The webhook URL, token masked; 'signed' when a secret is set."""
        return mask_url(self.settings.webhook_url) + (" (signed)" if self.settings.secret else "")


class LarkChannel(FeishuChannel):
    """Lark (Feishu outside China): the same bot API on open.larksuite.com."""

    type = "lark"
    service = "Lark"


class WeComBotChannel(HttpChannel):
    """WeCom (WeChat Work) group robot: /cgi-bin/webhook/send?key=…"""

    type = "wecom_bot"
    PERMANENT_CODES = frozenset({93000, 40008, 44004, 40058})  # bad key, type, empty text

    def send(self, message: Message, parts_done: tuple[str, ...] = ()) -> SendResult:
        """POST a text message (at most 2048 bytes); WeCom answers {"errcode": 0}."""
        payload = {"msgtype": "text", "text": {"content": truncate_bytes(message.text(), 2048)}}
        response = self.post_json(self.url(self.settings.webhook_url), payload)
        self.check_status(response, "WeCom")
        data = json_body(response, "WeCom")
        code = data.get("errcode", 0)
        if code != 0:
            raise SendError(f"WeCom refused the message: errcode {code} {data.get('errmsg', '')}",
                            status_code=response.status_code,
                            permanent=code in self.PERMANENT_CODES)
        return SendResult(response.status_code)

    def target(self) -> str:
        """The webhook URL with the key masked."""
        return mask_url(self.settings.webhook_url)


class DingTalkChannel(HttpChannel):
    """DingTalk custom robot, signed (timestamp + sign query parameters) with the secret."""

    type = "dingtalk"
    PERMANENT_CODES = frozenset({300001, 310000, 400101, 400102})  # token, sign/keyword/IP

    def send(self, message: Message, parts_done: tuple[str, ...] = ()) -> SendResult:
        """POST a text message to the robot URL; DingTalk answers {"errcode": 0}."""
        url = self.url(self.settings.webhook_url)
        if self.settings.secret:
            timestamp = str(int(time.time() * 1000))
            joiner = "&" if "?" in url else "?"
            sign = dingtalk_sign(timestamp, self.settings.secret)
            url += f"{joiner}timestamp={timestamp}&sign={sign}"
        payload = {"msgtype": "text", "text": {"content": message.text(limit=18000)}}
        response = self.post_json(url, payload)
        self.check_status(response, "DingTalk")
        data = json_body(response, "DingTalk")
        code = data.get("errcode", 0)
        if code != 0:
            raise SendError(f"DingTalk refused the message: errcode {code} "
                            f"{data.get('errmsg', '')}", status_code=response.status_code,
                            permanent=code in self.PERMANENT_CODES)
        return SendResult(response.status_code)

    def target(self) -> str:
        """The robot URL with the access token masked; 'signed' when a secret is set."""
        return mask_url(self.settings.webhook_url) + (" (signed)" if self.settings.secret else "")


class TelegramChannel(HttpChannel):
    """Telegram Bot API sendMessage; a 429 hands parameters.retry_after to the dispatcher."""

    type = "telegram"
    API = "https://api.telegram.org"

    def send(self, message: Message, parts_done: tuple[str, ...] = ()) -> SendResult:
        """POST sendMessage (plain text, at most 4096 characters)."""
        url = self.url(f"{self.API}/bot{self.settings.bot_token}/sendMessage")
        payload = {"chat_id": self.settings.chat_id, "text": message.text(limit=4096),
                   "disable_web_page_preview": True}
        response = self.post_json(url, payload)
        if response.status_code == 429:
            data = _json_or_empty(response)
            retry_after = (data.get("parameters") or {}).get("retry_after")
            if retry_after is None:
                retry_after = retry_after_header(response)
            raise SendError(f"Telegram rate limit: {data.get('description', 'Too Many Requests')}",
                            status_code=429, retry_after=_seconds(retry_after))
        data = _json_or_empty(response)
        if response.status_code >= 300 or not data.get("ok", False):
            code = data.get("error_code", response.status_code)
            raise SendError(f"Telegram refused the message: {code} "
                            f"{data.get('description', response.text[:200])}",
                            status_code=response.status_code,
                            permanent=response.status_code in (400, 401, 403, 404))
        return SendResult(response.status_code)

    def target(self) -> str:
        """Chat id and the masked bot token."""
        return f"chat {self.settings.chat_id} via bot {mask(self.settings.bot_token)}"


class DiscordChannel(HttpChannel):
    """Discord webhook; a 429 hands the body's retry_after (seconds) to the dispatcher."""

    type = "discord"

    def send(self, message: Message, parts_done: tuple[str, ...] = ()) -> SendResult:
        """POST content (at most 2000 characters, no mentions)."""
        payload = {"content": message.text(limit=2000), "allowed_mentions": {"parse": []}}
        response = self.post_json(self.url(self.settings.webhook_url), payload)
        if response.status_code == 429:
            data = _json_or_empty(response)
            retry_after = data.get("retry_after")
            if retry_after is None:
                retry_after = retry_after_header(response)
            raise SendError(f"Discord rate limit ({'global' if data.get('global') else 'route'})",
                            status_code=429, retry_after=_seconds(retry_after))
        self.check_status(response, "Discord")
        return SendResult(response.status_code)

    def target(self) -> str:
        """The webhook URL with its token masked."""
        return mask_url(self.settings.webhook_url)


def _json_or_empty(response) -> dict:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _seconds(value) -> float | None:
    try:
        return max(float(value), 0.0)
    except (TypeError, ValueError):
        return None
