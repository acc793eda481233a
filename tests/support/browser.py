"""Debian's Chromium through Playwright for page tests: launch, log in, collect page errors."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import PASSWORD

CHROMIUM = "/usr/bin/chromium"
# As root, with no network: no sandbox, and no background connections Chromium would try.
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@contextlib.contextmanager
def chromium() -> Iterator:
    """A headless Chromium (never a downloaded browser: `make test` installs Debian's)."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is not installed (make test-packages installs it)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def logged_in_page(browser, base_url: str, next_path: str, width: int = 1280,
                   height: int = 900, username: str = "alice", password: str = PASSWORD):
    """A new tab logged in through the login form and sent on to `next_path`.

    JavaScript errors of the page are collected in `tab.errors`.
    """
    tab = browser.new_page(viewport={"width": width, "height": height})
    tab.errors = []
    tab.on("pageerror", lambda exc: tab.errors.append(str(exc)))
    tab.goto(f"{base_url}/login?next={next_path}")
    tab.fill("#username", username)
    tab.fill("#password", password)
    tab.click("button[type=submit]")
    tab.wait_for_url(f"{base_url}{next_path}")
    return tab


@contextlib.contextmanager
def live_server(app) -> Iterator[str]:
    """The app on a free loopback port (werkzeug, threaded) for the browser; yields its URL."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def frequi_build() -> Path:
    """The FreqUI build the tests drive: ../shared/frequi/dist beside the checkout (the first
    such folder up the tree), or $BTCW_FREQUI_BUILD. It is never copied into the project."""
    import os

    root = Path(__file__).resolve().parents[2]
    wanted = os.environ.get("BTCW_FREQUI_BUILD")
    candidates = [Path(wanted)] if wanted else [p / "shared" / "frequi" / "dist"
                                                for p in root.parents]
    for candidate in candidates:
        if (candidate / "index.html").is_file():
            return candidate.resolve()
    pytest.fail(f"FreqUI's build is missing: looked for {', '.join(map(str, candidates[:3]))} "
                f"(set BTCW_FREQUI_BUILD to a FreqUI dist folder)")
