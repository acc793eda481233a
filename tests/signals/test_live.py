"""Live signal pages: /ws/signals on a real gunicorn + gevent server (two workers), driven by a
WebSocket client with a logged-in session cookie."""

from __future__ import annotations

import re
import time

import pytest
import requests
import websocket

from app.signals.live import PageFeed
from app.signals.service import parse_filters
from tests.conftest import PASSWORD
from tests.signals.conftest import strategy_msg


@pytest.fixture
def browser(live_web, user):
    """A requests session logged in to the live server as alice."""
    return live_web.login("alice", PASSWORD)


def open_socket(live_web, session: requests.Session | None, query: str,
                timeout: float = 15) -> websocket.WebSocket:
    cookie = "; ".join(f"{c.name}={c.value}" for c in session.cookies) if session else None
    ws = websocket.create_connection(f"ws://127.0.0.1:{live_web.port}/ws/signals?{query}",
                                     cookie=cookie, timeout=timeout, redirect_limit=0)
    return ws


def post(live_web, strategy, body) -> dict:
    response = requests.post(
        f"{live_web.url}/api/v1/signals/webhook/{strategy.id}?token={strategy.webhook_token}",
        json=body, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def receive_until(ws: websocket.WebSocket, pattern: str, seconds: float = 15) -> str:
    """Messages until one matches `pattern`; that message."""
    deadline = time.monotonic() + seconds
    seen = []
    while time.monotonic() < deadline:
        ws.settimeout(max(deadline - time.monotonic(), 0.1))
        try:
            message = ws.recv()
        except websocket.WebSocketTimeoutException:
            break
        seen.append(message)
        if re.search(pattern, message):
            return message
    raise AssertionError(f"no message matching {pattern!r}; got {seen!r}")


def test_page_connects_to_the_live_feed_with_its_filters(live_web, browser, strategy):
    page = browser.get(f"{live_web.url}/signals/?strategy_id={strategy.id}&level=strong",
                       timeout=10).text
    match = re.search(r'<section id="signals-list"[^>]*hx-ext="ws" ws-connect="([^"]+)"', page)
    assert match, page[:2000]
    url = match.group(1).replace("&amp;", "&")
    assert url.startswith("/ws/signals?")
    assert f"strategy_id={strategy.id}" in url and "level=strong" in url and "since_id=0" in url
    # The page's own URL, opened the way the htmx ws extension opens it, streams the new row.
    ws = open_socket(live_web, browser, url.split("?", 1)[1])
    try:
        result = post(live_web, strategy, strategy_msg(strength=0.92))
        message = receive_until(ws, rf'id="signal-{result["id"]}"')
    finally:
        ws.close()
    assert re.search(r'<tbody id="signal-rows" hx-swap-oob="afterbegin">\s*<tr id="signal-'
                     rf'{result["id"]}"', message)
    assert strategy.name in message and "badge-strong" in message and "P0" in message
    assert 'id="signals-new-badge"' in message and 'hx-swap-oob="true"' in message
    assert "1 new" in message


def test_every_open_page_gets_the_signal_across_workers(live_web, browser, strategy):
    # Four pages: with two gevent workers they land on both; each worker's hub hears Redis.
    sockets = [open_socket(live_web, browser, "since_id=0") for _ in range(4)]
    try:
        result = post(live_web, strategy, strategy_msg(strength=0.5))
        for ws in sockets:
            message = receive_until(ws, rf'id="signal-{result["id"]}"')
            assert "badge-weak" in message
    finally:
        for ws in sockets:
            ws.close()


def test_filtered_page_counts_what_it_hides(live_web, browser, make_strategy):
    shown, hidden = make_strategy(), make_strategy()
    ws = open_socket(live_web, browser, f"strategy_id={shown.id}&since_id=0")
    try:
        post(live_web, hidden, strategy_msg(strength=0.9))
        message = receive_until(ws, r"outside filter")
        assert "<tr" not in message
        assert "1 outside filter" in message
        result = post(live_web, shown, strategy_msg(strength=0.3))
        message = receive_until(ws, rf'id="signal-{result["id"]}"')
        assert "1 outside filter" in message and "1 new" in message
    finally:
        ws.close()


def test_level_filter_applies_to_live_rows(live_web, browser, strategy):
    ws = open_socket(live_web, browser, "level=strong,medium&since_id=0")
    try:
        post(live_web, strategy, strategy_msg(strength=0.1))                  # ignore: hidden
        strong = post(live_web, strategy, strategy_msg(strength=0.95, action="exit_long"))
        message = receive_until(ws, rf'id="signal-{strong["id"]}"')
        assert message.count("<tr") == 1
    finally:
        ws.close()


def test_paged_view_gets_a_newer_count_not_rows(live_web, browser, strategy):
    first = post(live_web, strategy, strategy_msg(strength=0.9))
    ws = open_socket(live_web, browser, f"before_id={first['id']}")
    try:
        post(live_web, strategy, strategy_msg(strength=0.9, action="exit_long"))
        message = receive_until(ws, r"newer")
        assert "<tr" not in message and "1 newer" in message
    finally:
        ws.close()


def test_a_reconnecting_page_gets_what_it_missed(live_web, browser, strategy):
    missed = post(live_web, strategy, strategy_msg(strength=0.7))
    ws = open_socket(live_web, browser, f"since_id={missed['id'] - 1}")
    try:
        message = receive_until(ws, rf'id="signal-{missed["id"]}"')
        assert "badge-medium" in message
    finally:
        ws.close()


def test_live_feed_needs_a_login(live_web, user):
    with pytest.raises(websocket.WebSocketException):
        open_socket(live_web, None, "since_id=0")
    handshake = requests.get(
        f"{live_web.url}/ws/signals?since_id=0", allow_redirects=False, timeout=10,
        headers={"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                 "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
    assert handshake.status_code in (302, 401)  # never 101 Switching Protocols
    if handshake.status_code == 302:
        assert handshake.headers["Location"].startswith("/login")


def test_bad_filters_close_the_socket(live_web, browser):
    ws = open_socket(live_web, browser, "level=extreme")
    try:
        ws.settimeout(10)
        opcode, data = ws.recv_data(control_frame=True)
        assert opcode == websocket.ABNF.OPCODE_CLOSE
        assert int.from_bytes(data[:2], "big") == 1008
        assert b"level" in data
    finally:
        ws.close()


# ----------------------------------------------------------------------- unit: PageFeed


def event(id, **values):
    base = {"id": id, "strategy_id": 1, "pair": "ETH/USDT", "level": "strong",
            "action": "enter_long", "type": "strategy_msg", "received_at": "2026-11-24T20:00:00Z"}
    base.update(values)
    return base


def test_page_feed_sorts_rows_and_counts():
    feed = PageFeed(parse_filters({"strategy_id": "1", "level": "strong,medium"}), paged=False)
    rows = feed.sort([event(3), event(5), event(4, level="weak"), event(6, strategy_id=2)])
    assert [r["id"] for r in rows] == [5, 3]  # newest first
    assert (feed.shown, feed.outside, feed.held) == (2, 2, 0)
    assert feed.sort([event(5)]) == []  # a replayed row is not sent twice


def test_page_feed_time_range():
    feed = PageFeed(parse_filters({"from": "2026-11-24T19:00", "to": "2026-11-24T20:00"}),
                    paged=False)
    assert feed.sort([event(1, received_at="2026-11-24T20:00:01Z")]) == []
    assert [r["id"] for r in feed.sort([event(2, received_at="2026-11-24T19:30:00Z")])] == [2]


def test_paged_feed_holds_matching_rows():
    feed = PageFeed(parse_filters({}), paged=True)
    assert feed.sort([event(1), event(2)]) == []
    assert feed.held == 2


def test_page_catches_up_after_a_redis_restart(live_web, browser, strategy, redis_server):
    ws = open_socket(live_web, browser, "since_id=0")
    try:
        first = post(live_web, strategy, strategy_msg(strength=0.9))
        receive_until(ws, rf'id="signal-{first["id"]}"')
        redis_server.stop()
        try:
            # Stored while Redis is down: not published (the sweeper would do that later).
            during = post(live_web, strategy, strategy_msg(strength=0.9, action="exit_long"))
            assert during["published"] is False
        finally:
            redis_server.start()
        # The web worker's hub resubscribes and the page replays what it missed, without
        # waiting for the sweeper.
        message = receive_until(ws, rf'id="signal-{during["id"]}"', seconds=20)
        assert f'id="signal-{first["id"]}"' not in message  # nothing sent twice
    finally:
        ws.close()
