"""FreqTrade versions page and API: bad requests are refused before anything is queued or
stopped, one upgrade at a time, a downgrade past the trade-database migrations is refused."""

from __future__ import annotations

import pytest

from app.extensions import db, redis_store
from app.runtime import upgrades, versions
from app.runtime.models import FreqtradeUpgrade
from app.strategies.models import Strategy


@pytest.fixture
def headers(api_token):
    return {"Authorization": f"Bearer {api_token}"}


@pytest.fixture
def two(app):
    rows = [Strategy(name=f"v{n}", strategy_class="MA_Cross_BTC", strategy_file="ma.py",
                     api_username="u", api_password="p", jwt_secret="j", ws_token="w",
                     webhook_token=f"t{n}") for n in (1, 2)]
    db.session.add_all(rows)
    db.session.commit()
    return rows


def test_the_page_and_the_api_list_the_default_release(client, headers, two):
    page = client.get("/system/freqtrade", headers=headers)
    assert page.status_code == 200 and versions.default_version().encode() in page.data
    listed = client.get("/api/v1/freqtrade/versions", headers=headers).get_json()
    assert listed["default"] == versions.default_version()
    default = next(v for v in listed["versions"] if v["default"])
    assert sorted(default["strategies"]) == sorted(s.id for s in two)


@pytest.mark.parametrize(("body", "status", "words"), [
    ({"version": "latest"}, 400, "is not a FreqTrade release"),
    ({"version": "2026.9; rm -rf /"}, 400, "is not a FreqTrade release"),
    ({"version": 2026.9}, 400, "is not a FreqTrade release"),
    ({"version": "2026.9", "strategies": [999999]}, 404, "999999"),
    ({"version": "2026.9", "strategies": "some"}, 400, "list of strategy ids"),
    ({"version": "2026.9", "strategies": [True]}, 400, "list of strategy ids"),
])
def test_bad_upgrade_requests_are_refused_naming_the_problem(client, headers, two, body,
                                                             status, words):
    response = client.post("/api/v1/freqtrade/upgrade", headers=headers, json=body)
    assert response.status_code == status, response.get_json()
    assert words in response.get_json()["message"]
    assert db.session.query(FreqtradeUpgrade).count() == 0


def test_a_downgrade_past_the_migrations_is_refused_before_anything(client, headers, two):
    response = client.post("/api/v1/freqtrade/upgrade", headers=headers,
                           json={"version": "2026.1", "strategies": [two[0].id]})
    assert response.status_code == 422
    assert "only go forward" in response.get_json()["message"]


def test_one_upgrade_at_a_time(client, headers, two):
    first = client.post("/api/v1/freqtrade/upgrade", headers=headers,
                        json={"version": versions.default_version(), "strategies": "all"})
    assert first.status_code == 202 and first.get_json()["status"] == "queued"
    assert redis_store.queue(upgrades.QUEUE).count == 1
    second = client.post("/api/v1/freqtrade/upgrade", headers=headers,
                         json={"version": versions.default_version()})
    assert second.status_code == 409 and "one upgrade runs at a time" in second.get_json()[
        "message"]
    history = client.get("/api/v1/freqtrade/upgrades", headers=headers).get_json()["upgrades"]
    assert history[0]["status"] == "queued" and sorted(history[0]["strategies"]) == sorted(
        s.id for s in two)
    assert client.get("/api/v1/freqtrade/upgrades/999", headers=headers).status_code == 404


def test_removing_the_default_or_an_unknown_release_is_refused(client, headers):
    default = client.delete(f"/api/v1/freqtrade/versions/{versions.default_version()}",
                            headers=headers)
    assert default.status_code == 409 and "default" in default.get_json()["message"]
    unknown = client.delete("/api/v1/freqtrade/versions/2026.2", headers=headers)
    assert unknown.status_code == 404


def test_a_strategy_can_only_name_an_installed_release(client, headers, two):
    response = client.patch(f"/api/v1/strategies/{two[0].id}", headers=headers,
                            json={"freqtrade_version": "2026.3"})
    assert response.status_code == 422
    assert "not installed" in str(response.get_json())
