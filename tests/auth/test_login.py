"""Login, logout, lockout, password policy, tokens, CSRF, bad input."""

from __future__ import annotations

from datetime import timedelta

import pytest

from app.auth import service
from app.clock import utcnow
from tests.conftest import PASSWORD, AuthActions, csrf_from


def test_pages_need_login(client):
    response = client.get("/strategies/")
    assert response.status_code == 302
    assert "/login" in response.headers["Location"]


def test_api_needs_login_and_answers_json(client):
    response = client.get("/api/v1/system/config/system")
    assert response.status_code == 401
    assert response.get_json()["status"] == 401


WS_HANDSHAKE = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}


@pytest.mark.parametrize("path", ["/ws/signals", "/ws/monitoring", "/ws/signals?since_id=3"])
@pytest.mark.parametrize("headers", [WS_HANDSHAKE, {}], ids=["handshake", "plain-get"])
def test_websocket_routes_answer_401_without_login(client, path, headers):
    # A WebSocket client cannot follow a redirect to the login page.
    response = client.get(path, headers=headers)
    assert response.status_code == 401
    assert "Location" not in response.headers
    assert response.get_json()["status"] == 401


def test_any_websocket_handshake_without_login_gets_401(client):
    response = client.get("/signals/", headers=WS_HANDSHAKE)
    assert response.status_code == 401


def test_websocket_route_with_login_passes_the_guard(client, auth):
    # Logged in, the guard lets the handshake through to the WebSocket view (the test client
    # cannot complete it, but it is not a 401 or a redirect).
    response = client.get("/ws/signals", headers=WS_HANDSHAKE)
    assert response.status_code not in (302, 401)


def test_health_is_public(client):
    assert client.get("/health").status_code in (200, 503)


def test_login_then_logout(client, auth):
    assert client.get("/strategies/").status_code == 200
    response = auth.logout()
    assert response.status_code == 302
    assert client.get("/strategies/").status_code == 302


def test_logout_ends_every_session_of_the_user(app, user):
    first, second = app.test_client(), app.test_client()
    for browser in (first, second):
        AuthActions(browser).login()
        assert browser.get("/strategies/").status_code == 200
    assert AuthActions(first).logout().status_code == 302
    for browser in (first, second):
        response = browser.get("/strategies/")
        assert response.status_code == 302 and "/login" in response.headers["Location"]
        assert browser.get("/api/v1/strategies").status_code == 401


def test_a_password_change_ends_every_session(app, user, runner):
    browser = app.test_client()
    AuthActions(browser).login()
    assert browser.get("/strategies/").status_code == 200
    result = runner.invoke(args=["users", "passwd", "alice"],
                           input="brand-new-pass!1\nbrand-new-pass!1\n")
    assert result.exit_code == 0, result.output
    assert browser.get("/strategies/").status_code == 302
    assert AuthActions(browser).login(password="brand-new-pass!1").status_code == 302
    assert browser.get("/strategies/").status_code == 200


def test_wrong_password_is_refused(client, user):
    page = client.get("/login").get_data(as_text=True)
    response = client.post("/login", data={"username": "alice", "password": "nope!nope",
                                           "csrf_token": csrf_from(page)})
    assert response.status_code == 401
    assert "Invalid username or password" in response.get_data(as_text=True)


def test_lockout_after_five_failures_and_unlock_after_window(app, user):
    now = utcnow()
    for _ in range(4):
        assert service.authenticate("alice", "wrong!", now=now).locked_until is None
    locked = service.authenticate("alice", "wrong!", now=now)
    assert locked.user is None and locked.locked_until == now + timedelta(minutes=30)
    # Even the right password is refused while locked.
    assert service.authenticate("alice", PASSWORD, now=now + timedelta(minutes=29)).user is None
    after = service.authenticate("alice", PASSWORD, now=now + timedelta(minutes=30, seconds=1))
    assert after.user is not None


def test_locked_page_says_until_when(client, user):
    for _ in range(5):
        page = client.get("/login").get_data(as_text=True)
        response = client.post("/login", data={"username": "alice", "password": "bad!bad",
                                               "csrf_token": csrf_from(page)})
    assert response.status_code == 423
    text = response.get_data(as_text=True)
    assert "locked" in text and "UTC" in text


@pytest.mark.parametrize(
    ("password", "problem"),
    [("short!", "at least 8"), ("longenoughbutplain", "special character"), ("x!" * 200, "at most")],
)
def test_password_policy(app, password, problem):
    with pytest.raises(service.AuthError, match=problem):
        service.create_user("bob", password)


def test_token_auth(client, api_token):
    headers = {"Authorization": f"Bearer {api_token}"}
    assert client.get("/api/v1/system/config/system", headers=headers).status_code == 200
    bad = client.get("/api/v1/system/config/system", headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401


def test_token_auth_needs_no_csrf(client, api_token):
    response = client.post("/api/v1/system/config/reload",
                           headers={"Authorization": f"Bearer {api_token}"})
    assert response.status_code == 200


def test_revoked_token_is_refused(app, client, api_token):
    from app.auth.models import ApiToken
    from app.extensions import db

    service.revoke_token(db.session.query(ApiToken).one().id)
    response = client.get("/api/v1/system/config/system",
                          headers={"Authorization": f"Bearer {api_token}"})
    assert response.status_code == 401


def test_login_without_csrf_is_rejected(client, user):
    response = client.post("/login", data={"username": "alice", "password": PASSWORD})
    assert response.status_code == 400
    assert "CSRF" in response.get_data(as_text=True)


def test_session_post_without_csrf_is_rejected(client, auth):
    response = client.post("/api/v1/system/config/reload")
    assert response.status_code == 400
    assert "CSRF" in response.get_json()["message"]
    ok = client.post("/api/v1/system/config/reload", headers={"X-CSRFToken": auth.csrf()})
    assert ok.status_code == 200


def test_huge_login_body_is_refused_cleanly(client, user):
    response = client.post("/login", data={"username": "a", "password": "x" * (10 * 1024 * 1024)})
    assert response.status_code == 413
    assert "larger than" in response.get_data(as_text=True)


@pytest.mark.parametrize("username", ["ünïcødé-用户", "' OR 1=1 --", "a" * 500, "ad\tmin"])
def test_odd_usernames_fail_cleanly(client, user, username):
    page = client.get("/login").get_data(as_text=True)
    response = client.post("/login", data={"username": username, "password": "whatever!1",
                                           "csrf_token": csrf_from(page)})
    assert response.status_code == 401


def test_sql_looking_password_is_just_wrong(client, user):
    page = client.get("/login").get_data(as_text=True)
    response = client.post("/login", data={"username": "alice", "password": "' OR '1'='1'; --",
                                           "csrf_token": csrf_from(page)})
    assert response.status_code == 401
    assert service.user_by_name("alice") is not None


def test_unicode_user_can_be_created_and_log_in(client, app):
    service.create_user("交易员", "pässwörd!23")
    page = client.get("/login").get_data(as_text=True)
    response = client.post("/login", data={"username": "交易员", "password": "pässwörd!23",
                                           "csrf_token": csrf_from(page)})
    assert response.status_code == 302


def test_open_redirect_is_refused(client, user):
    page = client.get("/login").get_data(as_text=True)
    response = client.post("/login", data={"username": "alice", "password": PASSWORD,
                                           "next": "https://evil.example/", "csrf_token":
                                           csrf_from(page)})
    assert response.headers["Location"].startswith("/strategies")


def test_nul_byte_in_a_form_is_a_clear_400(client, user):
    page = client.get("/login").get_data(as_text=True)
    response = client.post("/login", data={"username": "\x00admin", "password": "whatever!1",
                                           "csrf_token": csrf_from(page)})
    assert response.status_code == 400
    assert "username&#39; contains a NUL character" in response.get_data(as_text=True)


def test_nul_byte_in_a_query_is_a_clear_400(client, auth):
    response = client.get("/api/v1/signals?pair=BTC%00USDT")
    assert response.status_code == 400
    assert "query parameter 'pair'" in response.get_json()["message"]


def test_control_characters_never_match_a_user(app, user):
    assert service.authenticate("ali\x00ce", PASSWORD).user is None
