"""The gateway in this process, in front of the two real demo bots (tests/bots.py).

The official FreqTrade client is pointed at a bot directly and through the gateway and must
get the same answers; errors, auth, headers and the message websocket are checked too. Every
response a test sees is searched for bot secrets (the `seen` fixture).
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest
import requests
import websocket
from freqtrade_client import FtRestClient

from tests.gateway.conftest import (
    GATEWAY_TIMEOUT,
    PASSWORD,
    USER,
    basic,
    bot_row,
    next_status,
    route,
)
from tests.gateway.fakes import DyingBot, FakeBot, answer, sleepy_bot
from tests.support.servers import free_port

pytestmark = pytest.mark.bots

COMPARED = ("ping", "version", "status", "profit", "balance", "trades", "count", "performance",
            "whitelist", "blacklist", "show_config", "logs", "health", "daily", "stats", "locks")
# Values that move on their own between two calls (prices, loop timestamps).
VOLATILE = {"last_process", "last_process_loc", "last_process_ts", "current_rate",
            "profit_ratio", "profit_pct", "profit_abs", "profit_fiat", "total_profit_abs",
            "total_profit_ratio", "total_profit_fiat", "stoploss_current_dist",
            "stoploss_current_dist_ratio", "stoploss_current_dist_pct", "stoploss_entry_dist",
            "stoploss_entry_dist_ratio", "realized_profit", "est_stake", "est_stake_bot",
            "total", "total_bot", "value", "value_bot", "profit_all_coin", "profit_all_ratio",
            "profit_all_percent", "profit_all_fiat", "profit_all_ratio_mean",
            "profit_all_percent_mean", "profit_all_ratio_sum", "profit_all_percent_sum",
            "profit_factor", "max_drawdown", "max_drawdown_abs", "current_drawdown",
            "current_drawdown_abs", "trading_volume", "unrealized_profit", "winrate", "expectancy",
            "expectancy_ratio", "sharpe", "sortino", "calmar", "starting_capital_ratio",
            "starting_capital_pct", "abs_profit", "rel_profit", "profit", "starting_balance",
            "current_profit", "current_profit_abs", "current_profit_pct"}


def steady(value):
    """A copy without the values that change between calls."""
    if isinstance(value, dict):
        return {k: steady(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [steady(v) for v in value]
    return value


@pytest.fixture
def demo(bots_app, demo_bots):
    """The first demo bot: id and direct credentials."""
    bot = demo_bots[0]
    return {"id": bot.id, **bot_row(bots_app, bot.id)}


@pytest.fixture
def clients(demo, gateway_server, seen):
    """(direct FtRestClient, FtRestClient through the gateway) for the first demo bot."""
    direct = FtRestClient(demo["url"], demo["username"], demo["password"])
    through = FtRestClient(f"{gateway_server}/api/strategy/{demo['id']}", USER, PASSWORD)
    seen.hook(through._session)
    return direct, through


def call(client: FtRestClient, method: str):
    return client.logs(limit=20) if method == "logs" else getattr(client, method)()


def masked(value, secrets):
    """What the gateway makes of a bot answer: its secrets replaced by as many '*'."""
    text = json.dumps(value)
    for secret in secrets:
        text = text.replace(secret, "*" * len(secret))
    return json.loads(text)


@pytest.mark.parametrize("method", COMPARED)
def test_freqtrade_client_gets_the_same_answers_through_the_gateway(clients, method, demo,
                                                                     bots_app):
    from app.extensions import db
    from app.strategies.models import Strategy

    with bots_app.app_context():
        row = db.session.get(Strategy, demo["id"])
        secrets = [row.api_password, row.jwt_secret, row.ws_token, row.webhook_token]
    direct, through = clients
    for _ in range(5):
        # FreqTrade logs the webhook URL (with its token) when a call fails: masked by the gateway.
        before = masked(call(direct, method), secrets)
        via = call(through, method)
        after = masked(call(direct, method), secrets)
        if via in (before, after):
            return
        if steady(via) in (steady(before), steady(after)):
            return
        time.sleep(0.5)
    pytest.fail(f"{method}: gateway {via!r}\n direct {before!r}\n then {after!r}")


def test_compared_answers_are_real(clients):
    """Guard against comparing two errors: the gateway answers carry the bot's data."""
    _, through = clients
    assert through.ping() == {"status": "pong"}
    assert through.version()["version"]
    assert through.show_config()["dry_run"] is True
    assert "logs" in through.logs(limit=3)
    assert "last_process" in through.health()
    assert "trades" in through.trades()


def test_commands_start_stop_reload_through_the_gateway(clients):
    direct, through = clients
    try:
        assert "stopping" in through.stop()["status"]
        assert direct.show_config()["state"] == "stopped"
        assert through.show_config()["state"] == "stopped"
        assert "starting" in through.start()["status"]
        assert direct.show_config()["state"] == "running"
        assert through.reload_config() == {"status": "Reloading config ..."}
    finally:
        direct.start()
    _wait_running(through)


def test_query_string_status_and_body_pass_through(gw, demo, user_auth):
    sid = demo["id"]
    logs = gw.get(f"/api/strategy/{sid}/logs?limit=3", headers=user_auth)
    assert logs.status_code == 200 and len(logs.get_json()["logs"]) == 3
    missing = gw.get(f"/api/strategy/{sid}/api/v1/trade/987654", headers=user_auth)
    direct = requests.get(f"{demo['url']}/api/v1/trade/987654",
                          auth=(demo["username"], demo["password"]), timeout=5)
    assert missing.status_code == direct.status_code == 404
    assert missing.get_data() == direct.content
    assert missing.content_type == direct.headers["content-type"]
    added = gw.post(f"/api/strategy/{sid}/api/v1/blacklist", headers=user_auth,
                    json={"blacklist": ["XRP/USDT"]})
    try:
        assert added.status_code == 200 and "XRP/USDT" in added.get_json()["blacklist"]
    finally:
        removed = gw.delete(f"/api/strategy/{sid}/blacklist?pairs_to_delete=XRP/USDT",
                            headers=user_auth)
    assert removed.status_code == 200 and "XRP/USDT" not in removed.get_json()["blacklist"]


# ------------------------------------------------------------------------------- errors


def test_unknown_id_is_404_naming_it(gw, user_auth):
    response = gw.get("/api/strategy/999999/api/v1/status", headers=user_auth)
    assert response.status_code == 404
    assert response.get_json()["message"] == "No strategy with id 999999."


def test_deleted_strategy_is_404(gw, bots_app, gateway_app, user_auth):
    with route(bots_app, gateway_app, "gw-deleted", port=free_port(), deleted=True) as sid:
        response = gw.get(f"/api/strategy/{sid}/status", headers=user_auth)
    assert response.status_code == 404
    assert f"No strategy with id {sid}." in response.get_json()["message"]


def test_stopped_strategy_is_502_naming_it(gw, bots_app, gateway_app, user_auth):
    with route(bots_app, gateway_app, "gw-stopped", port=None, status="stopped") as sid:
        response = gw.get(f"/api/strategy/{sid}/status", headers=user_auth)
    assert response.status_code == 502
    body = response.get_json()
    assert f"strategy 'gw-stopped' (id {sid})" in body["message"]
    assert "not running" in body["message"] and body["detail"] == body["message"]


def test_refused_connection_is_a_quick_502(gw, bots_app, gateway_app, user_auth):
    with route(bots_app, gateway_app, "gw-refused", port=free_port()) as sid:
        start = time.monotonic()
        response = gw.get(f"/api/strategy/{sid}/status", headers=user_auth)
        took = time.monotonic() - start
    assert response.status_code == 502
    assert "'gw-refused'" in response.get_json()["message"]
    assert "connection refused" in response.get_json()["message"]
    assert took < GATEWAY_TIMEOUT / 2, took  # refused at once, not after a timeout


def test_slow_bot_is_504_after_the_configured_timeout(gw, bots_app, gateway_app, user_auth):
    slow = sleepy_bot(GATEWAY_TIMEOUT + 3)
    try:
        with route(bots_app, gateway_app, "gw-slow", port=slow.port) as sid:
            start = time.monotonic()
            response = gw.get(f"/api/strategy/{sid}/profit", headers=user_auth)
            took = time.monotonic() - start
    finally:
        slow.close()
    assert response.status_code == 504
    message = response.get_json()["message"]
    assert "'gw-slow'" in message and f"did not answer within {GATEWAY_TIMEOUT:g} s" in message
    assert GATEWAY_TIMEOUT - 0.2 < took < GATEWAY_TIMEOUT + 2.0, took


def test_process_killed_mid_answer_is_a_quick_502(gw, bots_app, gateway_app, user_auth):
    dying = DyingBot()
    try:
        with route(bots_app, gateway_app, "gw-dying", port=dying.port) as sid:
            result = {}

            def ask():
                start = time.monotonic()
                result["response"] = gw.get(f"/api/strategy/{sid}/trades", headers=user_auth)
                result["took"] = time.monotonic() - start

            asker = threading.Thread(target=ask)
            asker.start()
            dying.wait_half_sent()
            killed_at = time.monotonic()
            dying.kill()
            asker.join(GATEWAY_TIMEOUT + 5)
            after_kill = time.monotonic() - killed_at
    finally:
        dying.kill()
    assert result["response"].status_code == 502
    assert "'gw-dying'" in result["response"].get_json()["message"]
    assert after_kill < 1.0


def test_real_bot_killed_mid_request_is_a_quick_502(gw, bots_app, demo_bots, user_auth,
                                                   gateway_app):
    """SIGSTOP the second demo bot, ask it, SIGKILL it: the caller gets a 502 at once.

    The supervisor restarts the bot; the test waits for it to answer through the gateway again.
    """
    bot = demo_bots[1]
    row = bot_row(bots_app, bot.id)
    result = {}

    def ask():
        result["response"] = gw.get(f"/api/strategy/{bot.id}/profit", headers=user_auth)

    os.kill(row["pid"], signal.SIGSTOP)
    asker = threading.Thread(target=ask)
    try:
        asker.start()
        time.sleep(0.5)
        assert "response" not in result  # waiting on the frozen bot
        killed_at = time.monotonic()
        os.kill(row["pid"], signal.SIGKILL)
        asker.join(GATEWAY_TIMEOUT + 5)
        after_kill = time.monotonic() - killed_at
    finally:
        try:
            os.kill(row["pid"], signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert result["response"].status_code == 502
    assert f"'{row['name']}'" in result["response"].get_json()["message"]
    assert after_kill < 1.0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # the supervisor restarts it (a new pid)
        now = bot_row(bots_app, bot.id)
        if now["pid"] != row["pid"] and now["status"] == "running":
            break
        time.sleep(0.5)
    else:
        pytest.fail(f"the supervisor did not restart the killed bot: {now}")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if gw.get(f"/api/strategy/{bot.id}/ping").status_code == 200:
            break
        time.sleep(0.5)
    else:
        pytest.fail("the restarted bot is not reachable through the gateway")


# --------------------------------------------------------------------------------- auth


def test_callers_must_log_in(gw, demo):
    response = gw.get(f"/api/strategy/{demo['id']}/status")
    assert response.status_code == 401
    assert "Login required" in response.get_json()["message"]
    assert "WWW-Authenticate" not in response.headers  # no browser dialog under FreqUI
    login = gw.post(f"/api/strategy/{demo['id']}/api/v1/token/login")
    assert login.status_code == 401 and login.headers["WWW-Authenticate"].startswith("Basic")


def test_ping_is_public_like_on_the_bot(gw, demo):
    assert gw.get(f"/api/strategy/{demo['id']}/api/v1/ping").get_json() == {"status": "pong"}


def test_the_bots_own_credentials_do_not_open_the_gateway(gw, demo):
    response = gw.get(f"/api/strategy/{demo['id']}/status",
                      headers={"Authorization": basic(demo["username"], demo["password"])})
    assert response.status_code == 401


def test_wrong_password_counts_toward_lockout(gw, demo, bots_app):
    from app.auth import service

    with bots_app.app_context():
        if service.user_by_name("gw-lockme") is None:
            service.create_user("gw-lockme", PASSWORD)
    bad = {"Authorization": basic("gw-lockme", "wrong-password!")}
    bodies = [gw.get(f"/api/strategy/{demo['id']}/status", headers=bad).get_json()
              for _ in range(5)]
    assert "(4 attempts left)" in bodies[0]["message"] and bodies[0]["attempts_left"] == 4
    assert bodies[-1]["message"].startswith("Account locked after 5 failed logins until ")
    assert bodies[-1]["locked_until"].endswith("Z") and bodies[-1]["status"] == 401
    good = gw.get(f"/api/strategy/{demo['id']}/status",
                  headers={"Authorization": basic("gw-lockme", PASSWORD)})
    assert good.status_code == 401 and "locked" in good.get_json()["message"].lower()
    # The gateway's own endpoints answer the same way.
    health = gw.get("/api/gateway/health", headers={"Authorization": basic("gw-lockme",
                                                                          PASSWORD)})
    assert health.status_code == 401 and health.get_json()["locked_until"]


def test_api_token_works_as_bearer(gw, demo, bots_api_token):
    response = gw.get(f"/api/strategy/{demo['id']}/count",
                      headers={"Authorization": f"Bearer {bots_api_token}"})
    assert response.status_code == 200 and "current" in response.get_json()


def test_freqtrade_login_flow_issues_gateway_tokens(gw, demo, user_auth):
    base = f"/api/strategy/{demo['id']}/api/v1"
    tokens = gw.post(f"{base}/token/login", headers=user_auth).get_json()
    assert set(tokens) == {"access_token", "refresh_token"}
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert gw.get(f"{base}/count", headers=bearer).status_code == 200
    # A refresh token is not an access token, and vice versa.
    assert gw.get(f"{base}/count",
                  headers={"Authorization": f"Bearer {tokens['refresh_token']}"}).status_code == 401
    assert gw.post(f"{base}/token/refresh", headers=bearer).status_code == 401
    refreshed = gw.post(f"{base}/token/refresh",
                        headers={"Authorization": f"Bearer {tokens['refresh_token']}"})
    assert refreshed.status_code == 200
    new_bearer = {"Authorization": f"Bearer {refreshed.get_json()['access_token']}"}
    assert gw.get(f"{base}/count", headers=new_bearer).status_code == 200
    assert gw.post(f"{base}/token/login",
                   headers={"Authorization": basic(USER, "nope-nope!")}).status_code == 401


def test_web_session_cookie_works_and_needs_csrf_for_changes(gw, demo, bots_app):
    from tests.conftest import csrf_from

    web = bots_app.test_client()
    page = web.get("/login")
    login = web.post("/login", data={"username": USER, "password": PASSWORD,
                                     "csrf_token": csrf_from(page.get_data(as_text=True))})
    assert login.status_code == 302
    csrf = csrf_from(web.get("/system/").get_data(as_text=True))
    cookie = web.get_cookie("session").value  # now holding the CSRF secret too
    gw.set_cookie("session", cookie)
    base = f"/api/strategy/{demo['id']}/api/v1"
    assert gw.get(f"{base}/count").status_code == 200
    refused = gw.post(f"{base}/blacklist", json={"blacklist": ["XRP/USDT"]})
    assert refused.status_code == 403 and "CSRF" in refused.get_json()["message"]
    allowed = gw.post(f"{base}/blacklist", json={"blacklist": ["XRP/USDT"]},
                      headers={"X-CSRFToken": csrf})
    assert allowed.status_code == 200
    gw.delete(f"{base}/blacklist?pairs_to_delete=XRP/USDT", headers={"X-CSRFToken": csrf})


# ------------------------------------------------------------------------------ headers


def test_headers_credentials_and_hop_by_hop(gw, bots_app, gateway_app, user_auth):
    def handler(req, conn):
        answer(conn, 201, b"raw-bytes\x00\xff", [
            ("Content-Type", "application/x-test"), ("X-Bot-Header", "kept"),
            ("Connection", "keep-alive"), ("Keep-Alive", "timeout=5"),
            ("Proxy-Authenticate", "Basic")], reason="Created")

    fake = FakeBot(handler)
    try:
        with route(bots_app, gateway_app, "gw-headers", port=fake.port) as sid:
            response = gw.put(
                f"/api/strategy/{sid}/api/v1/some/path?x=1&y=%2F", data=b'{"a": 1}',
                headers={**user_auth, "Content-Type": "application/json",
                         "X-Custom": "passed", "Connection": "close", "TE": "trailers",
                         "Cookie": "session=abc", "Proxy-Authorization": "Basic eA=="})
            from app.extensions import db
            from app.strategies.models import Strategy

            with bots_app.app_context():
                row = db.session.get(Strategy, sid)
                bot_auth = basic(row.api_username, row.api_password)
    finally:
        fake.close()
    assert response.status_code == 201
    assert response.get_data() == b"raw-bytes\x00\xff"
    assert response.content_type == "application/x-test"
    assert response.headers["X-Bot-Header"] == "kept"
    for hop in ("Keep-Alive", "Proxy-Authenticate"):
        assert hop not in response.headers
    sent = fake.requests[0]
    assert (sent.method, sent.target, sent.body) == ("PUT", "/api/v1/some/path?x=1&y=%2F",
                                                     b'{"a": 1}')
    assert sent.headers["authorization"] == bot_auth  # injected, the caller's is consumed
    assert sent.headers["x-custom"] == "passed"
    assert sent.headers["content-type"] == "application/json"
    for dropped in ("cookie", "te", "proxy-authorization"):
        assert dropped not in sent.headers
    assert sent.headers.get("connection", "keep-alive").lower() != "close"
    assert "x-forwarded-for" in sent.headers


# ---------------------------------------------------------------------------- websocket


def _ws_url(gateway_server: str, sid: int, token: str) -> str:
    return gateway_server.replace("http://", "ws://") + \
        f"/api/strategy/{sid}/api/v1/message/ws?token={token}"


def test_message_websocket_through_the_gateway(gateway_server, demo, seen, gw, user_auth):
    tokens = gw.post(f"/api/strategy/{demo['id']}/api/v1/token/login",
                     headers=user_auth).get_json()
    ws = websocket.create_connection(_ws_url(gateway_server, demo["id"],
                                             tokens["access_token"]), timeout=20)
    direct = FtRestClient(demo["url"], demo["username"], demo["password"])

    try:
        ws.send(json.dumps({"type": "subscribe", "data": ["status"]}))
        time.sleep(0.5)
        direct.stop()  # the bot announces state changes from its loop: one at a time
        assert next_status(ws, seen) == "stopped"
        direct.start()
        assert next_status(ws, seen) == "running"
        direct.reload_config()  # the bot closes its sockets with 1012: the caller sees it too
        code = None
        while code is None:
            opcode, data = ws.recv_data(control_frame=True)
            seen.add("ws frame", data)
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                code = int.from_bytes(data[:2], "big")
        assert code == 1012
    finally:
        direct.start()
        ws.close()
    _wait_running(direct)


def _wait_running(client: FtRestClient, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:  # the bot's API pauses while it reloads
        try:
            if client.show_config().get("state") == "running":
                return
        except (requests.RequestException, AttributeError, TypeError):
            pass
        time.sleep(0.5)
    pytest.fail("bot did not come back after reload_config")


def test_message_websocket_rejects_bad_tokens_before_upgrading(gateway_server, demo):
    with pytest.raises(websocket.WebSocketBadStatusException) as info:
        websocket.create_connection(_ws_url(gateway_server, demo["id"], "not-a-token"),
                                    timeout=5)
    assert info.value.status_code == 403
    with pytest.raises(websocket.WebSocketBadStatusException) as info:
        websocket.create_connection(_ws_url(gateway_server, 999999, "x"), timeout=5)
    assert info.value.status_code == 404
