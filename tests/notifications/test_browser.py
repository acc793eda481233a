"""The notification pages in a real browser (Debian's Chromium through Playwright): the settings
page's htmx forms, the send-test button, the inbox and the live bell."""

from __future__ import annotations

import pytest

from app.notifications import service
from tests.support.browser import logged_in_page

pytestmark = pytest.mark.browser




@pytest.fixture
def page(live_server, browser):
    return logged_in_page(browser, live_server, "/notifications/settings", width=1280, height=900)


def test_add_a_channel_and_send_a_test_from_the_settings_page(page, config_file,
                                                              http_receiver, tmp_path):
    page.select_option("#channel-type", "webhook")
    page.wait_for_selector("#ch-webhook_url")  # htmx swapped in the webhook fields
    page.fill("#channel-name", "desk")
    page.fill("#ch-webhook_url", f"{http_receiver.url}/desk")
    page.fill("#ch-secret", "desk-secret")
    page.click("#channel-form button[type=submit]")
    page.wait_for_selector("#channel-desk")
    assert "desk-secret" not in page.content()
    assert "Channel desk saved" in page.inner_text("#toasts")

    page.click("#channel-desk button:has-text('Send test')")
    page.wait_for_function("document.querySelector('#toasts').innerText.includes('Test')")
    assert "Test message sent on desk" in page.inner_text("#toasts")
    (request,) = http_receiver.wait_for(1)
    assert request.json["kind"] == "test" and request.headers["X-BTCW-Signature"]

    # a field error stays in the form
    page.fill("#channel-name", "Bad Name")
    page.fill("#ch-webhook_url", "ftp://nope")
    page.click("#channel-form button[type=submit]")
    page.wait_for_selector("#channel-form .field.has-error")
    form_text = page.inner_text("#channel-form")
    assert "must start with http://" in form_text and "1-32 of a-z" in form_text
    page.screenshot(path=str(tmp_path / "settings.png"), full_page=True)
    assert page.errors == []


def test_inbox_marks_read_and_the_bell_follows(page, live_server, configure, make_signal,
                                               tmp_path):
    configure(channels={})
    for pair in ("BTC/USDT", "ETH/USDT"):
        service.notify_signal(make_signal(pair, "P0").id)
    page.goto(f"{live_server}/notifications/inbox")
    assert page.inner_text("#inbox-count").strip() == "2"
    assert "ETH/USDT" in page.inner_text("#inbox-list")
    page.click("#inbox-list button:has-text('Mark all read')")
    page.wait_for_function("document.querySelector('#inbox-count').innerText.trim() === ''")
    assert "0 unread" in page.inner_text("#inbox-list")
    # a new notification shows on the bell without a reload (it polls)
    service.notify_signal(make_signal("SOL/USDT", "P1").id)
    page.wait_for_function("document.querySelector('#inbox-count').innerText.trim() === '1'",
                           timeout=20_000)
    page.screenshot(path=str(tmp_path / "inbox.png"), full_page=True)
    page.goto(f"{live_server}/notifications/")
    assert "SOL/USDT" in page.inner_text("#notification-history")
    page.screenshot(path=str(tmp_path / "history.png"), full_page=True)
    page.click("#notification-history a:has-text('SOL/USDT')")
    page.wait_for_selector("#notification-deliveries")
    page.screenshot(path=str(tmp_path / "detail.png"), full_page=True)
    assert page.errors == []
