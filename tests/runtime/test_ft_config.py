"""The FreqTrade config of one bot: schema-valid, dry run, loopback API, webhooks FreqTrade sends."""

from __future__ import annotations

import copy
import json
import os
import stat
from datetime import UTC, datetime
from typing import Any, get_type_hints

import pytest
from freqtrade.configuration.config_validation import validate_config_schema
from freqtrade.enums import RPCMessageType
from freqtrade.rpc import rpc_types
from freqtrade.rpc.webhook import Webhook

from app.runtime.ft_config import (
    WEBHOOK_FIELDS,
    build_bot_config,
    proxy_ccxt_config,
    write_bot_config,
)

SIMULATOR = "http://127.0.0.1:9999"
# The TypedDict FreqTrade fills for each message type (freqtrade/rpc/rpc_types.py).
MESSAGE_SHAPES = {
    "entry": rpc_types.RPCEntryMsg,
    "entry_fill": rpc_types.RPCEntryMsg,
    "entry_cancel": rpc_types.RPCCancelMsg,
    "exit": rpc_types.RPCExitMsg,
    "exit_fill": rpc_types.RPCExitMsg,
    "exit_cancel": rpc_types.RPCExitCancelMsg,
    "status": rpc_types.RPCStatusMsg,
    "startup": rpc_types.RPCStatusMsg,
    "warning": rpc_types.RPCStatusMsg,
    "exception": rpc_types.RPCStatusMsg,
    "strategy_msg": rpc_types.RPCStrategyMsg,
}


def make_config(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "strategy": "RSI_ETH",
        "strategy_path": "/srv/btcw/user_data/strategies",
        "exchange": "simulator",
        "pairs": ["eth/usdt"],
        "api_port": 8082,
        "api_username": "bot-2",
        "api_password": "pw-secret",
        "jwt_secret": "j" * 40,
        "ws_token": "ws-secret",
        "db_url": "sqlite:////srv/btcw/var/bots/2/tradesv3.dryrun.sqlite",
        "user_data_dir": "/srv/btcw/var/bots/2/user_data",
        "log_file": "/srv/btcw/var/logs/bot-2.log",
        "webhook_url": "http://127.0.0.1:8000/api/v1/signals/webhook/2?token=t",
        "simulator_url": SIMULATOR,
    }
    values.update(overrides)
    return build_bot_config(**values)


def sample_message(message_type: str) -> dict[str, Any]:
    """A message with exactly the keys FreqTrade puts in one of ``message_type``."""
    shape = MESSAGE_SHAPES[message_type]
    now = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
    samples = {datetime: now, str: "x", float: 1.5, int: 7, bool: True}
    message: dict[str, Any] = {}
    for key, hint in get_type_hints(shape).items():
        base = next((t for t in samples if t in getattr(hint, "__args__", (hint,))), str)
        message[key] = samples[base]
    message["type"] = RPCMessageType(message_type)
    return message


def test_config_passes_freqtrades_own_schema_validation():
    config = make_config()
    validate_config_schema(copy.deepcopy(config), preliminary=True)
    # with what the strategy contributes, the full trade-mode schema holds too
    full = copy.deepcopy(config) | {"stoploss": -0.03, "minimal_roi": {"0": 0.05}}
    validate_config_schema(full, preliminary=False)


def test_dry_run_bot_that_starts_running_with_its_api_on_loopback():
    config = make_config()
    assert config["dry_run"] is True and config["initial_state"] == "running"
    assert config["force_entry_enable"] is True
    assert config["strategy"] == "RSI_ETH" and config["timeframe"] == "1m"
    assert config["strategy_path"] == "/srv/btcw/user_data/strategies"
    assert config["logfile"] == "/srv/btcw/var/logs/bot-2.log"
    assert config["db_url"].endswith("tradesv3.dryrun.sqlite")
    api = config["api_server"]
    assert api["enabled"] is True and api["listen_ip_address"] == "127.0.0.1"
    assert api["listen_port"] == 8082 and api["username"] == "bot-2"
    assert api["password"] == "pw-secret" and api["ws_token"] == "ws-secret"
    assert len(api["jwt_secret_key"]) >= 32
    assert config["apiserver"] == {"allow_custom_messages": True}
    assert config["pairlists"] == [{"method": "StaticPairList"}]
    assert config["exchange"]["pair_whitelist"] == ["ETH/USDT"]
    assert "fiat_display_currency" not in config
    assert config["exchange"]["enable_ws"] is False


def test_simulator_exchange_is_binance_pointed_at_the_simulator():
    exchange = make_config()["exchange"]
    assert exchange["name"] == "binance"
    for block in ("ccxt_config", "ccxt_async_config"):
        api = exchange[block]["urls"]["api"]
        assert api["public"] == f"{SIMULATOR}/api/v3" and api["private"] == f"{SIMULATOR}/api/v3"
        assert all(url.startswith(SIMULATOR) for url in api.values())
        assert {"sapi", "fapiPublic", "dapiPublic"} <= set(api)
        assert exchange[block]["options"]["fetchMarkets"]["types"] == ["spot"]


def test_real_exchange_has_no_simulator_urls():
    exchange = make_config(exchange="Binance", simulator_url=None)["exchange"]
    assert exchange["name"] == "binance"
    assert "urls" not in exchange["ccxt_config"]


@pytest.mark.parametrize(
    ("exchange", "proxy", "expected"),
    [
        ("simulator", "http://10.0.0.5:3128", {"httpProxy": "http://10.0.0.5:3128"}),
        ("binance", "http://10.0.0.5:3128", {"httpsProxy": "http://10.0.0.5:3128"}),
        ("okx", "socks5://10.0.0.5:1080", {"socksProxy": "socks5://10.0.0.5:1080"}),
    ],
)
def test_proxy_goes_into_ccxt_as_one_unified_setting(exchange, proxy, expected):
    ccxt_config = make_config(exchange=exchange, proxy_url=proxy)["exchange"]["ccxt_config"]
    assert {k: v for k, v in ccxt_config.items() if k.endswith("Proxy")} == expected
    assert "aiohttp_proxy" not in ccxt_config  # ccxt refuses aiohttp_proxy next to httpsProxy


def test_bad_values_are_refused():
    with pytest.raises(ValueError, match="32"):
        make_config(jwt_secret="short")
    with pytest.raises(ValueError, match="simulator_url"):
        make_config(simulator_url=None)
    with pytest.raises(ValueError, match="pair"):
        make_config(pairs=[])
    with pytest.raises(ValueError, match="proxy"):
        proxy_ccxt_config("ftp://x", exchange_is_plain_http=False)


def test_webhook_block():
    hook = make_config()["webhook"]
    assert hook["enabled"] is True and hook["format"] == "json"
    assert (hook["retries"], hook["retry_delay"], hook["timeout"]) == (3, 0.2, 5)
    assert hook["allow_custom_messages"] is True
    assert hook["url"].startswith("http://127.0.0.1:8000/api/v1/signals/webhook/2")
    for message_type in (
        "entry",
        "entry_fill",
        "entry_cancel",
        "exit",
        "exit_fill",
        "exit_cancel",
        "status",
        "strategy_msg",
    ):
        assert hook[message_type]["type"] == message_type
        assert hook[message_type]["strategy"] == "RSI_ETH"


def test_no_webhook_url_means_no_webhooks():
    assert make_config(webhook_url=None)["webhook"] == {"enabled": False}


@pytest.mark.parametrize("message_type", sorted(WEBHOOK_FIELDS))
def test_every_payload_formats_with_the_message_freqtrade_sends(message_type):
    """An unknown placeholder would make FreqTrade drop the message: format with the real keys."""
    config = make_config(strategy="Odd{Name}")
    webhook = Webhook(rpc=None, config=config)  # type: ignore[arg-type]
    sent: list[dict] = []
    webhook._send_msg = sent.append  # type: ignore[method-assign]
    webhook.send_msg(sample_message(message_type))  # type: ignore[arg-type]
    assert len(sent) == 1, f"{message_type} was not sent"
    payload = sent[0]
    assert payload["type"] == message_type and payload["strategy"] == "Odd{Name}"
    assert json.loads(json.dumps(payload)) == payload
    for field in WEBHOOK_FIELDS[message_type]:
        assert payload[field] != "{" + field + "}"


def test_strategy_message_reaches_the_webhook():
    config = make_config()
    webhook = Webhook(rpc=None, config=config)  # type: ignore[arg-type]
    sent: list[dict] = []
    webhook._send_msg = sent.append  # type: ignore[method-assign]
    msg = json.dumps({"btcw": 1, "kind": "signal", "signal_strength": 0.8})
    webhook.send_msg({"type": RPCMessageType.STRATEGY_MSG, "msg": msg})
    assert sent == [{"type": "strategy_msg", "strategy": "RSI_ETH", "msg": msg}]
    assert json.loads(sent[0]["msg"])["signal_strength"] == 0.8


def test_write_bot_config_is_atomic_and_private(tmp_path):
    config = make_config(user_data_dir=str(tmp_path / "bot" / "user_data"))
    target = write_bot_config(tmp_path / "bot" / "config.json", config)
    assert json.loads(target.read_text()) == config
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    assert (tmp_path / "bot" / "user_data").is_dir()
    assert [p.name for p in target.parent.iterdir() if p.name.endswith(".tmp")] == []
    # rewriting replaces the file in one step
    write_bot_config(target, config | {"max_open_trades": 3})
    assert json.loads(target.read_text())["max_open_trades"] == 3


def test_write_bot_config_leaves_no_temp_file_on_failure(tmp_path):
    with pytest.raises(TypeError):
        write_bot_config(tmp_path / "config.json", {"bad": object()})
    assert list(tmp_path.iterdir()) == []
