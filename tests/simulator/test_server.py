"""The simulator's Binance REST subset (formats, errors) and its /_sim control API."""

from __future__ import annotations

import json
import threading

import pytest
from werkzeug.serving import make_server

from app.simulator.market import MINUTE_MS
from tests.simulator.conftest import FROZEN_NOW

NOW_MS = int(FROZEN_NOW * 1000)
FILTERS = {"PRICE_FILTER", "LOT_SIZE", "NOTIONAL"}


def test_ping_and_time(sim):
    assert sim.get("/api/v3/ping").get_json() == {}
    assert sim.get("/api/v3/time").get_json() == {"serverTime": NOW_MS}


def test_exchange_info_lists_spot_symbols_with_binance_filters(sim):
    info = sim.get("/api/v3/exchangeInfo").get_json()
    assert info["timezone"] == "UTC" and info["serverTime"] == NOW_MS
    symbols = {s["symbol"]: s for s in info["symbols"]}
    assert set(symbols) == {"BTCUSDT", "ETHUSDT", "SOLUSDT", "ADAUSDT", "DOTUSDT"}
    btc = symbols["BTCUSDT"]
    assert (btc["baseAsset"], btc["quoteAsset"], btc["status"]) == ("BTC", "USDT", "TRADING")
    assert btc["isSpotTradingAllowed"] is True and btc["permissionSets"] == [["SPOT"]]
    assert "MARKET" in btc["orderTypes"] and "LIMIT" in btc["orderTypes"]
    filters = {f["filterType"]: f for f in btc["filters"]}
    assert FILTERS <= set(filters)
    assert filters["PRICE_FILTER"]["tickSize"] == "0.01000000"
    assert filters["LOT_SIZE"]["stepSize"] == "0.00001000"
    assert filters["NOTIONAL"]["minNotional"] == "5.00000000"


def test_exchange_info_for_one_symbol_and_for_an_unknown_one(sim):
    one = sim.get("/api/v3/exchangeInfo?symbol=ETHUSDT").get_json()
    assert [s["symbol"] for s in one["symbols"]] == ["ETHUSDT"]
    some = sim.get('/api/v3/exchangeInfo?symbols=["ETHUSDT","ADAUSDT"]').get_json()
    assert [s["symbol"] for s in some["symbols"]] == ["ETHUSDT", "ADAUSDT"]
    bad = sim.get("/api/v3/exchangeInfo?symbol=NOPEUSDT")
    assert bad.status_code == 400
    assert bad.get_json() == {"code": -1121, "msg": "Invalid symbol."}


def test_klines_rows_have_binance_shape(sim):
    rows = sim.get("/api/v3/klines?symbol=BTCUSDT&interval=1m&limit=3").get_json()
    assert len(rows) == 3
    for row in rows:
        assert len(row) == 12
        open_time, o, h, low, c, v, close_time, quote, trades, taker_base, taker_quote, ignore = row
        assert isinstance(open_time, int) and close_time == open_time + MINUTE_MS - 1
        assert all(
            isinstance(x, str) and len(x.split(".")[1]) == 8
            for x in (o, h, low, c, v, quote, taker_base, taker_quote)
        )
        assert float(low) <= min(float(o), float(c)) <= max(float(o), float(c)) <= float(h)
        assert isinstance(trades, int) and ignore == "0"
    assert rows[-1][0] == NOW_MS // MINUTE_MS * MINUTE_MS  # the open (partial) candle is last


def test_klines_default_and_maximum_limits(sim):
    assert len(sim.get("/api/v3/klines?symbol=ETHUSDT&interval=1m").get_json()) == 500
    assert len(sim.get("/api/v3/klines?symbol=ETHUSDT&interval=1m&limit=5000").get_json()) == 1000


def test_klines_start_and_end_time(sim):
    start = NOW_MS - 100 * MINUTE_MS
    start -= start % MINUTE_MS
    rows = sim.get(f"/api/v3/klines?symbol=SOLUSDT&interval=5m&startTime={start}&limit=4")
    rows = rows.get_json()
    first_open = -(-start // (5 * MINUTE_MS)) * 5 * MINUTE_MS
    assert [r[0] for r in rows] == [first_open + i * 5 * MINUTE_MS for i in range(4)]
    end = first_open + 2 * 5 * MINUTE_MS
    upto = sim.get(f"/api/v3/klines?symbol=SOLUSDT&interval=5m&endTime={end}&limit=2").get_json()
    assert [r[0] for r in upto] == [end - 5 * MINUTE_MS, end]
    both = sim.get(
        f"/api/v3/klines?symbol=SOLUSDT&interval=5m&startTime={start}&endTime={end}"
    ).get_json()
    assert [r[0] for r in both] == [first_open + i * 5 * MINUTE_MS for i in range(3)]
    # the same candles whichever way they were asked for
    assert both[:2] == rows[:2]


@pytest.mark.parametrize(
    ("query", "status", "body"),
    [
        ("symbol=NOPEUSDT&interval=1m", 400, {"code": -1121, "msg": "Invalid symbol."}),
        ("symbol=BTCUSDT&interval=7m", 400, {"code": -1120, "msg": "Invalid interval."}),
        (
            "interval=1m",
            400,
            {
                "code": -1102,
                "msg": "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.",
            },
        ),
        (
            "symbol=BTCUSDT",
            400,
            {
                "code": -1102,
                "msg": "Mandatory parameter 'interval' was not sent, was empty/null, or malformed.",
            },
        ),
    ],
)
def test_klines_errors(sim, query, status, body):
    response = sim.get(f"/api/v3/klines?{query}")
    assert response.status_code == status
    assert response.get_json() == body


def test_lowercase_symbol_is_an_illegal_parameter(sim):
    response = sim.get("/api/v3/klines?symbol=btcusdt&interval=1m")
    assert response.status_code == 400 and response.get_json()["code"] == -1100


def test_tickers(sim):
    one = sim.get("/api/v3/ticker/24hr?symbol=ETHUSDT").get_json()
    assert one["symbol"] == "ETHUSDT"
    assert float(one["bidPrice"]) < float(one["askPrice"])
    assert float(one["lowPrice"]) <= float(one["lastPrice"]) <= float(one["highPrice"])
    assert one["closeTime"] == NOW_MS and one["openTime"] == NOW_MS - 86_400_000
    every = sim.get("/api/v3/ticker/24hr").get_json()
    assert isinstance(every, list) and len(every) == 5
    book = sim.get("/api/v3/ticker/bookTicker?symbol=ETHUSDT").get_json()
    assert set(book) == {"symbol", "bidPrice", "bidQty", "askPrice", "askQty"}
    assert book["bidPrice"] == one["bidPrice"] and book["askPrice"] == one["askPrice"]
    price = sim.get("/api/v3/ticker/price?symbol=ETHUSDT").get_json()
    assert price == {"symbol": "ETHUSDT", "price": one["lastPrice"]}
    some = sim.get('/api/v3/ticker/price?symbols=["BTCUSDT","DOTUSDT"]').get_json()
    assert [p["symbol"] for p in some] == ["BTCUSDT", "DOTUSDT"]
    assert sim.get("/api/v3/ticker/24hr?symbol=NOPEUSDT").status_code == 400


def test_depth(sim):
    book = sim.get("/api/v3/depth?symbol=ADAUSDT&limit=5").get_json()
    assert set(book) == {"lastUpdateId", "bids", "asks"}
    assert len(book["bids"]) == len(book["asks"]) == 5
    bids = [float(p) for p, _ in book["bids"]]
    asks = [float(p) for p, _ in book["asks"]]
    assert bids == sorted(bids, reverse=True) and asks == sorted(asks) and bids[0] < asks[0]
    assert len(sim.get("/api/v3/depth?symbol=ADAUSDT").get_json()["bids"]) == 100


def test_the_market_is_deterministic_for_a_seed(sim_app, clock):
    from app.simulator.server import create_simulator_app

    twin = create_simulator_app({"seed": 42, "clock": clock}).test_client()
    other = create_simulator_app({"seed": 7, "clock": clock}).test_client()
    url = "/api/v3/klines?symbol=BTCUSDT&interval=15m&limit=50"
    mine = sim_app.test_client().get(url).get_json()
    assert twin.get(url).get_json() == mine
    assert other.get(url).get_json() != mine


def test_stale_klines_stop_new_candles_while_the_clock_runs(sim, clock):
    url = "/api/v3/klines?symbol=BTCUSDT&interval=1m&limit=2"
    before = sim.get(url).get_json()
    state = sim.post("/_sim/klines", json={"serving": False}).get_json()
    assert state["klines"] == {"serving": False, "mode": "stale", "frozen_at_ms": NOW_MS}
    clock.advance(300)
    assert sim.get(url).get_json() == before  # no new candle for five minutes
    assert sim.get("/api/v3/time").get_json()["serverTime"] == NOW_MS + 300_000
    sim.post("/_sim/klines", json={"serving": True})
    assert sim.get(url).get_json()[-1][0] == before[-1][0] + 5 * MINUTE_MS


def test_klines_error_mode_and_exchange_outage(sim):
    sim.post("/_sim/klines", json={"serving": False, "mode": "error"})
    response = sim.get("/api/v3/klines?symbol=BTCUSDT&interval=1m")
    assert response.status_code == 503 and response.get_json()["code"] == -1001
    assert sim.get("/api/v3/ticker/price?symbol=BTCUSDT").status_code == 200
    sim.post("/_sim/exchange", json={"available": False})
    assert sim.get("/api/v3/ping").status_code == 503
    assert sim.get("/api/v3/exchangeInfo").status_code == 503
    state = sim.post("/_sim/reset").get_json()
    assert state["klines"]["serving"] and state["exchange"]["available"]
    assert sim.get("/api/v3/ping").status_code == 200


def test_control_api_validates_and_counts(sim):
    assert sim.post("/_sim/klines", json={"serving": "no"}).status_code == 400
    assert sim.post("/_sim/klines", json={"serving": False, "mode": "x"}).status_code == 400
    assert sim.post("/_sim/exchange", json={}).status_code == 400
    sim.get("/api/v3/ping")
    sim.get("/api/v3/ping")
    state = sim.get("/_sim/state").get_json()
    assert state["requests"]["/api/v3/ping"] == 2
    assert state["seed"] == 42 and set(state["pairs"]) >= {"BTC/USDT", "DOT/USDT"}
    recent = sim.get("/_sim/requests?limit=1").get_json()
    assert recent[0]["path"] == "/api/v3/ping" and recent[0]["status"] == 200


def test_replay_pair_is_served(clock, market_data):
    from app.simulator.server import create_simulator_app

    app = create_simulator_app(
        {
            "seed": 1,
            "pairs": "BTC/USDT",
            "clock": clock,
            "replay": [f"ETH/USDT={market_data / 'ETH_BTC-5m.csv'}"],
        }
    )
    client = app.test_client()
    symbols = [s["symbol"] for s in client.get("/api/v3/exchangeInfo").get_json()["symbols"]]
    assert symbols == ["BTCUSDT", "ETHUSDT"]
    rows = client.get("/api/v3/klines?symbol=ETHUSDT&interval=1h&limit=10").get_json()
    assert len(rows) == 10
    state = client.get("/_sim/state").get_json()
    assert state["pairs"]["ETH/USDT"]["replay"].endswith("ETH_BTC-5m.csv")


def test_ccxt_binance_reads_everything_it_needs(sim_app):
    """The real client FreqTrade uses parses markets, candles, tickers and books."""
    ccxt = pytest.importorskip("ccxt")
    server = make_server("127.0.0.1", 0, sim_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        exchange = ccxt.binance(
            {
                "urls": {"api": {"public": f"{base}/api/v3", "private": f"{base}/api/v3"}},
                "options": {"fetchMarkets": {"types": ["spot"]}},
                "timeout": 5000,
            }
        )
        markets = exchange.load_markets()
        btc = markets["BTC/USDT"]
        assert btc["spot"] and btc["active"]
        assert btc["precision"]["price"] == 0.01 and btc["limits"]["cost"]["min"] == 5
        candles = exchange.fetch_ohlcv("BTC/USDT", "5m", limit=10)
        assert len(candles) == 10 and all(len(c) == 6 for c in candles)
        ticker = exchange.fetch_ticker("ETH/USDT")
        assert ticker["bid"] < ticker["ask"] and ticker["last"] > 0
        book = exchange.fetch_order_book("DOT/USDT", 20)
        assert len(book["bids"]) == 20 and book["bids"][0][0] < book["asks"][0][0]
        assert exchange.fetch_time() == NOW_MS
    finally:
        server.shutdown()
        thread.join(timeout=5)


def test_create_simulator_app_rejects_a_bad_replay_spec():
    from app.simulator.server import create_simulator_app

    with pytest.raises(ValueError, match="PAIR=CSV"):
        create_simulator_app({"replay": ["no-equals-sign"]})


def test_json_numbers_are_strings_like_binance(sim):
    raw = sim.get("/api/v3/ticker/bookTicker?symbol=BTCUSDT").get_data(as_text=True)
    assert all(isinstance(v, str) for v in json.loads(raw).values())
