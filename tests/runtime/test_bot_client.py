"""BotClient against loopback stand-ins: errors, timeouts, keep-alive, the raw transport and
fetch_all in plain and gevent-patched processes. (Real bots: tests/gateway.)"""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import time

import pytest

from app.runtime.bot_client import (
    BotClient,
    BotError,
    BotTimeout,
    BotUnreachable,
    fetch_all,
    http_status,
    pooled_client,
)
from tests.gateway.fakes import FakeBot, answer, json_bot, sleepy_bot
from tests.support.servers import free_port


@pytest.fixture
def bots():
    made = []

    def make(server):
        made.append(server)
        return server

    yield make
    for server in made:
        server.close()


def test_get_decodes_json_and_sends_basic_auth(bots):
    bot = bots(json_bot({"version": "2026.9"}))
    client = BotClient(bot.url, "botuser", "s3cret")
    assert client.version() == {"version": "2026.9"}
    assert bot.requests[0].target == "/api/v1/version"
    assert bot.requests[0].headers["authorization"] == "Basic Ym90dXNlcjpzM2NyZXQ="


def test_refused_connection_is_unreachable_and_maps_to_502():
    port = free_port()
    client = BotClient(host="127.0.0.1", port=port, name="strategy 'x' (id 3)")
    with pytest.raises(BotUnreachable) as info:
        client.status()
    assert "connection refused" in info.value.message
    assert "strategy 'x' (id 3)" in info.value.message
    assert http_status(info.value) == 502


def test_slow_bot_times_out_and_maps_to_504(bots):
    bot = bots(sleepy_bot(2.0))
    client = BotClient(bot.url, "u", "p", timeout=0.3)
    start = time.monotonic()
    with pytest.raises(BotTimeout) as info:
        client.profit()
    assert time.monotonic() - start < 1.5
    assert "did not answer within 0.3 s" in info.value.message
    assert http_status(info.value) == 504


def test_bot_error_carries_status_and_the_bots_message(bots):
    bot = bots(json_bot({"detail": "Trade not found."}, status=404))
    with pytest.raises(BotError) as info:
        BotClient(bot.url, "u", "p").get("trade/99")
    assert info.value.status_code == 404
    assert info.value.bot_message == "Trade not found."
    assert http_status(info.value) == 404  # a bot's own 4xx passes through


def test_bot_rejecting_our_credentials_is_a_502(bots):
    bot = bots(json_bot({"detail": "Unauthorized"}, status=401))
    with pytest.raises(BotError) as info:
        BotClient(bot.url, "u", "wrong").status()
    assert http_status(info.value) == 502


def test_for_strategy_without_port_is_unreachable():
    class Row:
        id, name, host, port, api_username, api_password = 5, "idle", None, None, "u", "p"

    with pytest.raises(BotUnreachable) as info:
        BotClient.for_strategy(Row())
    assert "not running" in info.value.message and "'idle' (id 5)" in info.value.message


def test_pooled_client_is_reused_and_keeps_connections_alive(bots):
    bot = bots(json_bot())
    a = pooled_client("127.0.0.1", bot.port, "u", "p")
    b = pooled_client("127.0.0.1", bot.port, "u", "p")
    assert a is b
    for _ in range(5):
        assert a.ping()
    assert bot.connections == 1
    assert pooled_client("127.0.0.1", bot.port, "u", "other") is not a


def test_raw_transport_reuses_connections_and_reads_bodies(bots):
    bot = bots(json_bot({"x": "y" * 5000}))
    client = BotClient(bot.url, "u", "p")
    for _ in range(4):
        resp = client.raw("GET", "/api/v1/anything?a=1", [("Accept", "application/json")])
        assert resp.status == 200 and resp.header("content-type") == "application/json"
        assert resp.read() == b'{"x": "' + b"y" * 5000 + b'"}'
    assert bot.connections == 1
    assert bot.requests[0].target == "/api/v1/anything?a=1"


def test_raw_transport_decodes_chunked_bodies(bots):
    def handler(req, conn):
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n")

    bot = bots(FakeBot(handler))
    client = BotClient(bot.url, "u", "p")
    assert client.raw("GET", "/x", []).read() == b"hello world"
    assert client.raw("GET", "/x", []).read() == b"hello world"  # connection still usable
    assert bot.connections == 1


def test_raw_transport_retries_a_connection_the_bot_closed(bots):
    def handler(req, conn):
        answer(conn, 200, {"n": len(bot.requests)})
        return False  # close after every answer, like a bot's keep-alive timeout

    bot = bots(FakeBot(handler))
    client = BotClient(bot.url, "u", "p")
    assert client.raw("GET", "/a", []).read() == b'{"n": 1}'
    time.sleep(0.1)
    assert client.raw("GET", "/b", []).read() == b'{"n": 2}'
    assert bot.connections == 2


def test_raw_transport_half_answer_then_hangup_is_unreachable(bots):
    def handler(req, conn):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"half\":")
        conn.shutdown(socket.SHUT_RDWR)
        return False

    bot = bots(FakeBot(handler))
    resp = BotClient(bot.url, "u", "p").raw("GET", "/x", [])
    with pytest.raises(BotUnreachable) as info:
        resp.read()
    assert "mid-answer" in info.value.message


def test_fetch_all_bounds_every_bot_and_keeps_order(bots):
    good = bots(json_bot({"ok": 1}))
    slow = bots(sleepy_bot(3.0))
    dead_port = free_port()
    targets = [("good", BotClient(good.url, "u", "p")),
               ("slow", BotClient(slow.url, "u", "p")),
               ("dead", BotClient(host="127.0.0.1", port=dead_port))]
    start = time.monotonic()
    results = fetch_all(targets, "status", timeout=0.5)
    assert time.monotonic() - start < 2.0
    assert [r.key for r in results] == ["good", "slow", "dead"]
    assert results[0].ok and results[0].data == {"ok": 1} and results[0].status == 200
    assert isinstance(results[1].error, BotTimeout) and results[1].status == 504
    assert isinstance(results[2].error, BotUnreachable) and results[2].status == 502


def test_fetch_all_runs_concurrently(bots):
    slow = bots(sleepy_bot(0.5))
    targets = [(i, BotClient(slow.url, "u", f"p{i}")) for i in range(8)]
    start = time.monotonic()
    results = fetch_all(targets, "status", timeout=3)
    assert all(r.ok for r in results)
    assert time.monotonic() - start < 2.0  # 8 × 0.5 s one after another would be 4 s


def test_fetch_all_in_a_gevent_patched_process(bots):
    slow = bots(sleepy_bot(0.5))
    dead = free_port()
    script = textwrap.dedent(f"""
        from gevent import monkey; monkey.patch_all()
        import time
        from app.runtime.bot_client import BotClient, fetch_all, _in_gevent
        assert _in_gevent()
        targets = [(i, BotClient("{slow.url}", "u", f"p{{i}}")) for i in range(8)]
        targets.append(("dead", BotClient(host="127.0.0.1", port={dead})))
        t = time.monotonic()
        res = fetch_all(targets, "status", timeout=3)
        took = time.monotonic() - t
        print(sum(r.ok for r in res), res[-1].status, round(took, 2))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60, check=True).stdout.split()
    assert out[0] == "8" and out[1] == "502"
    assert float(out[2]) < 2.0
