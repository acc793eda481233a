"""The simulated exchange's HTTP face: the Binance spot public REST subset FreqTrade's ccxt uses.

Formats follow Binance's API (numbers as strings with 8 decimals, errors as ``{"code", "msg"}``
with HTTP 400). Under ``/_sim/`` a small control API lets tests break the exchange on purpose:

* ``GET  /_sim/state``: seed, pairs, clock, switches and request counters.
* ``POST /_sim/klines {"serving": false, "mode": "stale"|"error"}``: stop serving new candles
  (``stale``: klines stay frozen at the moment of the switch, so bots see no new candle) or answer
  every klines call with HTTP 503 (``error``). ``{"serving": true}`` resumes.
* ``POST /_sim/exchange {"available": false}``: every ``/api/v3`` call answers 503 (an outage;
  a bot starting now cannot load markets).
* ``GET  /_sim/requests?limit=N``: the most recent requests (method, path, query, status).
* ``POST /_sim/limits {"weight_limit": 6000, "ban_seconds": 120}``: Binance's per-IP request
  weight budget (app/simulator/limits.py); 0 turns it off. ``GET /_sim/state`` shows each IP's use
  and the 429/418 answers given.
* ``POST /_sim/reset``: switches back on, counters, limits' state and the request log cleared.
"""

from __future__ import annotations

import json
import logging
import re
import signal
import threading
import time
from collections import Counter, deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask, Response, g, jsonify, request

from app.simulator.limits import DEFAULT_BAN_SECONDS, WeightLimiter, request_weight
from app.simulator.market import (
    INTERVAL_MINUTES,
    MINUTE_MS,
    MarketModel,
    MarketSettings,
    PairProfile,
)

log = logging.getLogger(__name__)

SYMBOL_PATTERN = re.compile(r"^[A-Z0-9\-_.]{1,20}$")
KLINES_DEFAULT_LIMIT, KLINES_MAX_LIMIT = 500, 1000
DEPTH_DEFAULT_LIMIT, DEPTH_MAX_LIMIT = 100, 5000
REQUEST_LOG_SIZE = 500


class BinanceError(Exception):
    """An error answered the way Binance does: HTTP status plus ``{"code", "msg"}``."""

    def __init__(self, code: int, msg: str, status: int = 400) -> None:
        super().__init__(msg)
        self.code, self.msg, self.status = code, msg, status


def invalid_symbol() -> BinanceError:
    """Binance's answer for a well-formed but unknown symbol."""
    return BinanceError(-1121, "Invalid symbol.")


def mandatory(name: str) -> BinanceError:
    """Binance's answer for a missing mandatory parameter."""
    return BinanceError(
        -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
    )


class ExchangeSwitches:
    """What the control API has switched off (shared by every request of one app)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Everything on, counters and log cleared."""
        self.klines_serving = True
        self.klines_mode = "stale"
        self.klines_frozen_ms: int | None = None
        self.exchange_available = True
        self.counts: Counter[str] = Counter()
        self.recent: deque[dict[str, Any]] = deque(maxlen=REQUEST_LOG_SIZE)


def market_settings_from(settings: Any) -> MarketSettings:
    """Build MarketSettings from a mapping or an object with attributes (seed, pairs, replay…).

    ``replay`` may be a mapping ``{pair: csv path}`` or a list of ``"PAIR=path"`` strings;
    ``price_levels`` a mapping ``{pair: price}``; ``clock`` a callable returning epoch seconds.
    """
    if isinstance(settings, MarketSettings):
        return settings

    def pick(name: str, default: Any = None) -> Any:
        return _pick(settings, name, default)

    base = MarketSettings()
    pairs = pick("pairs") or base.pairs
    if isinstance(pairs, str):
        pairs = [p for p in pairs.split(",") if p.strip()]
    replay = pick("replay") or pick("replays") or {}
    if not isinstance(replay, Mapping):
        replay = dict(parse_replay(item) for item in replay)
    return MarketSettings(
        seed=int(pick("seed", base.seed)),
        pairs=tuple(p.strip().upper() for p in pairs),
        replays={k.upper(): Path(v) for k, v in replay.items()},
        price_levels=dict(pick("price_levels") or {}),
        anchor_ms=pick("anchor_ms"),
        clock=pick("clock") or time.time,
    )


def _pick(settings: Any, name: str, default: Any = None) -> Any:
    """A setting from a mapping or an object with attributes (None: the default)."""
    if settings is None:
        return default
    if isinstance(settings, Mapping):
        return settings.get(name, default)
    return getattr(settings, name, default)


def parse_replay(spec: str) -> tuple[str, str]:
    """'BTC/USDT=path/to.csv' -> ('BTC/USDT', 'path/to.csv')."""
    pair, sep, path = spec.partition("=")
    if not sep or not pair.strip() or not path.strip():
        raise ValueError(f"replay must look like PAIR=CSV, got {spec!r}")
    return pair.strip().upper(), path.strip()


def _price(value: float) -> str:
    return f"{value:.8f}"


def _int_param(name: str, default: int | None = None) -> int | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise BinanceError(-1100, f"Illegal characters found in parameter '{name}'.") from None


def _symbol_filters(prof: PairProfile, price: float) -> list[dict[str, Any]]:
    max_price = max(prof.price_level * 100, 1.0)
    return [
        {
            "filterType": "PRICE_FILTER",
            "minPrice": _price(prof.tick_size),
            "maxPrice": _price(max_price),
            "tickSize": _price(prof.tick_size),
        },
        {
            "filterType": "LOT_SIZE",
            "minQty": _price(prof.step_size),
            "maxQty": _price(round(90_000_000 / max(price, 1e-8))),
            "stepSize": _price(prof.step_size),
        },
        {"filterType": "ICEBERG_PARTS", "limit": 10},
        {
            "filterType": "MARKET_LOT_SIZE",
            "minQty": _price(0),
            "maxQty": _price(prof.minute_volume * 100),
            "stepSize": _price(0),
        },
        {
            "filterType": "TRAILING_DELTA",
            "minTrailingAboveDelta": 10,
            "maxTrailingAboveDelta": 2000,
            "minTrailingBelowDelta": 10,
            "maxTrailingBelowDelta": 2000,
        },
        {
            "filterType": "PERCENT_PRICE_BY_SIDE",
            "bidMultiplierUp": "5",
            "bidMultiplierDown": "0.2",
            "askMultiplierUp": "5",
            "askMultiplierDown": "0.2",
            "avgPriceMins": 5,
        },
        {
            "filterType": "NOTIONAL",
            "minNotional": _price(5.0),
            "applyMinToMarket": True,
            "maxNotional": _price(9_000_000.0),
            "applyMaxToMarket": False,
            "avgPriceMins": 5,
        },
        {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200},
        {"filterType": "MAX_NUM_ALGO_ORDERS", "maxNumAlgoOrders": 5},
    ]


def exchange_symbol(prof: PairProfile, price: float) -> dict[str, Any]:
    """One entry of exchangeInfo's ``symbols`` list, as Binance spot publishes it."""
    precision = 8
    return {
        "symbol": prof.symbol,
        "status": "TRADING",
        "baseAsset": prof.base,
        "baseAssetPrecision": precision,
        "quoteAsset": prof.quote,
        "quotePrecision": precision,
        "quoteAssetPrecision": precision,
        "baseCommissionPrecision": precision,
        "quoteCommissionPrecision": precision,
        "orderTypes": [
            "LIMIT",
            "LIMIT_MAKER",
            "MARKET",
            "STOP_LOSS",
            "STOP_LOSS_LIMIT",
            "TAKE_PROFIT",
            "TAKE_PROFIT_LIMIT",
        ],
        "icebergAllowed": True,
        "ocoAllowed": True,
        "otoAllowed": True,
        "quoteOrderQtyMarketAllowed": True,
        "allowTrailingStop": True,
        "cancelReplaceAllowed": True,
        "amendAllowed": True,
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False,
        "filters": _symbol_filters(prof, price),
        "permissions": [],
        "permissionSets": [["SPOT"]],
        "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
        "allowedSelfTradePreventionModes": [
            "EXPIRE_TAKER",
            "EXPIRE_MAKER",
            "EXPIRE_BOTH",
            "DECREMENT",
        ],
    }


def create_simulator_app(settings: Any = None) -> Flask:
    """The simulated exchange as a WSGI app (no database, no auth, independent of the main app).

    ``settings``: a mapping or object with ``seed``, ``pairs``, ``replay`` and optionally
    ``price_levels``, ``anchor_ms`` and ``clock`` (see :func:`market_settings_from`).
    """
    app = Flask("btcw_simulator")
    app.json.sort_keys = False  # type: ignore[attr-defined]
    market = MarketModel(market_settings_from(settings))
    switches = ExchangeSwitches()
    limiter = WeightLimiter(
        weight_limit=int(_pick(settings, "weight_limit", 0) or 0),
        ban_seconds=int(_pick(settings, "ban_seconds", DEFAULT_BAN_SECONDS) or DEFAULT_BAN_SECONDS),
    )
    app.extensions["btcw_market"] = market
    app.extensions["btcw_switches"] = switches
    app.extensions["btcw_limiter"] = limiter

    def profile_for_symbol(required: bool = True) -> PairProfile | None:
        symbol = request.args.get("symbol")
        if symbol is None or symbol == "":
            if required:
                raise mandatory("symbol")
            return None
        if not SYMBOL_PATTERN.match(symbol):
            raise BinanceError(
                -1100,
                "Illegal characters found in parameter 'symbol'; legal range is "
                "'^[A-Z0-9-_.]{1,20}$'.",
            )
        prof = market.by_symbol.get(symbol)
        if prof is None:
            raise invalid_symbol()
        return prof

    def profiles_requested() -> list[PairProfile]:
        """``symbol=`` or ``symbols=["A","B"]`` or neither (all)."""
        single = profile_for_symbol(required=False)
        if single is not None:
            return [single]
        raw = request.args.get("symbols")
        if raw is None:
            return list(market.profiles.values())
        try:
            names = json.loads(raw)
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise ValueError
        except ValueError:
            raise BinanceError(-1100, "Illegal characters found in parameter 'symbols'.") from None
        chosen = []
        for name in names:
            prof = market.by_symbol.get(name)
            if prof is None:
                raise invalid_symbol()
            chosen.append(prof)
        return chosen

    @app.errorhandler(BinanceError)
    def binance_error(error: BinanceError) -> Response:
        response = jsonify({"code": error.code, "msg": error.msg})
        response.status_code = error.status
        return response

    @app.errorhandler(404)
    def not_found(_error: Exception) -> Response:
        response = jsonify({"code": -1000, "msg": "Unknown path."})
        response.status_code = 404
        return response

    @app.before_request
    def count_and_gate() -> None:
        g.started = time.monotonic()
        if not request.path.startswith("/api/"):
            return
        with switches.lock:
            switches.counts[request.path] += 1
        if not switches.exchange_available:
            raise BinanceError(
                -1001, "Internal error; unable to process your request. Please try again.", 503
            )
        verdict = limiter.charge(request.remote_addr or "?",
                                 request_weight(request.path, request.args.to_dict()))
        g.used_weight = verdict.used
        if verdict.status != 200:
            response = jsonify({"code": -1003, "msg": verdict.message})
            response.status_code = verdict.status
            response.headers["Retry-After"] = str(verdict.retry_after)
            return response
        return None

    @app.after_request
    def remember(response: Response) -> Response:
        if request.path.startswith("/api/"):
            used = str(g.get("used_weight", 0))
            response.headers["X-MBX-USED-WEIGHT"] = used
            response.headers["X-MBX-USED-WEIGHT-1M"] = used
            with switches.lock:
                switches.recent.append(
                    {
                        "at_ms": int(time.time() * 1000),
                        "method": request.method,
                        "path": request.path,
                        "query": request.query_string.decode(errors="replace"),
                        "status": response.status_code,
                        "ms": round((time.monotonic() - g.get("started", 0)) * 1000, 2),
                    }
                )
        return response

    # ------------------------------------------------------------------ Binance API

    @app.get("/api/v3/ping")
    def ping() -> Response:
        return jsonify({})

    @app.get("/api/v3/time")
    def server_time() -> Response:
        return jsonify({"serverTime": market.now_ms()})

    @app.get("/api/v3/exchangeInfo")
    def exchange_info() -> Response:
        now = market.now_ms()
        symbols = [exchange_symbol(p, market.last_price(p.pair, now)) for p in profiles_requested()]
        return jsonify(
            {
                "timezone": "UTC",
                "serverTime": now,
                "rateLimits": [
                    {
                        "rateLimitType": "REQUEST_WEIGHT",
                        "interval": "MINUTE",
                        "intervalNum": 1,
                        "limit": 6000,
                    },
                    {
                        "rateLimitType": "ORDERS",
                        "interval": "SECOND",
                        "intervalNum": 10,
                        "limit": 100,
                    },
                    {
                        "rateLimitType": "ORDERS",
                        "interval": "DAY",
                        "intervalNum": 1,
                        "limit": 200000,
                    },
                    {
                        "rateLimitType": "RAW_REQUESTS",
                        "interval": "MINUTE",
                        "intervalNum": 5,
                        "limit": 61000,
                    },
                ],
                "exchangeFilters": [],
                "symbols": symbols,
            }
        )

    @app.get("/api/v3/klines")
    @app.get("/api/v3/uiKlines")
    def klines() -> Response:
        prof = profile_for_symbol()
        interval = request.args.get("interval")
        if not interval:
            raise mandatory("interval")
        if interval not in INTERVAL_MINUTES:
            raise BinanceError(-1120, "Invalid interval.")
        limit = _int_param("limit", KLINES_DEFAULT_LIMIT)
        if limit is None or limit < 1:
            raise BinanceError(-1130, "Invalid data sent for a parameter.")
        limit = min(limit, KLINES_MAX_LIMIT)
        start_ms, end_ms = _int_param("startTime"), _int_param("endTime")
        if start_ms is not None and end_ms is not None and start_ms > end_ms:
            raise BinanceError(-1127, "Lookback interval is too long.")
        now = market.now_ms()
        with switches.lock:
            serving, mode, frozen = (
                switches.klines_serving,
                switches.klines_mode,
                switches.klines_frozen_ms,
            )
        if not serving:
            if mode == "error":
                raise BinanceError(
                    -1001, "Internal error; unable to process your request. Please try again.", 503
                )
            now = frozen if frozen is not None else now
        series = market.candles(
            prof.pair, interval, start_ms=start_ms, end_ms=end_ms, limit=limit, now_ms=now
        )
        span = INTERVAL_MINUTES[interval] * MINUTE_MS
        rows = []
        for i in range(len(series)):
            volume, quote = float(series.volume[i]), float(series.quote_volume[i])
            trades = round(volume / prof.minute_volume * 40)  # about 40 trades a minute
            rows.append(
                [
                    int(series.open_time[i]),
                    _price(series.open[i]),
                    _price(series.high[i]),
                    _price(series.low[i]),
                    _price(series.close[i]),
                    _price(volume),
                    int(series.open_time[i]) + span - 1,
                    _price(quote),
                    trades,
                    _price(volume * 0.5),
                    _price(quote * 0.5),
                    "0",
                ]
            )
        return jsonify(rows)

    def ticker_24hr(prof: PairProfile, now: int) -> dict[str, Any]:
        day = market.rolling_day(prof.pair, now)
        quote = market.quote(prof.pair, now)
        change = day["last"] - day["open"]
        return {
            "symbol": prof.symbol,
            "priceChange": _price(change),
            "priceChangePercent": f"{change / day['open'] * 100:.3f}",
            "weightedAvgPrice": _price(day["quote_volume"] / day["volume"])
            if day["volume"]
            else _price(day["last"]),
            "prevClosePrice": _price(day["prev_close"]),
            "lastPrice": _price(day["last"]),
            "lastQty": _price(prof.step_size * 10),
            "bidPrice": _price(quote["bid"]),
            "bidQty": _price(quote["bid_qty"]),
            "askPrice": _price(quote["ask"]),
            "askQty": _price(quote["ask_qty"]),
            "openPrice": _price(day["open"]),
            "highPrice": _price(day["high"]),
            "lowPrice": _price(day["low"]),
            "volume": _price(day["volume"]),
            "quoteVolume": _price(day["quote_volume"]),
            "openTime": int(day["open_time"]),
            "closeTime": now,
            "firstId": now // 1000 - day["count"],
            "lastId": now // 1000 - 1,
            "count": day["count"],
        }

    @app.get("/api/v3/ticker/24hr")
    def ticker_24hr_view() -> Response:
        now = market.now_ms()
        single = request.args.get("symbol") is not None
        tickers = [ticker_24hr(p, now) for p in profiles_requested()]
        return jsonify(tickers[0] if single else tickers)

    @app.get("/api/v3/ticker/bookTicker")
    def book_ticker() -> Response:
        now = market.now_ms()
        single = request.args.get("symbol") is not None
        rows = []
        for prof in profiles_requested():
            quote = market.quote(prof.pair, now)
            rows.append(
                {
                    "symbol": prof.symbol,
                    "bidPrice": _price(quote["bid"]),
                    "bidQty": _price(quote["bid_qty"]),
                    "askPrice": _price(quote["ask"]),
                    "askQty": _price(quote["ask_qty"]),
                }
            )
        return jsonify(rows[0] if single else rows)

    @app.get("/api/v3/ticker/price")
    def ticker_price() -> Response:
        now = market.now_ms()
        single = request.args.get("symbol") is not None
        rows = [
            {"symbol": p.symbol, "price": _price(market.last_price(p.pair, now))}
            for p in profiles_requested()
        ]
        return jsonify(rows[0] if single else rows)

    @app.get("/api/v3/avgPrice")
    def average_price() -> Response:
        prof = profile_for_symbol()
        now = market.now_ms()
        path = market.path_until(prof.pair, now // MINUTE_MS - 4, now)
        return jsonify({"mins": 5, "price": _price(float(path.close.mean())), "closeTime": now})

    @app.get("/api/v3/depth")
    def depth() -> Response:
        prof = profile_for_symbol()
        limit = _int_param("limit", DEPTH_DEFAULT_LIMIT)
        if limit is None or limit < 1:
            raise BinanceError(-1130, "Invalid data sent for a parameter.")
        book = market.order_book(prof.pair, min(limit, DEPTH_MAX_LIMIT))
        return jsonify(
            {
                "lastUpdateId": int(book["update_id"]),
                "bids": [[_price(p), _price(q)] for p, q in book["bids"]],
                "asks": [[_price(p), _price(q)] for p, q in book["asks"]],
            }
        )

    # ------------------------------------------------------------------ control API

    @app.get("/_sim/state")
    def sim_state() -> Response:
        now = market.now_ms()
        with switches.lock:
            state = {
                "seed": market.seed,
                "now_ms": now,
                "pairs": {
                    p.pair: {
                        "symbol": p.symbol,
                        "price": market.last_price(p.pair, now),
                        "replay": market.replays[p.pair].source
                        if p.pair in market.replays
                        else None,
                    }
                    for p in market.profiles.values()
                },
                "klines": {
                    "serving": switches.klines_serving,
                    "mode": switches.klines_mode,
                    "frozen_at_ms": switches.klines_frozen_ms,
                },
                "exchange": {"available": switches.exchange_available},
                "requests": dict(switches.counts),
            }
        state["limits"] = limiter.snapshot()
        return jsonify(state)

    @app.post("/_sim/limits")
    def sim_limits() -> Response:
        body = request.get_json(silent=True) or {}
        for name in ("weight_limit", "ban_seconds"):
            value = body.get(name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or not 0 <= value <= 10**7):
                return _control_error(f"'{name}' must be a whole number 0..10000000")
        if "weight_limit" in body:
            limiter.weight_limit = body["weight_limit"]
        if body.get("ban_seconds"):
            limiter.ban_seconds = body["ban_seconds"]
        limiter.reset()
        return sim_state()

    @app.post("/_sim/klines")
    def sim_klines() -> Response:
        body = request.get_json(silent=True) or {}
        if not isinstance(body.get("serving"), bool):
            return _control_error("'serving' must be true or false")
        mode = body.get("mode", "stale")
        if mode not in ("stale", "error"):
            return _control_error("'mode' must be 'stale' or 'error'")
        with switches.lock:
            switches.klines_serving = body["serving"]
            switches.klines_mode = mode
            switches.klines_frozen_ms = None if body["serving"] else market.now_ms()
        return sim_state()

    @app.post("/_sim/exchange")
    def sim_exchange() -> Response:
        body = request.get_json(silent=True) or {}
        if not isinstance(body.get("available"), bool):
            return _control_error("'available' must be true or false")
        with switches.lock:
            switches.exchange_available = body["available"]
        return sim_state()

    @app.get("/_sim/requests")
    def sim_requests() -> Response:
        limit = request.args.get("limit", "100")
        count = int(limit) if limit.isdigit() else 100
        with switches.lock:
            recent = list(switches.recent)[-count:] if count else []
        return jsonify(recent)

    @app.post("/_sim/reset")
    def sim_reset() -> Response:
        with switches.lock:
            switches.reset()
        limiter.reset()
        return sim_state()

    return app


def _control_error(message: str) -> Response:
    response = jsonify({"error": message})
    response.status_code = 400
    return response


def serve_simulator(app: Flask, host: str = "127.0.0.1", port: int = 9999) -> None:
    """Serve the simulator with gevent's WSGI server until interrupted (no monkey patching)."""
    import gevent
    from gevent import socket as gsocket
    from gevent.pywsgi import WSGIServer

    # TCP_NODELAY (accepted sockets inherit it): pywsgi writes the headers and the body apart,
    # and on a kept-alive connection Nagle plus the client's delayed ACK would hold the body
    # back ~40 ms. Exchanges (and gunicorn) answer without that delay.
    listener = gsocket.socket(gsocket.AF_INET, gsocket.SOCK_STREAM)
    listener.setsockopt(gsocket.SOL_SOCKET, gsocket.SO_REUSEADDR, 1)
    listener.setsockopt(gsocket.IPPROTO_TCP, gsocket.TCP_NODELAY, 1)
    listener.bind((host, port))
    listener.listen(1024)
    server = WSGIServer(listener, app, log=None, error_log=log)
    gevent.signal_handler(signal.SIGTERM, server.close)  # stop accepting; serve_forever returns
    log.info("market simulator listening on http://%s:%s", host, port)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop(timeout=2)
