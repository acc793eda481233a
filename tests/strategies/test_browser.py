"""List pages in a real browser (Debian's Chromium through Playwright): a long strategy list
grows with the page and the page scrolls, not a box inside it; the signal and notification lists
do the same."""

from __future__ import annotations

import pytest

from tests.strategies.conftest import valid_payload
from tests.support.browser import logged_in_page

pytestmark = pytest.mark.browser

# How the table wrapper of a list is laid out: its own max-height and whether it scrolls.
WRAP_LAYOUT = """selector => {
  const wrap = document.querySelector(selector);
  return {maxHeight: getComputedStyle(wrap).maxHeight,
          innerScroll: wrap.scrollHeight - wrap.clientHeight,
          pageHeight: document.scrollingElement.scrollHeight,
          viewport: window.innerHeight};
}"""



@pytest.fixture
def page(live_server, browser):
    return logged_in_page(browser, live_server, "/strategies/", width=1280, height=800)


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
