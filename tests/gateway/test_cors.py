"""The gateway owns CORS (preflights, its own answers, proxied ones, refused origins, config
reload without a bot restart) and serves FreqUI behind the BTC Watcher login (tickets, cookie,
assets, what is not set up)."""

from __future__ import annotations

import contextlib
import dataclasses

import pytest

from app.gateway import frequi
from tests.gateway.conftest import PASSWORD, USER, basic, route
from tests.gateway.fakes import json_bot
from tests.support.browser import frequi_build
from tests.support.servers import free_port

pytestmark = pytest.mark.bots
ALLOWED = "http://ui.example:3000"


@contextlib.contextmanager
def gateway_settings(gateway_app, section: str, **changes):
    """Change one section of the running gateway's settings (what a config reload does)."""
    holder = gateway_app.extensions["btcw_settings"]
    original = holder.settings
    system = original.system
    part = dataclasses.replace(getattr(system, section), **changes)
    holder.settings = dataclasses.replace(original, system=dataclasses.replace(
        system, **{section: part}))
    try:
        yield
    finally:
        holder.settings = original


@pytest.fixture
def allowed(gateway_app):
    with gateway_settings(gateway_app, "security", cors_origins=[ALLOWED]):
        yield ALLOWED


def _cors(response) -> list[str]:
    return response.headers.getlist("Access-Control-Allow-Origin")


def test_preflight_is_answered_by_the_gateway_never_the_bot(gw, bots_app, gateway_app,
                                                            allowed):
    with route(bots_app, gateway_app, "cors-preflight", port=free_port()) as sid:
        response = gw.options(f"/api/strategy/{sid}/api/v1/token/login", headers={
            "Origin": allowed, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type"})
    assert response.status_code == 204  # a closed port behind it: the bot was never asked
    assert _cors(response) == [allowed]
    assert response.headers["Access-Control-Allow-Credentials"] == "true"
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    assert "authorization" in response.headers["Access-Control-Allow-Headers"]


def test_the_gateways_own_answers_carry_cors_headers(gw, bots_app, gateway_app, allowed,
                                                     demo_bots):
    origin = {"Origin": allowed}
    sid = demo_bots[0].id
    login = gw.post(f"/api/strategy/{sid}/api/v1/token/login",
                    headers={**origin, "Authorization": basic(USER, PASSWORD)})
    assert login.status_code == 200 and _cors(login) == [allowed]
    assert login.headers["Access-Control-Allow-Credentials"] == "true"
    bad_refresh = gw.post(f"/api/strategy/{sid}/api/v1/token/refresh",
                          headers={**origin, "Authorization": "Bearer nope"})
    assert bad_refresh.status_code == 401 and _cors(bad_refresh) == [allowed]
    expired = gw.get(f"/api/strategy/{sid}/api/v1/status",
                     headers={**origin, "Authorization": "Bearer not-a-token"})
    assert expired.status_code == 401 and _cors(expired) == [allowed]
    unknown = gw.get("/api/strategy/999999/api/v1/ping", headers=origin)
    assert unknown.status_code == 404 and _cors(unknown) == [allowed]
    with route(bots_app, gateway_app, "cors-down", port=free_port()) as down:
        gone = gw.get(f"/api/strategy/{down}/api/v1/status",
                      headers={**origin, "Authorization": basic(USER, PASSWORD)})
    assert gone.status_code == 502 and _cors(gone) == [allowed]


def test_a_bots_own_cors_headers_are_replaced_not_doubled(gw, bots_app, gateway_app, allowed,
                                                          user_auth):
    bot = json_bot({"status": "pong"}, headers=[("Access-Control-Allow-Origin", "*"),
                                                 ("Vary", "Origin")])
    try:
        with route(bots_app, gateway_app, "cors-bot", port=bot.port) as sid:
            response = gw.get(f"/api/strategy/{sid}/api/v1/ping",
                              headers={"Origin": allowed, **user_auth})
    finally:
        bot.close()
    assert response.status_code == 200 and response.get_json() == {"status": "pong"}
    assert _cors(response) == [allowed]
    assert response.headers.getlist("Vary").count("Origin") == 1


def test_an_origin_not_allowed_is_refused_before_any_bot(gw, bots_app, gateway_app, user_auth,
                                                        demo_bots):
    sid = demo_bots[0].id
    for method, extra in (("GET", {}), ("OPTIONS", {"Access-Control-Request-Method": "GET"})):
        response = gw.open(f"/api/strategy/{sid}/api/v1/show_config", method=method,
                           headers={"Origin": "http://evil.example", **user_auth, **extra})
        assert response.status_code == 403, method
        assert not _cors(response)
        assert "http://evil.example" in response.get_json()["message"]
        assert "cors_origins" in response.get_json()["message"]
        assert "strategy" not in response.get_json()
    socket = gw.get(f"/api/strategy/{sid}/api/v1/message/ws?token=x",
                    headers={"Origin": "http://evil.example", "Upgrade": "websocket",
                             "Connection": "Upgrade"})
    assert socket.status_code == 403


def test_allowed_origins_follow_the_config_without_a_restart(gw, gateway_app, demo_bots,
                                                             user_auth):
    url = f"/api/strategy/{demo_bots[0].id}/api/v1/ping"
    assert gw.get(url, headers={"Origin": ALLOWED}).status_code == 403
    with gateway_settings(gateway_app, "security", cors_origins=[ALLOWED]):
        answer = gw.get(url, headers={"Origin": ALLOWED})
        assert answer.status_code == 200 and _cors(answer) == [ALLOWED]
    assert gw.get(url, headers={"Origin": ALLOWED}).status_code == 403
    same_origin = gw.get(url, headers={"Origin": "http://localhost"})  # the test client's host
    assert same_origin.status_code == 200


# ------------------------------------------------------------------------------ FreqUI


@pytest.fixture
def with_frequi(gateway_app):
    with gateway_settings(gateway_app, "gateway", frequi_dir=str(frequi_build())):
        yield


def _ticket(bots_app, username: str = USER) -> str:
    from app.auth import service

    with bots_app.app_context():
        return frequi.make_ticket("bots-test-secret-key", service.user_by_name(username))


def test_frequi_without_a_build_says_how_to_get_one(gw, bots_client, bots_api_token):
    page = gw.get("/")
    assert page.status_code == 404 and b"frequi_dir" in page.data
    assert b"freqtrade install-ui" in page.data
    web = bots_client.get("/strategies/frequi",
                          headers={"Authorization": f"Bearer {bots_api_token}"})
    assert web.status_code == 404 and b"frequi_dir" in web.data


def test_frequi_page_needs_the_btc_watcher_login(gw, with_frequi, gateway_app):
    response = gw.get("/dashboard?btcw_bot=3")
    assert response.status_code == 302
    web = gateway_app.extensions["btcw_settings"].settings.system.web.public_url.rstrip("/")
    assert response.headers["Location"] == f"{web}/strategies/frequi?bot=3"
    assert gw.get("/assets/../index.html").status_code == 404
    assert gw.get("/api/nothing/here").status_code == 404
    assert gw.get("/api/nothing/here").get_json()["status"] == 404
    asset = next((frequi_build() / "assets").glob("index-*.js")).name
    assert gw.get(f"/assets/{asset}").status_code == 200  # FreqUI's code itself is public


def test_a_ticket_opens_frequi_once_and_logout_ends_it(gw, with_frequi, bots_app, demo_bots):
    from app.auth import service

    with bots_app.app_context():
        if service.user_by_name("frequi-user") is None:
            service.create_user("frequi-user", PASSWORD)
    ticket = _ticket(bots_app, "frequi-user")
    entered = gw.post(frequi.LOGIN_PATH, data={"ticket": ticket, "bot": str(demo_bots[1].id)})
    assert entered.status_code == 303
    assert entered.headers["Location"] == f"/?btcw_bot={demo_bots[1].id}"
    cookie = entered.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    again = gw.post(frequi.LOGIN_PATH, data={"ticket": ticket})
    assert again.status_code == 401 and b"used already" in again.data

    page = gw.get("/")
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    html = page.get_data(as_text=True)
    for bot in demo_bots:
        assert f'"btcw-{bot.id}"' in html and bot.name in html
    assert html.index("ftAuthLoginInfo") < html.index('<script type="module"')

    with bots_app.app_context():
        service.end_sessions(service.user_by_name("frequi-user"))
    ended = gw.get("/")
    assert ended.status_code == 302  # the session ended: back to the login
    assert gw.post(frequi.LOGIN_PATH, data={"ticket": "forged"}).status_code == 401
