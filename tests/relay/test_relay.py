"""The exchange relay against the real simulator (served over HTTP) and real proxies: answers
byte for byte, shared calls, caching that never hides a new candle, and the rate budget that
keeps an IP out of 429s and 418 bans."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from werkzeug.serving import make_server

from app.relay.core import Relay, RelayConfig, wsgi_app
from app.simulator.limits import WeightLimiter, request_weight
from app.simulator.server import create_simulator_app
from tests.support.proxies import MicroSocks, TinyProxy
from tests.support.servers import free_port

KLINES = "/simulator/api/v3/klines"


class Served:
    """A WSGI app on a free loopback port in a thread, shut down after."""

    def __init__(self, app):
        self.port = free_port()
        self.server = make_server("127.0.0.1", self.port, app, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self):
        self.server.shutdown()


@pytest.fixture
def exchange():
    """The simulator over HTTP; `.limits(n)` sets its per-IP weight budget."""
    app = create_simulator_app({"seed": 42, "weight_limit": 0, "ban_seconds": 120})
    served = Served(app)

    def state():
        return requests.get(f"{served.url}/_sim/state", timeout=5).json()

    def limits(weight_limit, ban_seconds=120):
        requests.post(f"{served.url}/_sim/limits", json={"weight_limit": weight_limit,
                                                         "ban_seconds": ban_seconds}, timeout=5)

    served.state, served.limits = state, limits
    yield served
    served.stop()


def make_relay(exchange_url, **overrides) -> Relay:
    config = RelayConfig(exchanges={"simulator": exchange_url}, **overrides)
    relay = Relay(config)
    relay.set_upstreams([("direct", "direct", None, "this host")])
    return relay


def klines_calls(exchange) -> int:
    return exchange.state()["requests"].get("/api/v3/klines", 0)


def test_answers_are_the_exchanges_bytes(exchange):
    relay = Served(wsgi_app(make_relay(exchange.url)))
    try:
        now_ms = int(time.time() * 1000)
        pinned = f"symbol=BTCUSDT&interval=1m&startTime={now_ms - 3_600_000}&limit=10"
        for path, query in [("/api/v3/klines", pinned),
                            ("/api/v3/klines", "symbol=NOPEUSDT&interval=1m"),
                            ("/api/v3/klines", "symbol=BTCUSDT&interval=7x"),
                            ("/api/v3/exchangeInfo", ""),
                            ("/api/v3/depth", "symbol=ETHUSDT&limit=5")]:
            direct = requests.get(f"{exchange.url}{path}?{query}", timeout=5)
            relayed = requests.get(f"{relay.url}/simulator{path}?{query}", timeout=5)
            assert relayed.status_code == direct.status_code, path
            assert relayed.headers["Content-Type"] == direct.headers["Content-Type"]
            if path in ("/api/v3/exchangeInfo", "/api/v3/depth"):
                assert relayed.json().keys() == direct.json().keys()  # moving prices, same shape
            else:
                assert relayed.content == direct.content, (path, query)
        again = requests.get(f"{relay.url}/simulator/api/v3/klines?{pinned}", timeout=5)
        assert again.headers["X-BTCW-Relay"] == "hit"
        unknown = requests.get(f"{relay.url}/kraken/api/v3/ping", timeout=5)
        assert unknown.status_code == 404 and "kraken" in unknown.json()["msg"]
        assert requests.post(f"{relay.url}/simulator/api/v3/order", timeout=5).status_code == 405
    finally:
        relay.stop()


def test_identical_concurrent_requests_make_one_upstream_call(exchange):
    relay = make_relay(exchange.url)
    before = klines_calls(exchange)
    query = "symbol=BTCUSDT&interval=1m&limit=1000"
    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda _: relay.handle("GET", KLINES, query), range(40)))
    assert {a.status for a in answers} == {200}
    assert len({a.body for a in answers}) == 1
    assert klines_calls(exchange) - before == 1
    sources = {a.source for a in answers}
    assert "miss" in sources and sources <= {"miss", "shared", "hit"}
    # The same parameters in another order are the same request.
    assert relay.handle("GET", KLINES, "limit=1000&interval=1m&symbol=BTCUSDT").source == "hit"


def test_latest_candles_are_never_reused_past_their_candle(exchange):
    clock = {"now": 1_700_000_000.0 - 1_700_000_000.0 % 60 + 58.5}  # 1.5 s before a new candle
    relay = make_relay(exchange.url, forming_ttl=5.0)
    relay.clock = lambda: clock["now"]
    body = b'[[1,"1","1","1","1","1",%d,"1",1,"1","1","0"]]' % int((clock["now"] + 1.5) * 1000 - 1)
    from app.relay.core import Answer

    forming = relay._ttl("/api/v3/klines", {"interval": "1m", "limit": "1000"},
                         Answer(200, body, {}))
    assert forming == pytest.approx(clock["now"] + 1.5)  # the candle's end, not now + 5
    closed_body = b'[[1,"1","1","1","1","1",%d,"1",1,"1","1","0"]]' % int(clock["now"] * 1000 - 60_000)
    pinned = relay._ttl("/api/v3/klines", {"interval": "1m", "endTime": "1"},
                        Answer(200, closed_body, {}))
    assert pinned > clock["now"] + 3600  # a closed range never changes
    unpinned = relay._ttl("/api/v3/klines", {"interval": "1m"}, Answer(200, closed_body, {}))
    assert unpinned <= clock["now"] + 1.5
    assert relay._ttl("/api/v3/time", {}, Answer(200, b"{}", {})) == 0


def test_the_budget_keeps_the_ip_under_the_exchanges_limit(exchange):
    exchange.limits(100)
    relay = make_relay(exchange.url, weight_limit=100, weight_share=80)
    now_ms = int(time.time() * 1000)
    answers = [relay.handle("GET", KLINES, f"symbol=BTCUSDT&interval=1m&endTime={now_ms - i * 60_000}"
                            f"&limit=5") for i in range(60)]
    limits = exchange.state()["limits"]
    assert limits["refused"] == {}, "the relay must never earn a 429 or 418"
    used = limits["ips"]["127.0.0.1"]["used"]
    assert used <= 80 or int(time.time()) % 60 < 2  # a minute boundary may reset it mid-test
    served = [a for a in answers if a.status == 200]
    refused = [a for a in answers if a.status == 429]
    assert len(served) >= 40 and refused, "over the budget the relay answers 429 itself"
    assert refused[0].source == "relay" and "Retry-After" in refused[0].headers
    stats = relay.stats()
    assert stats["upstreams"][0]["state"] == "at budget"
    assert stats["upstreams"][0]["429"] == 0


def test_a_429_rests_the_ip_and_cached_data_is_served_meanwhile(exchange):
    """Without the relay an eager client goes 429 → 418 (banned); the relay, told 429 once,
    stops calling that IP until Retry-After and answers from its cache."""
    exchange.limits(20)
    query = "symbol=ETHUSDT&interval=1m&limit=1000"
    statuses = [requests.get(f"{exchange.url}/api/v3/klines?{query}", timeout=5).status_code
                for _ in range(14)]
    assert 429 in statuses and statuses[-1] == 418, statuses  # what bots do to themselves
    exchange.limits(20)  # a fresh minute's worth for the relay
    relay = make_relay(exchange.url, weight_limit=10_000, forming_ttl=0.0)  # trusts it too much
    first = relay.handle("GET", KLINES, query)
    assert first.status == 200
    answers = [relay.handle("GET", KLINES, query) for _ in range(30)]
    refused = exchange.state()["limits"]["refused"]
    assert refused.get("429") == 1 and "418" not in refused
    assert {a.status for a in answers} == {200}
    assert "stale" in {a.source for a in answers}
    upstream = relay.stats()["upstreams"][0]
    assert upstream["state"] == "rate-limited" and upstream["429"] == 1
    assert upstream["blocked_for"] > 0


@pytest.mark.parametrize("kind", ["http", "socks5"])
def test_load_is_spread_over_proxies_each_its_own_ip(exchange, tmp_path, kind):
    exchange.limits(100)
    proxy = (TinyProxy(tmp_path, bind="127.0.0.5") if kind == "http"
             else MicroSocks(bind="127.0.0.5")).start()
    try:
        relay = make_relay(exchange.url, weight_limit=100, weight_share=80)
        relay.set_upstreams([("direct", "direct", None, "this host"),
                             ("proxy:1", "p1", f"{kind}://127.0.0.1:{proxy.port}", "p1")])
        now_ms = int(time.time() * 1000)
        answers = [relay.handle("GET", KLINES, f"symbol=SOLUSDT&interval=1m&endTime="
                                f"{now_ms - i * 60_000}&limit=5") for i in range(60)]
        assert sum(a.status == 200 for a in answers) >= 60 - 2  # 2 × 80 budget covers 60 × 2
        ips = exchange.state()["limits"]["ips"]
        assert ips["127.0.0.1"]["used"] > 0 and ips["127.0.0.5"]["used"] > 0, ips
        assert exchange.state()["limits"]["refused"] == {}
        by_key = {u["key"]: u for u in relay.stats()["upstreams"]}
        assert by_key["proxy:1"]["requests"] > 10 and by_key["direct"]["requests"] > 10
        proxy.stop()
        failed = relay.handle("GET", KLINES, f"symbol=SOLUSDT&interval=1m&endTime={now_ms}&limit=3")
        assert failed.status in (200, 429)  # the dead proxy is skipped, never a hang or a 5xx
    finally:
        proxy.stop()


def test_weights_follow_binance():
    assert request_weight("/api/v3/klines", {"symbol": "X"}) == 2
    assert request_weight("/api/v3/exchangeInfo", {}) == 20
    assert request_weight("/api/v3/depth", {"limit": "5000"}) == 250
    assert request_weight("/api/v3/ticker/24hr", {}) == 80
    assert request_weight("/api/v3/ticker/24hr", {"symbol": "X"}) == 2
    limiter = WeightLimiter(weight_limit=10, ban_seconds=2, clock=lambda: 600.0)
    assert [limiter.charge("a", 4).status for _ in range(4)] == [200, 200, 429, 418]
    assert limiter.charge("b", 4).status == 200  # per IP
