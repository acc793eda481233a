"""Gateway logins: the cache, its renewal without re-hashing, password changes and lockout."""

from __future__ import annotations

import pytest

from app.gateway import auth as gateway_auth
from app.gateway.auth import AuthFailure
from tests.gateway.conftest import basic


@pytest.fixture
def gw_auth(gateway_app, monkeypatch):
    monkeypatch.setattr(gateway_auth, "AUTH_CACHE_SECONDS", 0.0)  # every check is a renewal
    auth = gateway_app.extensions["btcw_gateway"].auth
    auth.forget()
    yield auth
    auth.forget()


@pytest.fixture
def carol(bots_app):
    from app.auth import service

    with bots_app.app_context():
        user = service.user_by_name("gw-carol") or service.create_user("gw-carol",
                                                                       "first-pass!word")
        service.set_password(user, "first-pass!word")
    return "gw-carol"


def _env(user: str, password: str) -> dict:
    return {"HTTP_AUTHORIZATION": basic(user, password)}


def test_renewal_skips_the_password_hash_but_sees_a_password_change(gw_auth, carol, bots_app,
                                                                    monkeypatch):
    from app.auth import service

    assert gw_auth.identify(_env(carol, "first-pass!word"), "GET").username == carol
    hashed = []
    real = service.check_password_hash
    monkeypatch.setattr(service, "check_password_hash",
                        lambda *a: hashed.append(1) or real(*a))
    assert gw_auth.identify(_env(carol, "first-pass!word"), "GET").username == carol
    assert hashed == []  # renewed from the unchanged password hash, no scrypt
    with bots_app.app_context():
        service.set_password(service.user_by_name(carol), "second-pass!word")
    with pytest.raises(AuthFailure):
        gw_auth.identify(_env(carol, "first-pass!word"), "GET")
    assert hashed  # the old password was checked for real, and failed
    assert gw_auth.identify(_env(carol, "second-pass!word"), "GET").username == carol


def test_renewal_refuses_a_locked_account(gw_auth, carol, bots_app):
    from datetime import timedelta

    from app.auth import service
    from app.clock import utcnow
    from app.extensions import db

    assert gw_auth.identify(_env(carol, "first-pass!word"), "GET")
    with bots_app.app_context():
        service.user_by_name(carol).locked_until = utcnow() + timedelta(minutes=30)
        db.session.commit()
    try:
        with pytest.raises(AuthFailure) as info:
            gw_auth.identify(_env(carol, "first-pass!word"), "GET")
        assert "locked" in info.value.message.lower()
    finally:
        with bots_app.app_context():
            service.user_by_name(carol).locked_until = None
            db.session.commit()


def test_refused_basic_login_is_one_warning_line_and_counts_toward_lockout(
        gw_auth, carol, bots_app, caplog, monkeypatch):
    """Web and gateway share the lockout; the 401 says how many tries are left or until when
    the account is locked; the log gets one line per refusal, no traceback (the password hash
    runs in gevent's thread pool, which prints every exception raised inside it)."""
    import io
    import logging

    from gevent import get_hub

    from app.auth import service
    from app.auth.models import LoginAttempts
    from app.extensions import db
    from app.runtime import bot_client

    monkeypatch.setattr(bot_client, "_in_gevent", lambda: True)  # the thread pool path
    hub_errors = io.StringIO()
    monkeypatch.setattr(get_hub(), "exception_stream", hub_errors)
    with bots_app.app_context():
        attempts = bots_app.extensions["btcw_settings"].settings.system.security \
            .max_login_attempts
    caplog.set_level(logging.WARNING, logger="app.gateway.auth")
    environ = {**_env(carol, "wrong-pass!word"), "REMOTE_ADDR": "203.0.113.7"}
    failures = []
    try:
        for _ in range(attempts):
            with pytest.raises(AuthFailure) as info:
                gw_auth.identify(environ, "GET")
            failures.append(info.value)
        first, last = failures[0], failures[-1]
        assert first.status == 401 and first.details == {"attempts_left": attempts - 1}
        assert f"({attempts - 1} attempts left)" in first.message
        assert set(last.details) == {"locked_until"}
        assert last.message.startswith(f"Account locked after {attempts} failed logins until ")
        with bots_app.app_context():  # the lock the login page honours too: this pair's
            pair = db.session.scalars(db.select(LoginAttempts).where(
                LoginAttempts.source == "203.0.113.7")).one()
            assert pair.locked_until is not None
        right = {**_env(carol, "first-pass!word"), "REMOTE_ADDR": "203.0.113.7"}
        with pytest.raises(AuthFailure) as info:  # the right password no longer helps from there
            gw_auth.identify(right, "GET")
        assert "locked" in info.value.message and info.value.details["locked_until"]
        elsewhere = {**_env(carol, "first-pass!word"), "REMOTE_ADDR": "198.51.100.4"}
        assert gw_auth.identify(elsewhere, "GET").username == carol  # the owner is not locked out

        records = [r for r in caplog.records if r.name == "app.gateway.auth"]
        assert len(records) == attempts + 1
        assert all(r.levelno == logging.WARNING and r.exc_info is None for r in records)
        assert "'gw-carol' from 203.0.113.7 refused: Invalid username or password" \
            in records[0].getMessage()
        assert hub_errors.getvalue() == "", "nothing printed by gevent's hub"
    finally:
        with bots_app.app_context():
            user = service.user_by_name(carol)
            user.locked_until, user.failed_logins = None, 0
            db.session.execute(db.delete(LoginAttempts).where(LoginAttempts.user_id == user.id))
            db.session.commit()


def test_gateway_tokens_die_with_a_password_change(gw_auth, carol, bots_app):
    from app.auth import service

    caller = gw_auth.identify(_env(carol, "first-pass!word"), "GET")
    tokens = gw_auth.issue_tokens(caller)
    bearer = {"HTTP_AUTHORIZATION": f"Bearer {tokens['access_token']}"}
    assert gw_auth.identify(bearer, "GET").method == "gateway_token"
    with bots_app.app_context():
        service.set_password(service.user_by_name(carol), "third-pass!word")
    with pytest.raises(AuthFailure) as info:
        gw_auth.identify(bearer, "GET")
    assert "password changed" in info.value.message


def test_gateway_tokens_die_with_a_sign_out(gw_auth, carol, bots_app):
    from app.auth import service

    caller = gw_auth.identify(_env(carol, "first-pass!word"), "GET")
    tokens = gw_auth.issue_tokens(caller)
    bearer = {"HTTP_AUTHORIZATION": f"Bearer {tokens['access_token']}"}
    assert gw_auth.identify(bearer, "GET").method == "gateway_token"
    with bots_app.app_context():
        service.end_sessions(service.user_by_name(carol))  # what a logout does
    with pytest.raises(AuthFailure) as info:
        gw_auth.identify(bearer, "GET")
    assert "signed out" in info.value.message
    with pytest.raises(AuthFailure):
        gw_auth.refresh_tokens({"HTTP_AUTHORIZATION": f"Bearer {tokens['refresh_token']}"})


def test_malformed_and_unknown_schemes(gw_auth):
    for header in ("Basic !!!notbase64", "Basic " + "bm9jb2xvbg==", "Digest abc", "Bearer "):
        with pytest.raises(AuthFailure):
            gw_auth.identify({"HTTP_AUTHORIZATION": header}, "GET")
    with pytest.raises(AuthFailure) as info:
        gw_auth.identify({}, "GET")
    assert "Login required" in info.value.message
