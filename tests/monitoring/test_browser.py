"""The capacity dashboard in a real browser (Debian's Chromium through Playwright)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from app.clock import utcnow
from app.extensions import db
from app.monitoring import capacity, system_status
from app.monitoring.models import MetricSample
from tests.support.browser import logged_in_page

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]




def _history() -> None:
    """A week of capacity samples: busier in the older days, so 7 d shows more than 24 h."""
    now = utcnow()
    for i in range(7 * 24):  # hourly for 7 days
        hours_ago = i
        value = 2.0 if hours_ago < 24 else 6.0 + (hours_ago % 24) / 8
        db.session.add(MetricSample(
            kind="capacity", recorded_at=now - timedelta(hours=hours_ago),
            data={"utilization_percent": value / 10, "effective_utilization_percent": value,
                  "running_strategies": 1}))
    db.session.commit()


def test_capacity_dashboard_in_chromium(live_server, browser, make_strategy):
    make_strategy(port=None)
    _history()
    system_status.sample_system()
    page = logged_in_page(browser, live_server, "/capacity")
    errors = page.errors

    # The numbers.
    assert page.inner_text("#tile-running .stat-value").strip() == "1"
    assert page.inner_text("#tile-max .stat-value").strip() == "999"
    assert page.inner_text("#tile-available .stat-value").strip() == "998"
    assert page.inner_text("#tile-utilization .stat-value").strip() == "0.10%"
    assert int(page.inner_text("#tile-fit .stat-value")) > 0
    assert "8081-9080" in page.inner_text("#capacity-bar + .progress-meta")
    assert page.locator("#capacity-recommendations li").count() >= 3

    # The chart: a canvas drawn from the JSON API, 24 h first.
    chart = page.locator("#capacity-trend-chart")
    page.wait_for_selector("#capacity-trend-chart canvas")
    page.wait_for_function(
        "document.querySelector('#capacity-trend-chart').dataset.hours === '24'")
    day_points = int(chart.get_attribute("data-points"))
    assert 20 <= day_points <= 30  # 24 hourly samples + the current figure
    assert page.inner_text("#trend-current .stat-value").strip().endswith("%")

    # Switch to 7 days.
    page.click("button[data-hours='168']")
    page.wait_for_function(
        "document.querySelector('#capacity-trend-chart').dataset.hours === '168'")
    assert int(chart.get_attribute("data-points")) > 150
    assert page.get_attribute("button[data-hours='168']", "aria-pressed") == "true"
    assert page.get_attribute("button[data-hours='24']", "aria-pressed") == "false"
    assert page.inner_text("#trend-peak .stat-value").strip() == "8.88%"

    # Move the slider with the keyboard (80 -> 70) and save.
    slider = page.locator("#threshold-slider")
    slider.focus()
    for _ in range(10):
        page.keyboard.press("ArrowLeft")
    assert page.inner_text("#threshold-value") == "70"
    page.click("#capacity-threshold button[type=submit]")
    page.wait_for_selector("#capacity-threshold >> text=Capacity alert threshold set to 70%")
    db.session.rollback()
    assert capacity.alert_threshold() == 70.0
    assert page.get_attribute("#threshold-slider", "value") == "70"
    page.wait_for_selector("#capacity-summary >> text=alert threshold 70%")  # it refreshed

    out = ROOT / "test-output"
    out.mkdir(exist_ok=True)
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(out / "capacity.png"), full_page=True)
    assert (out / "capacity.png").stat().st_size > 10_000
    assert not errors, errors


def test_system_page_in_chromium(live_server, browser):
    from app.monitoring.alerts import raise_alert

    system_status.sample_system()
    system_status.sample_system()
    raise_alert("bot_stalled", "Strategy demo (id 1) is stalled: no new candle for 6.0 min.")
    page = logged_in_page(browser, live_server, "/system/")
    errors = page.errors
    assert page.inner_text("#host-memory .stat-value").strip().endswith("%")
    page.wait_for_selector("#host-cpu-chart canvas")
    page.wait_for_selector("#host-memory-chart canvas")
    page.wait_for_function("document.querySelector('#host-cpu-chart').dataset.points === '2'")
    system_status.sample_system()  # pushed over /ws/monitoring: tiles and chart update
    page.wait_for_function("document.querySelector('#host-cpu-chart').dataset.points === '3'",
                           timeout=20000)
    page.click("button[data-query='hours=168']")
    page.wait_for_function(
        "document.querySelector('#host-cpu-chart').dataset.query === 'hours=168'")
    assert "five-minute averages" in page.inner_text("#host-charts-note")
    page.click("button[data-query='minutes=60']")
    page.wait_for_function(
        "document.querySelector('#host-cpu-chart').dataset.query === 'minutes=60'")
    assert "sample_system" in page.inner_text("#system-jobs")
    assert "no new candle" in page.inner_text("#system-alerts")
    assert "No worker is running" in page.inner_text("#system-workers")
    out = ROOT / "test-output"
    out.mkdir(exist_ok=True)
    page.screenshot(path=str(out / "system.png"), full_page=True)
    assert not errors, errors
