"""Strategies API and pages against real FreqTrade bots (the shared demo bots of tests/bots.py).

Nothing here starts a bot of its own: the read-only tests use the two running demo bots, and the
last test stops one demo bot through the API and starts it again, waiting until it runs.
"""

from __future__ import annotations

import time

import psutil
import pytest
import requests

from tests.conftest import AuthActions

pytestmark = pytest.mark.bots
BASE = "/api/v1/strategies"


@pytest.fixture
def headers(bots_api_token) -> dict:
    return {"Authorization": f"Bearer {bots_api_token}"}


@pytest.fixture
def logged_in(bots_client, bots_api_token):
    """bots_client with a session of the bots world's user."""
    response = AuthActions(bots_client).login("botsadmin")
    assert response.status_code == 302
    return bots_client


def _row(strategy_id: int):
    from app.extensions import db
    from app.strategies.models import Strategy

    db.session.rollback()
    return db.session.get(Strategy, strategy_id, populate_existing=True)


def test_overview_and_list_show_the_running_bots(bots_ctx, demo_bots, bots_client, headers):
    body = bots_client.get(f"{BASE}/overview", headers=headers).get_json()
    rows = {s["id"]: s for s in body["strategies"]}
    for bot in demo_bots:
        assert rows[bot.id]["is_running"] is True
        assert rows[bot.id]["upstream_url"] == (f"http://{rows[bot.id]['host']}:"
                                                f"{rows[bot.id]['port']}")
    assert body["summary"]["running_strategies"] >= 2
    assert body["capacity"]["running_strategies"] >= 2
    assert body["port_pool"]["allocated_ports"] >= 2


def test_list_page_shows_process_and_bot_figures(bots_ctx, demo_bots, logged_in):
    from app.monitoring.bot_status import sweep_strategies

    sweep_strategies()  # the monitoring job that measures CPU and memory every 30 s
    html = logged_in.get("/strategies/", headers={"HX-Request": "true"}).get_data(as_text=True)
    for bot in demo_bots:
        row = _row(bot.id)
        start = html.index(f'id="strategy-row-{bot.id}"')
        cells = html[start:html.index("</tr>", start)]
        assert f">{row.port}<" in cells and f">pid {row.pid}<" in cells
        assert " MiB</span>" in cells and "%</span>" in cells  # the sweep's measurement
        assert "no answer" not in cells and "USDT</span>" in cells  # profit from the bot


def test_detailed_status_comes_from_the_process_and_the_bot(bots_ctx, demo_bots, bots_client,
                                                          headers):
    from app.monitoring.capacity import measure_bots

    bot = demo_bots[0]
    measure_bots()  # what the status sweep does
    body = bots_client.get(f"{BASE}/{bot.id}/status/detailed", headers=headers).get_json()
    row = _row(bot.id)
    assert body["basic_status"]["status"] == "running"
    process = body["process"]
    assert process["pid"] == row.pid
    assert process["memory_rss"] == pytest.approx(psutil.Process(row.pid).memory_info().rss,
                                                  rel=0.5)
    assert 0 < process["memory_pss"] <= process["memory_rss"]
    assert process["cpu_percent"] >= 0 and process["measured_at"].endswith("Z")
    assert process["uptime_seconds"] >= 0
    data = body["detailed_data"]
    assert data["bot"] == "reachable" and data["errors"] == {}
    # FreqTrade trades 99 % of the wallet (tradable_balance_ratio).
    assert data["balance"]["starting_capital"] == pytest.approx(row.dry_run_wallet * 0.99)
    assert data["balance"]["stake"] == "USDT"
    assert "profit_all_coin" in data["profit"] and "trade_count" in data["profit"]
    assert data["count"]["max"] == row.max_open_trades
    assert isinstance(data["status"], list) and "trades" in data["trades"]


def test_detail_page_shows_profit_and_balance_from_the_bot(bots_ctx, demo_bots, logged_in):
    from app.runtime.bot_client import BotClient

    bot = demo_bots[0]
    row = _row(bot.id)
    balance = BotClient.for_strategy(row).balance()
    page = logged_in.get(f"/strategies/{bot.id}").get_data(as_text=True)
    assert f"/strategies/{bot.id}/bot" in page and "badge-running" in page
    html = logged_in.get(f"/strategies/{bot.id}/bot",
                         headers={"HX-Request": "true"}).get_data(as_text=True)
    assert 'id="tile-profit"' in html and 'id="tile-balance"' in html
    # FreqTrade's starting_capital is the tradable part of the dry-run wallet, said so.
    assert (f"tradable {balance['starting_capital']:.2f} (FreqTrade keeps a 1 % reserve)"
            in html)
    assert f"starting {balance['starting_capital']:.2f}" not in html
    assert "Open trades" in html and "Recent trades" in html
    assert "Bot unreachable" not in html


def test_logs_come_from_the_bot(bots_ctx, demo_bots, bots_client, headers):
    bot = demo_bots[1]
    body = bots_client.get(f"{BASE}/{bot.id}/logs?limit=20", headers=headers).get_json()
    assert body["source"] == "bot" and body["limit"] == 20, body.get("note")
    assert 1 <= body["log_count"] <= 20
    assert all(line["level"] in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
               for line in body["logs"])
    assert any(line["logger"].startswith("freqtrade") for line in body["logs"])


def test_reload_config_through_the_api(bots_ctx, demo_bots, bots_client, headers):
    bot = demo_bots[0]
    row = _row(bot.id)
    response = bots_client.post(f"{BASE}/{bot.id}/commands/reload_config", headers=headers)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["status"] == "success" and "reload" in str(body["bot_reply"]).lower()
    # The same process keeps serving, and it is trading again shortly.
    deadline = time.monotonic() + 60
    state = None
    while time.monotonic() < deadline:
        try:
            state = requests.get(f"http://{row.host}:{row.port}/api/v1/show_config",
                                 auth=(row.api_username, row.api_password),
                                 timeout=3).json().get("state")
        except (requests.RequestException, ValueError):
            state = None
        if state == "running":
            break
        time.sleep(0.5)
    assert state == "running"
    assert _row(bot.id).pid == row.pid


def test_stop_start_and_restart_from_the_api(bots_ctx, demo_bots, bots_client, headers):
    from app.runtime import control

    bot = demo_bots[1]
    old = _row(bot.id)
    assert old.status == "running" and old.pid, (old.status, old.status_message)
    old_pid = old.pid  # the row object itself is refreshed by the waits below
    try:
        response = bots_client.post(f"{BASE}/{bot.id}/stop?wait=60", headers=headers)
        assert response.status_code == 200, response.get_json()
        body = response.get_json()
        assert body["strategy_status"] == "stopped" and body["message"].endswith("is stopped.")
        assert not psutil.pid_exists(old_pid) or psutil.Process(old_pid).status() == "zombie"
        # With the bot down: the status says so, and logs come from the bot's log file.
        detailed = bots_client.get(f"{BASE}/{bot.id}/status/detailed", headers=headers)
        assert detailed.get_json()["detailed_data"]["bot"] == "not_running"
        logs = bots_client.get(f"{BASE}/{bot.id}/logs?limit=50", headers=headers).get_json()
        assert logs["source"] == "file" and logs["log_count"] > 0

        response = bots_client.post(f"{BASE}/{bot.id}/start?wait=120", headers=headers)
        assert response.status_code == 200, response.get_json()
        body = response.get_json()
        assert body["strategy_status"] == "running" and body["pid"] != old_pid
        row = _row(bot.id)
        ping = requests.get(f"http://{row.host}:{row.port}/api/v1/ping", timeout=5).json()
        assert ping == {"status": "pong"}

        started_pid = row.pid
        response = bots_client.post(f"{BASE}/{bot.id}/commands/restart?wait=120",
                                    headers=headers)
        assert response.status_code == 200, response.get_json()
        body = response.get_json()
        assert body["strategy_status"] == "running" and body["pid"] not in (started_pid, None)
    finally:
        row = _row(bot.id)
        if row.status != "running":  # leave the demo bot running for the other tests
            if row.status in control.STOPPED_STATUSES:
                control.request_start(bot.id)
            control.wait_for_status(bot.id, ("running",), 120)
