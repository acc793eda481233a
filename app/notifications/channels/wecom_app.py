"""WeCom (WeChat Work) application messages: gettoken, then message/send.

The access token is cached in Redis (shared by every worker and work horse) until shortly before
it expires; a send that WeCom rejects for an expired or invalid token fetches a fresh one and
tries once more. Messages ask WeCom's duplicate check, so resending the same text within
`DUPLICATE_CHECK_SECONDS` shows it once: that makes a resend after an unknown outcome safe.
"""

from __future__ import annotations

import hashlib
import logging

from redis.exceptions import RedisError

from app.notifications.channels.base import (
    HttpChannel,
    Message,
    SendError,
    SendResult,
    json_body,
    mask,
)
from app.notifications.channels.chat import truncate_bytes

log = logging.getLogger(__name__)
TOKEN_CACHE_PREFIX = "btcw:notifications:wecom-token:"  # noqa: S105 - a Redis key prefix
TOKEN_INVALID = frozenset({40014, 42001, 42009})
CREDENTIALS_WRONG = frozenset({40001, 40013, 40056, 40091, 60020})
DUPLICATE_CHECK_SECONDS = 1800


class WeComAppChannel(HttpChannel):
    """A WeCom self-built application sending text to users (`to_user`, default @all)."""

    type = "wecom_app"
    dedupes = True
    requests_per_send = 3  # gettoken, send, and a second send after a token refresh
    API = "https://qyapi.weixin.qq.com"

    def _cache_key(self) -> str:
        s = self.settings
        ident = f"{s.base_url}|{s.corp_id}|{s.agent_id}|{s.corp_secret}".encode()
        return TOKEN_CACHE_PREFIX + hashlib.sha256(ident).hexdigest()[:24]

    def access_token(self, refresh: bool = False) -> str:
        """The cached access token, or a new one from /cgi-bin/gettoken."""
        key = self._cache_key()
        if self.redis is not None and not refresh:
            try:
                cached = self.redis.get(key)
            except RedisError as exc:
                log.warning("WeCom token cache unavailable: %s", exc)
                cached = None
            if cached:
                return cached.decode() if isinstance(cached, bytes) else cached
        response = self.request("GET", self.url(f"{self.API}/cgi-bin/gettoken"),
                                params={"corpid": self.settings.corp_id,
                                        "corpsecret": self.settings.corp_secret})
        self.check_status(response, "WeCom gettoken")
        data = json_body(response, "WeCom gettoken")
        code = data.get("errcode", 0)
        if code != 0 or not data.get("access_token"):
            raise SendError(f"WeCom gettoken refused: errcode {code} {data.get('errmsg', '')}",
                            status_code=response.status_code,
                            permanent=code in CREDENTIALS_WRONG)
        token = str(data["access_token"])
        ttl = max(int(data.get("expires_in", 7200)) - 300, 60)
        if self.redis is not None:
            try:
                self.redis.set(key, token, ex=ttl)
            except RedisError as exc:
                log.warning("WeCom token not cached: %s", exc)
        return token

    def send(self, message: Message, parts_done: tuple[str, ...] = ()) -> SendResult:
        """POST /cgi-bin/message/send with the token; refresh it once if WeCom rejects it."""
        payload = {
            "touser": self.settings.to_user or "@all",
            "msgtype": "text",
            "agentid": self.settings.agent_id,
            "text": {"content": truncate_bytes(message.text(), 2048)},
            "safe": 0,
            "enable_duplicate_check": 1,
            "duplicate_check_interval": DUPLICATE_CHECK_SECONDS,
        }
        for refresh in (False, True):
            token = self.access_token(refresh=refresh)
            url = self.url(f"{self.API}/cgi-bin/message/send") + f"?access_token={token}"
            response = self.post_json(url, payload)
            self.check_status(response, "WeCom")
            data = json_body(response, "WeCom")
            code = data.get("errcode", 0)
            if code in TOKEN_INVALID and not refresh:
                continue
            if code != 0:
                raise SendError(f"WeCom refused the message: errcode {code} "
                                f"{data.get('errmsg', '')}", status_code=response.status_code,
                                permanent=code in CREDENTIALS_WRONG | {81013, 40003})
            invalid = data.get("invaliduser") or ""
            return SendResult(response.status_code,
                              f"invalid users: {invalid}" if invalid else "")
        raise SendError("WeCom rejected a fresh access token")  # pragma: no cover - loop exits

    def target(self) -> str:
        """Corp, agent and recipients, with the secret masked."""
        s = self.settings
        return (f"corp {s.corp_id} agent {s.agent_id} → {s.to_user or '@all'} "
                f"(secret {mask(s.corp_secret)})")
