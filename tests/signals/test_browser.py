"""The signals page in a real browser (Debian's Chromium through Playwright) against gunicorn +
gevent: new signals appear at the top without a reload, filters narrow the live feed too."""

from __future__ import annotations

import pytest
import requests

from tests.signals.conftest import strategy_msg
from tests.support.browser import logged_in_page

pytestmark = pytest.mark.browser
SHOTS = None  # a Path keeps the screenshots for a look



@pytest.fixture
def page(live_web, user, browser):
    return logged_in_page(browser, live_web.url, "/signals/", width=1280, height=900)


def post(live_web, strategy, body) -> int:
    response = requests.post(
        f"{live_web.url}/api/v1/signals/webhook/{strategy.id}?token={strategy.webhook_token}",
        json=body, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["id"]


def wait_live(page) -> None:
    """Until the page's WebSocket is open (the live dot turns green)."""
    page.wait_for_function(
        "() => { const d = document.querySelector('#signals-live .live-dot');"
        " return d && d.title === 'Live'; }", timeout=15000)


def test_new_signals_appear_without_reload(page, live_web, make_strategy, tmp_path):
    rsi, other = make_strategy("RSI_ETH"), make_strategy("MACD_DOT")
    page.goto(f"{live_web.url}/signals/")  # the strategy filter lists them now
    wait_live(page)
    page.evaluate("window.__notReloaded = true")
    first = post(live_web, rsi, strategy_msg(strength=0.91))
    page.wait_for_selector(f"#signal-{first}", timeout=15000)
    second = post(live_web, rsi, strategy_msg(strength=0.5, action="exit_long"))
    page.wait_for_selector(f"#signal-{second}", timeout=15000)
    rows = page.eval_on_selector_all("#signal-rows tr[data-signal-id]",
                                     "rows => rows.map(r => r.dataset.signalId)")
    assert rows[:2] == [str(second), str(first)]  # newest at the top
    assert page.evaluate("window.__notReloaded") is True
    assert page.query_selector("#signals-empty") is None  # the "no signals" row went away
    assert "strong" in page.inner_text(f"#signal-{first}")
    assert "2 new" in page.inner_text("#signals-new-badge")

    # Filter to one strategy: the list and its live feed follow the filter.
    page.select_option("#field-strategy_id", str(other.id))
    page.wait_for_function(
        f"() => document.querySelector('#signals-list').getAttribute('ws-connect')"
        f".includes('strategy_id={other.id}')", timeout=15000)
    wait_live(page)
    hidden = post(live_web, rsi, strategy_msg(strength=0.8, candle="2026-11-24T21:00:00Z"))
    page.wait_for_function(
        "() => document.querySelector('#signals-new-badge').innerText"
        ".includes('1 outside filter')", timeout=15000)
    assert page.query_selector(f"#signal-{hidden}") is None
    shown = post(live_web, other, strategy_msg(strength=0.7))
    page.wait_for_selector(f"#signal-{shown}", timeout=15000)
    assert "strategy_id=" in page.url  # the filter is in the address bar
    page.screenshot(path=str(SHOTS / "signals.png") if SHOTS else str(tmp_path / "s.png"),
                    full_page=True)
    assert page.errors == []


def test_signal_detail_from_the_list(page, live_web, strategy):
    wait_live(page)
    signal_id = post(live_web, strategy, strategy_msg(strength=0.66))
    page.wait_for_selector(f"#signal-{signal_id}", timeout=15000)
    page.click(f"#signal-{signal_id} a:has-text('Details')")
    page.wait_for_url(f"{live_web.url}/signals/{signal_id}")
    text = page.inner_text("main")
    assert "medium" in text and "P1" in text and "rsi" in text and "21.4" in text
    if SHOTS:
        page.screenshot(path=str(SHOTS / "detail.png"), full_page=True)
        page.goto(f"{live_web.url}/signals/?level=weak")
        page.screenshot(path=str(SHOTS / "empty.png"), full_page=True)
    assert page.errors == []
