"""Host samples and capacity updates pushed to open pages over /ws/monitoring (real gunicorn)."""

from __future__ import annotations

import time

import pytest
import websocket

from app.monitoring import capacity, system_status
from tests.conftest import PASSWORD
from tests.signals.webserver import session_web


@pytest.fixture(scope="module")
def live_web(_session_app, database_url, redis_server, config_dir, var_dir, tmp_path_factory):
    server = session_web(database_url, redis_server.url, config_dir, var_dir,
                         tmp_path_factory.mktemp("monitoring-web") / "gunicorn.log", workers=1)
    yield server
    server.stop()


def _socket(live_web, session=None) -> websocket.WebSocket:
    cookie = "; ".join(f"{c.name}={c.value}" for c in session.cookies) if session else None
    return websocket.create_connection(f"ws://127.0.0.1:{live_web.port}/ws/monitoring",
                                       cookie=cookie, timeout=10, redirect_limit=0)


def _receive_while(ws, produce, marker: str, seconds: float = 20) -> str:
    """Call produce() every second until a message containing `marker` arrives."""
    deadline = time.monotonic() + seconds
    seen = []
    while time.monotonic() < deadline:
        produce()
        ws.settimeout(1.0)
        try:
            message = ws.recv()
        except websocket.WebSocketTimeoutException:
            continue
        seen.append(message[:80])
        if marker in message:
            return message
    raise AssertionError(f"no message with {marker!r}; got {seen}")


def test_host_samples_are_pushed_to_open_pages(live_web, app, user):
    session = live_web.login("alice", PASSWORD)
    ws = _socket(live_web, session)
    try:
        message = _receive_while(ws, system_status.sample_system, 'id="system-host"')
        assert 'id="host-cpu"' in message and "Sampled by the monitoring job" in message
        nudge = _receive_while(ws, capacity.record_capacity, 'id="capacity-nudge"')
        assert 'hx-trigger="load"' in nudge and 'hx-target="#capacity-summary"' in nudge
    finally:
        ws.close()


def test_the_socket_needs_a_login(live_web):
    with pytest.raises(websocket.WebSocketException):
        _socket(live_web)
