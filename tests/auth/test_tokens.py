"""API tokens can be listed, revoked and made to expire: CLI, page and JSON API."""

from __future__ import annotations

from datetime import timedelta

from app.auth import service
from app.clock import utcnow
from app.extensions import db
from tests.conftest import csrf_from

API = "/api/v1/auth/tokens"


def _bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def test_api_lists_creates_and_revokes_without_ever_showing_a_stored_token(client, api_token):
    made = client.post(API, json={"name": "backup-script", "expires_days": 30},
                       headers=_bearer(api_token))
    assert made.status_code == 201
    body = made.get_json()
    plain = body["token"]
    assert plain.startswith("btcw_") and body["state"] == "active" and body["expires_at"]
    assert client.get("/api/v1/strategies", headers=_bearer(plain)).status_code == 200
    listed = client.get(API, headers=_bearer(api_token))
    text = listed.get_data(as_text=True)
    assert plain not in text and api_token not in text
    names = {t["name"]: t for t in listed.get_json()["tokens"]}
    assert set(names) == {"tests", "backup-script"}
    assert names["tests"]["last_used_at"] is not None  # this very request used it
    revoked = client.delete(f"{API}/{body['id']}", headers=_bearer(api_token))
    assert revoked.status_code == 200 and revoked.get_json()["state"] == "revoked"
    assert client.get("/api/v1/strategies", headers=_bearer(plain)).status_code == 401


def test_bad_token_requests_are_4xx_naming_the_problem(client, api_token):
    for body, word in (({"name": ""}, "Token name"), ({"name": 5}, "Token name"),
                       ({"name": "x", "expires_days": 0}, "expires_days"),
                       ({"name": "x", "expires_days": 10**9}, "expires_days"),
                       ({"name": "x", "expires_days": "soon"}, "expires_days"),
                       ({"name": "x", "expires_days": True}, "expires_days"),
                       ([1], "body")):
        response = client.post(API, json=body, headers=_bearer(api_token))
        assert response.status_code == 400, body
        assert word in response.get_json()["message"], body
    missing = client.delete(f"{API}/999999", headers=_bearer(api_token))
    assert missing.status_code == 404 and "No token with id 999999" in missing.get_json()["message"]


def test_an_expired_token_stops_working(app, user):
    token, plain = service.create_token(user, "short", expires_days=1)
    assert service.user_for_token(plain) is not None
    assert service.user_for_token(plain, now=utcnow() + timedelta(days=1, seconds=1)) is None
    token.expires_at = utcnow() - timedelta(seconds=1)
    db.session.commit()
    assert service.token_state(token) == "expired"


def test_the_page_makes_a_token_shows_it_once_and_revokes_it(auth, client):
    page = client.get("/tokens")
    assert page.status_code == 200 and "No API tokens" in page.get_data(as_text=True)
    made = client.post("/tokens", data={"name": "grafana", "expires_days": "",
                                        "csrf_token": csrf_from(page.get_data(as_text=True))})
    html = made.get_data(as_text=True)
    assert made.status_code == 201 and "not shown again" in html
    plain = html.split('<code>btcw_', 1)[1].split("<", 1)[0]
    again = client.get("/tokens").get_data(as_text=True)
    assert plain not in again and "grafana" in again and "never" in again
    token = service.list_tokens()[0]
    revoked = client.post(f"/tokens/{token.id}/revoke",
                          data={"csrf_token": csrf_from(again)})
    assert revoked.status_code == 200 and "revoked" in revoked.get_data(as_text=True)


def test_cli_lists_and_revokes(runner, user):
    created = runner.invoke(args=["tokens", "create", "ci", "--expires-days", "7"])
    assert created.exit_code == 0, created.output
    plain = created.output.strip().splitlines()[-1]
    listed = runner.invoke(args=["tokens", "list"])
    assert listed.exit_code == 0 and "ci" in listed.output and "active" in listed.output
    assert plain not in listed.output
    token_id = service.list_tokens()[0].id
    revoked = runner.invoke(args=["tokens", "revoke", str(token_id)])
    assert revoked.exit_code == 0 and "revoked" in revoked.output
    assert service.user_for_token(plain) is None
    missing = runner.invoke(args=["tokens", "revoke", "999999"])
    assert missing.exit_code != 0 and "No token with id 999999" in missing.output
