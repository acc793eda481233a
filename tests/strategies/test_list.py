"""The strategies list at fleet size: pages, search, filters, sorts, bulk actions with progress,
and figures read from the status sweep's cache — the list never calls a bot."""

from __future__ import annotations

import json
import re
import time

import pytest

from app.extensions import db, redis_store
from app.monitoring.bot_status import STATUS_KEY
from app.runtime import bot_client
from app.strategies.models import Strategy

BASE = "/api/v1/strategies"


@pytest.fixture
def fleet(app):
    """120 strategies; every third one 'running' on a port nothing listens on, with what a
    status sweep caches (profit rising with the id)."""
    rows = [Strategy(name=f"fleet-{n:03d}", strategy_class="RSI_ETH" if n % 2 else "MA_Cross_BTC",
                     strategy_file="x.py", pairs=["ETH/USDT" if n % 2 else "BTC/USDT"],
                     api_username="u", api_password="p", jwt_secret="j" * 32, ws_token="w",
                     webhook_token=f"t{n}") for n in range(120)]
    db.session.add_all(rows)
    db.session.commit()
    now = time.time()
    for n, row in enumerate(rows):
        if n % 3 == 0:
            row.status, row.desired_state, row.port, row.pid = "running", "running", 1, 10**6 + n
            row.host, row.health_score = "10.255.255.1", n % 100
            redis_store.client.set(STATUS_KEY.format(id=row.id), json.dumps({
                "status": "healthy", "last_update": now - 12, "error": None,
                "summary": {"profit_all_coin": float(n), "open_trades": 1,
                            "max_open_trades": 3}}))
    db.session.commit()
    return rows


@pytest.fixture
def no_bot_calls(monkeypatch):
    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise AssertionError("a list page called a bot")

    monkeypatch.setattr(bot_client.BotClient, "get", refuse)
    return calls


def test_the_list_is_paged_and_reads_the_sweep_cache(auth, client, fleet, no_bot_calls):
    page = client.get("/strategies/").get_data(as_text=True)
    assert len(re.findall(r'id="strategy-row-\d+"', page)) == 50
    assert "Page 1 of 3" in page and "120 of 120 match" in page
    assert "+36.00" not in page or "fleet-036" in page
    last = client.get("/strategies/?page=3").get_data(as_text=True)
    assert len(re.findall(r'id="strategy-row-\d+"', last)) == 20 and "Page 3 of 3" in last
    assert no_bot_calls == []


def test_search_filter_and_sort(client, api_headers, fleet, no_bot_calls):
    body = client.get(f"{BASE}?q=fleet-01&per_page=200", headers=api_headers).get_json()
    assert sorted(s["name"] for s in body["strategies"]) == [f"fleet-{n:03d}"
                                                             for n in range(10, 20)]
    by_class = client.get(f"{BASE}?q=rsi_eth&per_page=200", headers=api_headers).get_json()
    assert by_class["matching"] == 60
    by_pair = client.get(f"{BASE}?q=btc/usdt&status=running&per_page=200",
                         headers=api_headers).get_json()
    assert {s["strategy_class"] for s in by_pair["strategies"]} == {"MA_Cross_BTC"}
    assert all(s["status"] == "running" for s in by_pair["strategies"])
    profit = client.get(f"{BASE}?sort=profit&per_page=5", headers=api_headers).get_json()
    assert [s["bot"]["profit_all_coin"] for s in profit["strategies"]] == [
        117.0, 114.0, 111.0, 108.0, 105.0]
    assert profit["strategies"][0]["bot"]["measured_at"]
    health = client.get(f"{BASE}?sort=health&per_page=3", headers=api_headers).get_json()
    assert [s["health_score"] for s in health["strategies"]] == [99, 96, 93]
    host = client.get(f"{BASE}?host=10.255.255.1&per_page=200", headers=api_headers).get_json()
    assert host["matching"] == 40
    assert no_bot_calls == []


@pytest.mark.parametrize(("query", "words"), [
    ("page=0", "page must be"), ("per_page=5000", "per_page must be"),
    ("page=abc", "whole number"), ("sort=cpu_time", "sort: unknown"),
    ("status=sleeping", "sleeping"), ("q=" + "x" * 101, "at most 100"),
])
def test_bad_list_queries_name_the_parameter(client, api_headers, fleet, query, words):
    answer = client.get(f"{BASE}?{query}", headers=api_headers)
    assert answer.status_code == 400 and words in answer.get_json()["message"]


def test_bulk_start_of_the_filtered_reports_progress(client, api_headers, fleet):
    answer = client.post(f"{BASE}/bulk", headers=api_headers, json={
        "action": "start", "filter": {"q": "fleet-00", "status": "stopped"}})
    assert answer.status_code == 202, answer.get_json()
    operation = answer.get_json()
    assert operation["total"] == 6  # fleet-001..009 minus the running 000, 003, 006, 009
    assert operation["done"] == 0 and operation["pending"] == 6 and not operation["finished"]
    started = db.session.scalars(db.select(Strategy).where(
        Strategy.id.in_(operation["requested"]))).all()
    assert {s.desired_state for s in started} == {"running"}
    for row in started:  # what the supervisor would report
        row.status = "running"
    db.session.commit()
    progress = client.get(f"{BASE}/bulk/{operation['id']}", headers=api_headers).get_json()
    assert progress["done"] == 6 and progress["finished"]
    assert client.get(f"{BASE}/bulk/nope", headers=api_headers).status_code == 404
    bad = client.post(f"{BASE}/bulk", headers=api_headers, json={"action": "explode",
                                                                 "ids": [1]})
    assert bad.status_code == 400 and "action" in bad.get_json()["message"]
    unknown = client.post(f"{BASE}/bulk", headers=api_headers, json={"action": "stop",
                                                                     "ids": [10**9]})
    assert unknown.status_code == 404


def test_bulk_from_the_page_shows_progress(auth, client, fleet):
    stopped = [r.id for r in fleet if r.status != "running"][:3]
    answer = client.post("/strategies/bulk", data={
        "csrf_token": auth.csrf(), "action": "start", "scope": "selected",
        "ids": [str(i) for i in stopped]})
    assert answer.status_code == 303
    target = answer.headers["Location"]
    assert "bulk=" in target
    page = client.get(target).get_data(as_text=True)
    assert 'id="bulk-progress"' in page and "of 3" in page
