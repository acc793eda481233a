"""The Capacity and System pages: they render, refresh themselves, and survive Redis outages."""

from __future__ import annotations

import re

from app.monitoring import system_status
from app.tasks import PERIODIC_JOBS


def test_capacity_page_shows_numbers_chart_and_slider(auth, client, make_strategy):
    make_strategy(port=None)
    html = client.get("/capacity").get_data(as_text=True)
    for marker in ('id="tile-running"', 'id="tile-max"', 'id="tile-available"',
                   'id="tile-utilization"', 'id="tile-fit"', 'id="capacity-bar"',
                   'id="capacity-trend-chart"', 'data-hours="168"', 'id="threshold-slider"',
                   "8081-9080", "Recommendations", "vendor/echarts.min.js", "js/monitoring.js"):
        assert marker in html, marker
    running = re.search(r'id="tile-running">\s*<div class="stat-label">Running</div>\s*'
                        r'<div class="stat-value">(\d+)<', html)
    assert running and running.group(1) == "1"
    assert 'hx-trigger="every 30s, capacity-changed from:body"' in html
    assert 'class="progress-bar level-plenty"' in html


def test_capacity_and_strategies_pages_show_a_bot_s_memory_alike(auth, client, make_strategy):
    import os

    strategy = make_strategy(pid=os.getpid(), port=None)
    capacity_html = client.get("/capacity", headers={"HX-Request": "true"}).get_data(
        as_text=True)
    row = re.search(rf"<td>{strategy.name}</td><td class=\"num\">{os.getpid()}</td>"
                    r'<td class="num">([\d,]+ MiB)</td>\s*<td class="num">([\d,]+ MiB)</td>',
                    capacity_html)
    assert row, "the capacity page lists the bot process in MiB"
    pss, rss = row.groups()
    assert re.search(r"<dt>Bots' memory</dt><dd>[\d,]+ MiB PSS · [\d,]+ MiB RSS", capacity_html)
    # The page's measurement is what the strategies list shows: same figures, same unit.
    listing = client.get("/strategies/", headers={"HX-Request": "true"}).get_data(as_text=True)
    start = listing.index(f'id="strategy-row-{strategy.id}"')
    cells = listing[start:listing.index("</tr>", start)]
    assert f">{pss}</span>" in cells and f"RSS {rss}" in cells


def test_capacity_refresh_returns_the_fragment_only(auth, client):
    response = client.get("/capacity", headers={"HX-Request": "true"})
    html = response.get_data(as_text=True)
    assert html.lstrip().startswith('<div id="capacity-summary"')
    assert "<html" not in html and "HX-Request" in response.headers.get("Vary", "")


def test_system_page_shows_host_workers_jobs_alerts(auth, client, app):
    from app.monitoring.alerts import raise_alert

    system_status.sample_system()
    raise_alert("capacity", "Capacity utilisation is 85.00%, above 80%.", "warning")
    html = client.get("/system/").get_data(as_text=True)
    for marker in ('id="system-host"', 'id="host-cpu"', 'id="host-memory"', 'id="host-disk"',
                   'id="host-cpu-chart"', 'id="host-memory-chart"', 'id="system-workers"',
                   'id="system-jobs"', 'id="system-alerts"', 'id="system-health"',
                   "No worker is running", "above 80%"):
        assert marker in html, marker
    for path, *_ in PERIODIC_JOBS:
        assert path.rsplit(".", 1)[-1] in html


def test_each_panel_refreshes_on_its_own(auth, client):
    for name in ("health", "host", "workers", "jobs", "alerts"):
        html = client.get(f"/system/panels/{name}", headers={"HX-Request": "true"}).get_data(
            as_text=True)
        assert f'id="system-{name}"' in html and "<html" not in html
    assert client.get("/system/panels/nope").status_code == 404


def test_system_page_renders_while_redis_is_down(auth, client, redis_server):
    redis_server.stop()
    try:
        response = client.get("/system/")
        html = response.get_data(as_text=True)
        assert response.status_code == 200
        assert "Redis does not answer" in html
        assert 'id="system-host"' in html  # measured on the spot instead of from the cache
    finally:
        redis_server.start()


def test_pages_need_login(client):
    assert client.get("/capacity").status_code == 302
    assert client.get("/system/panels/host").status_code == 302


def test_strategy_pages_show_health_and_stall(auth, client, make_strategy, standin):
    import time

    from app.monitoring import bot_status

    paused = make_strategy(port=standin(state="stopped").port)
    stuck = make_strategy(port=standin(candles_stop_at=time.time() - 900).port)
    bot_status.sweep_strategies()
    detail = client.get(f"/strategies/{paused.id}").get_data(as_text=True)
    assert "−20 bot state is stopped" in detail
    assert "answers in" in detail
    stuck_page = client.get(f"/strategies/{stuck.id}").get_data(as_text=True)
    assert "badge-stalled" in stuck_page and "no new candle for" in stuck_page
    assert "−20 stalled: no new candle" in stuck_page
    assert "stalled after 5 min" in stuck_page
    listing = client.get("/strategies/").get_data(as_text=True)
    assert "badge-stalled" in listing and ">80<" in listing
