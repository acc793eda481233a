"""List pages in a real browser (Debian's Chromium through Playwright): a long strategy list
grows with the page and the page scrolls, not a box inside it; the signal and notification lists
do the same."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tests.conftest import PASSWORD
from tests.strategies.conftest import valid_payload

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# How the table wrapper of a list is laid out: its own max-height and whether it scrolls.
WRAP_LAYOUT = """selector => {
  const wrap = document.querySelector(selector);
  return {maxHeight: getComputedStyle(wrap).maxHeight,
          innerScroll: wrap.scrollHeight - wrap.clientHeight,
          pageHeight: document.scrollingElement.scrollHeight,
          viewport: window.innerHeight};
}"""


@pytest.fixture
def live_server(app, user):
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def page(live_server):
    playwright_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (make test-packages installs it)")
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        tab = browser.new_page(viewport={"width": 1280, "height": 800})
        tab.goto(f"{live_server}/login?next=/strategies/")
        tab.fill("#username", "alice")
        tab.fill("#password", PASSWORD)
        tab.click("button[type=submit]")
        tab.wait_for_url(f"{live_server}/strategies/")
        yield tab
        browser.close()


def test_long_lists_scroll_with_the_page(app, library_dir, live_server, page, tmp_path):
    """The lists use .table-wrap-full: no 72vh box with its own scrollbar."""
    from app.strategies import service

    for number in range(40):
        service.create_strategy(valid_payload(name=f"list-{number:02d}"))
    page.goto(f"{live_server}/strategies/")
    page.wait_for_selector("tr[id^=strategy-row-]")
    assert page.locator("tr[id^=strategy-row-]").count() == 40
    layout = page.evaluate(WRAP_LAYOUT, "#strategy-list .table-wrap")
    assert layout["maxHeight"] == "none" and layout["innerScroll"] == 0, layout
    assert layout["pageHeight"] > layout["viewport"] * 1.5, "the page itself scrolls"
    page.screenshot(path=str(tmp_path / "strategies-list.png"), full_page=True)
    page.mouse.wheel(0, 2000)
    page.wait_for_function("window.scrollY > 0")
    assert page.is_visible("tr[id^=strategy-row-]:last-child")

    for url, selector in (("/signals/", "#signals-list .table-wrap"),
                          ("/notifications/", "#notification-history .table-wrap"),
                          ("/notifications/inbox", "#inbox-list .table-wrap")):
        page.goto(f"{live_server}{url}")
        page.wait_for_selector(selector)
        assert page.evaluate(WRAP_LAYOUT, selector)["maxHeight"] == "none", url
        page.screenshot(path=str(tmp_path / f"list{url.replace('/', '-').rstrip('-')}.png"))
