"""The FreqTrade configuration of one bot, built from plain values (no database, no Flask).

``build_bot_config`` returns the dict; ``write_bot_config`` stores it atomically with mode 0600
(it holds the bot's API password and JWT secret). The facts this relies on were checked against
FreqTrade 2026.9's own source (``freqtrade/rpc/webhook.py``, ``freqtrade/rpc/api_server/``,
``freqtrade/configuration/config_schema.py``):

* every bot is a dry run that starts trading at once, with its REST API on loopback;
* the webhook sends one JSON object per message type, built only from the placeholders FreqTrade
  fills for that type (an unknown placeholder makes FreqTrade drop the message); each object names
  its type in ``"type"`` and the strategy in ``"strategy"``, and all values arrive as strings;
* strategy messages (``dp.send_msg``) reach the webhook with ``webhook.allow_custom_messages`` and
  the message websocket with a top-level ``"apiserver": {"allow_custom_messages": true}``;
* exchange ``simulator`` means Binance with every ccxt API URL pointed at the market simulator;
* with ``relay_url`` (the host's exchange relay, app/relay) a ``binance`` or ``simulator`` bot
  sends every market-data call to the relay instead, which shares answers among the bots and
  keeps them under one rate budget; a bot with its own proxy goes through that proxy instead.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

SIMULATOR_EXCHANGE = "simulator"
MIN_JWT_SECRET_LENGTH = 32
# Share of the wallet FreqTrade may trade with; it keeps the rest as a reserve (its /balance
# reports the tradable part as `starting_capital`).
TRADABLE_BALANCE_RATIO = 0.99

# Placeholders FreqTrade fills for every entry-like message (entry, entry_fill, entry_cancel) and
# for every exit-like one (exit, exit_fill, exit_cancel): freqtradebot._notify_enter/_notify_exit.
_TRADE_FIELDS = (
    "trade_id",
    "exchange",
    "pair",
    "base_currency",
    "quote_currency",
    "direction",
    "enter_tag",
    "order_type",
    "order_rate",
    "open_rate",
    "current_rate",
    "amount",
    "stake_amount",
    "stake_currency",
    "open_date",
    "sub_trade",
)
_EXIT_COMMON = ("exit_reason", "gain", "profit_amount", "profit_ratio", "close_date")
WEBHOOK_FIELDS: dict[str, tuple[str, ...]] = {
    "entry": _TRADE_FIELDS,
    "entry_fill": _TRADE_FIELDS,
    "entry_cancel": (*_TRADE_FIELDS, "reason"),
    "exit": (*_TRADE_FIELDS, *_EXIT_COMMON, "close_rate", "cumulative_profit", "is_final_exit"),
    "exit_fill": (
        *_TRADE_FIELDS,
        *_EXIT_COMMON,
        "close_rate",
        "cumulative_profit",
        "is_final_exit",
    ),
    "exit_cancel": (*_TRADE_FIELDS, *_EXIT_COMMON, "reason"),
    "status": ("status",),
    "startup": ("status",),
    "warning": ("status",),
    "exception": ("status",),
    "strategy_msg": ("msg",),
}


def _literal(text: str) -> str:
    """A constant inside a webhook payload: braces doubled so str.format leaves it alone."""
    return text.replace("{", "{{").replace("}", "}}")


def webhook_payloads(strategy: str) -> dict[str, dict[str, str]]:
    """One JSON payload template per message type, e.g. ``{"type": "exit", "pair": "{pair}"…}``."""
    payloads = {}
    for message_type, fields in WEBHOOK_FIELDS.items():
        payload = {"type": message_type, "strategy": _literal(strategy)}
        payload.update({field: "{" + field + "}" for field in fields})
        payloads[message_type] = payload
    return payloads


RELAYED_EXCHANGES = ("binance", SIMULATOR_EXCHANGE)


def simulator_ccxt_config(base_url: str) -> dict[str, Any]:
    """ccxt settings that send every Binance API family to ``base_url`` (the market simulator,
    or the exchange relay's ``/<exchange>`` prefix)."""
    base = base_url.rstrip("/")
    api = {
        "public": f"{base}/api/v3",
        "private": f"{base}/api/v3",
        "v1": f"{base}/api/v1",
        "sapi": f"{base}/sapi/v1",
        "sapiV2": f"{base}/sapi/v2",
        "sapiV3": f"{base}/sapi/v3",
        "sapiV4": f"{base}/sapi/v4",
        "fapiPublic": f"{base}/fapi/v1",
        "fapiPublicV2": f"{base}/fapi/v2",
        "fapiPublicV3": f"{base}/fapi/v3",
        "fapiPrivate": f"{base}/fapi/v1",
        "fapiPrivateV2": f"{base}/fapi/v2",
        "fapiPrivateV3": f"{base}/fapi/v3",
        "fapiData": f"{base}/futures/data",
        "dapiPublic": f"{base}/dapi/v1",
        "dapiPrivate": f"{base}/dapi/v1",
        "dapiPrivateV2": f"{base}/dapi/v2",
        "dapiData": f"{base}/futures/data",
        "eapiPublic": f"{base}/eapi/v1",
        "eapiPrivate": f"{base}/eapi/v1",
        "papi": f"{base}/papi/v1",
        "papiV2": f"{base}/papi/v2",
    }
    return {"urls": {"api": api}, "options": {"fetchMarkets": {"types": ["spot"]}}}


def proxy_ccxt_config(proxy_url: str, exchange_is_plain_http: bool) -> dict[str, str]:
    """The ccxt proxy setting for ``proxy_url``: socks5 -> socksProxy, else http(s)Proxy.

    ccxt picks a proxy by the scheme of the *exchange* URL: ``httpsProxy`` serves https exchanges
    (real ones), ``httpProxy`` plain-http ones (the simulator). One unified key serves both the
    sync and the async client; adding ``aiohttp_proxy`` as well makes ccxt refuse to send.
    """
    scheme = urlsplit(proxy_url).scheme.lower()
    if scheme.startswith("socks"):
        return {"socksProxy": proxy_url}
    if scheme not in ("http", "https"):
        raise ValueError(f"proxy URL must be http://, https:// or socks5://, got {proxy_url!r}")
    return {"httpProxy" if exchange_is_plain_http else "httpsProxy": proxy_url}


def build_bot_config(
    *,
    strategy: str,
    strategy_path: str | Path,
    exchange: str,
    pairs: Sequence[str],
    api_port: int,
    api_username: str,
    api_password: str,
    jwt_secret: str,
    ws_token: str,
    db_url: str,
    user_data_dir: str | Path,
    timeframe: str = "1m",
    stake_currency: str = "USDT",
    stake_amount: float | str = "unlimited",
    max_open_trades: int = 1,
    dry_run_wallet: float = 1000.0,
    api_host: str = "127.0.0.1",
    log_file: str | Path | None = None,
    webhook_url: str | None = None,
    proxy_url: str | None = None,
    simulator_url: str | None = None,
    relay_url: str | None = None,
    bot_name: str | None = None,
    cors_origins: Sequence[str] = (),
) -> dict[str, Any]:
    """Build the FreqTrade config dict of one dry-run bot (see the module docstring).

    ``exchange`` is a ccxt exchange id (``binance``, ``okx``…) or ``simulator``, which needs
    ``simulator_url`` (e.g. ``http://127.0.0.1:9999``). ``webhook_url`` None disables webhooks;
    ``proxy_url`` (http/https/socks5) goes into ccxt. ``relay_url`` (``http://host:9990/binance``)
    sends market data through the exchange relay when the exchange is binance or simulator and
    there is no proxy_url. Raises ValueError on an unusable value.
    """
    if len(jwt_secret) < MIN_JWT_SECRET_LENGTH:
        raise ValueError(f"jwt_secret needs at least {MIN_JWT_SECRET_LENGTH} characters")
    if not pairs:
        raise ValueError("a bot needs at least one pair")
    if not 1 <= int(api_port) <= 65535:
        raise ValueError(f"api_port out of range: {api_port}")
    exchange = exchange.strip().lower()

    ccxt_config: dict[str, Any] = {"enableRateLimit": True}
    plain_http_exchange = False
    relayed = bool(relay_url) and not proxy_url and exchange in RELAYED_EXCHANGES
    if relayed:
        ccxt_config.update(simulator_ccxt_config(str(relay_url)))
        exchange_name = "binance"
    elif exchange == SIMULATOR_EXCHANGE:
        if not simulator_url:
            raise ValueError("exchange 'simulator' needs simulator_url")
        ccxt_config.update(simulator_ccxt_config(simulator_url))
        plain_http_exchange = urlsplit(simulator_url).scheme == "http"
        exchange_name = "binance"
    else:
        exchange_name = exchange
    if proxy_url:
        ccxt_config.update(proxy_ccxt_config(proxy_url, plain_http_exchange))

    config: dict[str, Any] = {
        "bot_name": bot_name or strategy,
        "strategy": strategy,
        "strategy_path": str(strategy_path),
        "user_data_dir": str(user_data_dir),
        "db_url": db_url,
        "dry_run": True,
        "dry_run_wallet": dry_run_wallet,
        "initial_state": "running",
        "force_entry_enable": True,
        "trading_mode": "spot",
        "margin_mode": "",
        "timeframe": timeframe,
        "max_open_trades": max_open_trades,
        "stake_currency": stake_currency,
        "stake_amount": stake_amount,
        "tradable_balance_ratio": TRADABLE_BALANCE_RATIO,
        "cancel_open_orders_on_exit": False,
        "unfilledtimeout": {"entry": 3, "exit": 3, "exit_timeout_count": 0, "unit": "minutes"},
        "entry_pricing": {
            "price_side": "other",
            "use_order_book": False,
            "price_last_balance": 0.0,
            "check_depth_of_market": {"enabled": False, "bids_to_ask_delta": 1},
        },
        "exit_pricing": {"price_side": "other", "use_order_book": False},
        "exchange": {
            "name": exchange_name,
            "key": "",
            "secret": "",
            "enable_ws": False,
            "ccxt_config": ccxt_config,
            "ccxt_async_config": {},
            "pair_whitelist": [p.upper() for p in pairs],
            "pair_blacklist": [],
        },
        "pairlists": [{"method": "StaticPairList"}],
        "telegram": {"enabled": False, "token": "", "chat_id": ""},
        "api_server": {
            "enabled": True,
            "listen_ip_address": api_host,
            "listen_port": int(api_port),
            "verbosity": "error",
            "enable_openapi": False,
            "jwt_secret_key": jwt_secret,
            "ws_token": ws_token,
            "CORS_origins": list(cors_origins),
            "username": api_username,
            "password": api_password,
        },
        "apiserver": {"allow_custom_messages": True},
        "internals": {"process_throttle_secs": 5, "heartbeat_interval": 60},
        "dataformat_ohlcv": "feather",
        "dataformat_trades": "feather",
    }
    if relayed or exchange == SIMULATOR_EXCHANGE:
        # FreqTrade merges ccxt_config into the async client too; say it explicitly anyway.
        config["exchange"]["ccxt_async_config"] = simulator_ccxt_config(
            str(relay_url if relayed else simulator_url))
    if log_file:
        config["logfile"] = str(log_file)
    if webhook_url:
        config["webhook"] = {
            "enabled": True,
            "url": webhook_url,
            "format": "json",
            "retries": 3,
            "retry_delay": 0.2,
            "timeout": 5,
            "allow_custom_messages": True,
            **webhook_payloads(strategy),
        }
    else:
        config["webhook"] = {"enabled": False}
    return config


def write_bot_config(path: str | Path, config: dict[str, Any]) -> Path:
    """Write ``config`` as JSON to ``path`` atomically (temp file + rename), mode 0600.

    Also creates the config's ``user_data_dir`` if missing (FreqTrade refuses to start without it).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if config.get("user_data_dir"):
        Path(config["user_data_dir"]).mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(config, fh, indent=2, sort_keys=False)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return target
