"""Each channel against real loopback receivers: what it posts, signatures recomputed."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from datetime import datetime
from urllib.parse import quote_plus

import pytest

from app.notifications.channels import Message, SendError, build_channel
from app.notifications.channels.base import mask, mask_url, with_base_url
from app.notifications.channels.webhook import webhook_signature
from config.loader import ChannelSettings
from tests.notifications.conftest import http_channel, smtp_channel
from tests.notifications.receivers import SmtpReceiver

MESSAGE = Message(title="[P0] entry long BTC/USDT @ 65000", body="TrendBot: entry\nhttp://x/s/1",
                  link="http://x/signals/1", priority="P0", kind="signal", notification_id=7,
                  idempotency_key="7:feishu", created_at=datetime(2026, 1, 5, 2, 30),
                  data={"pair": "BTC/USDT"})


def send(kind, receiver, **values):
    channel = build_channel(kind, http_channel(kind, receiver, **values))
    return channel.send(MESSAGE)


def test_feishu_posts_text_signed_with_the_bot_secret(http_receiver):
    before = int(time.time())
    send("feishu", http_receiver, secret="feishu-secret")
    (req,) = http_receiver.wait_for(1)
    assert req.method == "POST" and req.path == "/open-apis/bot/v2/hook/hook-1"
    body = req.json
    assert body["msg_type"] == "text"
    assert body["content"]["text"] == f"{MESSAGE.title}\n{MESSAGE.body}"
    # Feishu's documented signature: HMAC-SHA256 keyed by "timestamp\nsecret" over nothing.
    timestamp = body["timestamp"]
    assert before <= int(timestamp) <= int(time.time())
    key = f"{timestamp}\nfeishu-secret".encode()
    assert body["sign"] == base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()


def test_feishu_without_secret_sends_no_signature(http_receiver):
    send("lark", http_receiver)
    (req,) = http_receiver.wait_for(1)
    assert req.path == "/open-apis/bot/v2/hook/hook-2"
    assert "sign" not in req.json and "timestamp" not in req.json


def test_feishu_refusal_code_is_an_error_and_sign_failure_is_permanent(http_receiver):
    http_receiver.reply(200, {"code": 19021, "msg": "sign match fail"})
    with pytest.raises(SendError, match="code 19021 sign match fail") as err:
        send("feishu", http_receiver, secret="s")
    assert err.value.permanent
    http_receiver.reply(200, {"code": 11232, "msg": "frequency limited"})
    with pytest.raises(SendError) as err:
        send("feishu", http_receiver)
    assert not err.value.permanent


def test_wecom_bot_posts_to_webhook_send_with_key(http_receiver):
    send("wecom_bot", http_receiver)
    (req,) = http_receiver.wait_for(1)
    assert req.path == "/cgi-bin/webhook/send" and req.q("key") == "wecom-key"
    assert req.json == {"msgtype": "text",
                        "text": {"content": f"{MESSAGE.title}\n{MESSAGE.body}"}}


def test_wecom_bot_cuts_text_to_2048_bytes(http_receiver):
    channel = build_channel("w", http_channel("wecom_bot", http_receiver))
    long = Message(title="长" * 2000, body="")
    channel.send(long)
    (req,) = http_receiver.wait_for(1)
    assert len(req.json["text"]["content"].encode()) <= 2048


def test_wecom_app_gets_a_token_caches_it_and_sends(app, http_receiver):
    from app.extensions import redis_store

    settings = http_channel("wecom_app", http_receiver, to_user="alice|bob")
    for _ in range(2):
        build_channel("wechat", settings, redis_store.client).send(MESSAGE)
    requests = http_receiver.wait_for(3)
    token_calls = [r for r in requests if r.path == "/cgi-bin/gettoken"]
    sends = [r for r in requests if r.path == "/cgi-bin/message/send"]
    assert len(token_calls) == 1, "the token is cached between sends (and processes)"
    assert token_calls[0].q("corpid") == "corp1"
    assert token_calls[0].q("corpsecret") == "corp-secret"
    assert len(sends) == 2 and all(r.q("access_token") == "TOKEN-1" for r in sends)
    body = sends[0].json
    assert body["touser"] == "alice|bob" and body["agentid"] == 1000002
    assert body["msgtype"] == "text" and body["enable_duplicate_check"] == 1


def test_wecom_app_refreshes_an_expired_token_once(app, http_receiver):
    from app.extensions import redis_store

    redis_store.client.flushdb()
    http_receiver.reply(200, {"errcode": 0, "access_token": "OLD", "expires_in": 7200})
    http_receiver.reply(200, {"errcode": 42001, "errmsg": "access_token expired"})
    http_receiver.reply(200, {"errcode": 0, "access_token": "NEW", "expires_in": 7200})
    http_receiver.reply(200, {"errcode": 0, "errmsg": "ok"})
    channel = build_channel("wechat", http_channel("wecom_app", http_receiver),
                            redis_store.client)
    channel.send(MESSAGE)
    paths = [(r.path, r.query.get("access_token", [""])[0]) for r in http_receiver.requests]
    assert paths == [("/cgi-bin/gettoken", ""), ("/cgi-bin/message/send", "OLD"),
                     ("/cgi-bin/gettoken", ""), ("/cgi-bin/message/send", "NEW")]


def test_dingtalk_signs_the_url_with_timestamp_and_sign(http_receiver):
    send("dingtalk", http_receiver, secret="SECabc")
    (req,) = http_receiver.wait_for(1)
    assert req.path == "/robot/send" and req.q("access_token") == "ding-1"
    timestamp = req.q("timestamp")
    assert abs(int(timestamp) - time.time() * 1000) < 10_000
    expected = base64.b64encode(hmac.new(b"SECabc", f"{timestamp}\nSECabc".encode(),
                                         hashlib.sha256).digest()).decode()
    assert req.q("sign") == expected
    assert f"sign={quote_plus(expected)}" in req.raw_query  # URL-encoded on the wire
    assert req.json == {"msgtype": "text", "text": {"content": f"{MESSAGE.title}\n{MESSAGE.body}"}}


def test_dingtalk_refusal_is_an_error(http_receiver):
    http_receiver.reply(200, {"errcode": 310000, "errmsg": "sign not match"})
    with pytest.raises(SendError, match="errcode 310000") as err:
        send("dingtalk", http_receiver, secret="s")
    assert err.value.permanent


def test_telegram_sends_message_to_the_chat(http_receiver):
    send("telegram", http_receiver)
    (req,) = http_receiver.wait_for(1)
    assert req.path == "/bot123:ABC/sendMessage"
    assert req.json["chat_id"] == "-1001"
    assert req.json["text"] == f"{MESSAGE.title}\n{MESSAGE.body}"


def test_telegram_429_hands_retry_after_to_the_dispatcher(http_receiver):
    http_receiver.reply(429, {"ok": False, "error_code": 429,
                              "description": "Too Many Requests: retry after 7",
                              "parameters": {"retry_after": 7}})
    with pytest.raises(SendError) as err:
        send("telegram", http_receiver)
    assert err.value.retry_after == 7 and err.value.status_code == 429
    assert not err.value.permanent and not err.value.maybe_delivered


def test_telegram_unknown_chat_is_permanent(http_receiver):
    http_receiver.reply(400, {"ok": False, "error_code": 400,
                              "description": "Bad Request: chat not found"})
    with pytest.raises(SendError, match="chat not found") as err:
        send("telegram", http_receiver)
    assert err.value.permanent


def test_discord_posts_content_and_honours_429(http_receiver):
    http_receiver.reply(204, b"")
    send("discord", http_receiver)
    (req,) = http_receiver.wait_for(1)
    assert req.path == "/api/webhooks/42/disc-token"
    assert req.json == {"content": f"{MESSAGE.title}\n{MESSAGE.body}",
                        "allowed_mentions": {"parse": []}}
    http_receiver.reply(429, {"message": "You are being rate limited.", "retry_after": 1.5,
                              "global": False})
    with pytest.raises(SendError) as err:
        send("discord", http_receiver)
    assert err.value.retry_after == 1.5


def test_webhook_posts_json_with_idempotency_key_and_signature(http_receiver):
    send("webhook", http_receiver, secret="hook-secret", headers={"X-Team": "desk"})
    (req,) = http_receiver.wait_for(1)
    assert req.path == "/btcw"
    assert req.headers["Idempotency-Key"] == "7:feishu"
    assert req.headers["X-Team"] == "desk"
    body = req.json
    assert body["notification_id"] == 7 and body["priority"] == "P0"
    assert body["title"] == MESSAGE.title and body["data"] == {"pair": "BTC/USDT"}
    timestamp = req.headers["X-BTCW-Timestamp"]
    expected = hmac.new(b"hook-secret", timestamp.encode() + b"." + req.body,
                        hashlib.sha256).hexdigest()
    assert req.headers["X-BTCW-Signature"] == f"sha256={expected}"
    assert webhook_signature("hook-secret", timestamp, req.body) == f"sha256={expected}"


def test_webhook_5xx_is_retryable_and_4xx_permanent(http_receiver):
    http_receiver.reply(503, "busy", {"Retry-After": "4", "Content-Type": "text/plain"})
    with pytest.raises(SendError, match="HTTP 503") as err:
        send("webhook", http_receiver)
    assert not err.value.permanent and err.value.retry_after == 4
    http_receiver.reply(404, "no such hook", {"Content-Type": "text/plain"})
    with pytest.raises(SendError, match="HTTP 404") as err:
        send("webhook", http_receiver)
    assert err.value.permanent


def test_sms_gateway_renders_url_and_body_templates(http_receiver):
    send("sms_gateway", http_receiver,
         url=f"{http_receiver.url}/sms/send?sender=BTCW&to={{{{ to | urlencode }}}}",
         body_template='{"text": {{ message | tojson }}, "p": "{{ priority }}"}',
         headers={"Authorization": "Bearer gw-token"})
    (req,) = http_receiver.wait_for(1)
    assert req.method == "POST" and req.path == "/sms/send"
    assert req.q("to") == "+8613800000000" and req.q("sender") == "BTCW"
    assert req.headers["Authorization"] == "Bearer gw-token"
    assert req.headers["Content-Type"] == "application/json"
    assert req.json == {"text": f"{MESSAGE.title}\n{MESSAGE.body}", "p": "P0"}


def test_sms_gateway_default_body_and_get_method(http_receiver):
    send("sms_gateway", http_receiver)
    (req,) = http_receiver.wait_for(1)
    assert req.json == {"to": "+8613800000000", "message": f"{MESSAGE.title}\n{MESSAGE.body}"}
    send("sms_gateway", http_receiver, method="GET",
         url=f"{http_receiver.url}/get?msg={{{{ message | urlencode }}}}")
    req = http_receiver.wait_for(2)[1]
    assert req.method == "GET" and req.q("msg") == f"{MESSAGE.title}\n{MESSAGE.body}"


def test_sms_gateway_template_error_is_permanent_and_clear(http_receiver):
    with pytest.raises(SendError, match="SMS gateway body template") as err:
        send("sms_gateway", http_receiver, body_template="{{ nope }}")
    assert err.value.permanent


def test_apprise_sms_provider_reaches_a_self_hosted_gateway(http_receiver):
    """An apprise SMS URL (SMSEagle, a self-hosted SMS gateway) sent through apprise."""
    url = f"smseagle://eagle-token@127.0.0.1:{http_receiver.port}/+8613800000000"
    channel = build_channel("sms", ChannelSettings(type="sms", urls=[url], timeout=3.0))
    assert channel.via_apprise
    channel.send(MESSAGE)
    (req,) = http_receiver.wait_for(1)
    assert req.path == "/jsonrpc/sms"
    body = req.json
    assert body["method"] == "sms.send_sms"
    assert body["params"]["to"] == "+8613800000000"
    assert body["params"]["access_token"] == "eagle-token"
    assert MESSAGE.title in body["params"]["message"]


def test_apprise_retry_skips_urls_already_done(http_receiver):
    good = f"smseagle://tok@127.0.0.1:{http_receiver.port}/+8613800000001"
    bad = f"smseagle://tok@127.0.0.1:{http_receiver.port}/+8613800000002"
    http_receiver.reply(200).reply(500, {"result": "error"})
    channel = build_channel("sms", ChannelSettings(type="sms", urls=[good, bad]))
    with pytest.raises(SendError) as err:
        channel.send(MESSAGE)
    assert err.value.parts_done == ("0",)
    result = channel.send(MESSAGE, err.value.parts_done)
    assert result.parts_done == ("0", "1")
    targets = [r.json["params"]["to"] for r in http_receiver.requests]
    assert targets == ["+8613800000001", "+8613800000002", "+8613800000002"]


def test_email_over_plain_smtp(smtp_receiver):
    channel = build_channel("email", smtp_channel(smtp_receiver))
    channel.send(MESSAGE)
    (mail,) = smtp_receiver.wait_for(1)
    assert mail.mail_from == "watcher@example.com"
    assert mail.rcpt_tos == ["owner@example.com"]
    text = mail.content.decode()
    assert "Subject: [P0] entry long BTC/USDT @ 65000" in text
    assert "X-BTCW-Idempotency-Key: 7:feishu" in text
    assert "TrendBot: entry" in text


@pytest.mark.parametrize("mode", ["starttls", "ssl"])
def test_email_over_starttls_and_ssl_with_login(tmp_path, mode):
    receiver = SmtpReceiver(mode=mode, cert_dir=tmp_path,
                            credentials=("bot@example.com", "p@ss:word")).start()
    try:
        settings = smtp_channel(receiver, security=mode, username="bot@example.com",
                                password="p@ss:word", verify_tls=False)
        build_channel("email", settings).send(MESSAGE)
        (mail,) = receiver.wait_for(1)
        assert mail.rcpt_tos == ["owner@example.com"]
        assert receiver.logins == ["bot@example.com"]
    finally:
        receiver.stop()


def test_email_failure_carries_apprise_log_text(smtp_receiver):
    settings = smtp_channel(smtp_receiver, port=smtp_receiver.port + 1 if
                            smtp_receiver.port < 65535 else 1)
    with pytest.raises(SendError) as err:
        build_channel("email", settings).send(MESSAGE)
    assert "mailto" in str(err.value) and not err.value.permanent


def test_connection_refused_is_known_not_delivered():
    from tests.support.servers import free_port

    settings = ChannelSettings(type="webhook", webhook_url=f"http://127.0.0.1:{free_port()}/x",
                               timeout=2.0)
    with pytest.raises(SendError, match="cannot connect") as err:
        build_channel("w", settings).send(MESSAGE)
    assert not err.value.maybe_delivered and not err.value.permanent


def test_no_answer_means_maybe_delivered(http_receiver):
    http_receiver.hold()
    settings = http_channel("webhook", http_receiver, timeout=0.5)
    try:
        with pytest.raises(SendError, match="may have arrived") as err:
            build_channel("w", settings).send(MESSAGE)
        assert err.value.maybe_delivered
    finally:
        http_receiver.release()


def test_base_url_override_and_masking():
    assert with_base_url("https://open.feishu.cn/open-apis/bot/v2/hook/abc",
                         "http://relay:9/feishu/") == "http://relay:9/feishu/open-apis/bot/v2/hook/abc"
    assert with_base_url("https://x/y?a=1", "") == "https://x/y?a=1"
    assert mask("supersecretvalue") == "supe••••"
    assert mask("short") == "••••"
    assert mask("${FEISHU_SECRET}") == "${FEISHU_SECRET}"
    masked = mask_url("https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=0123456789abcdef")
    assert "0123456789abcdef" not in masked and masked.startswith("https://qyapi.weixin.qq.com")
