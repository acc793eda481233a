"""Real bots get their market data through the host's exchange relay: their configs point at
it, the relay shares the calls of the bots, and the Exchange access API, page and CLI show it."""

from __future__ import annotations

import json
import time

import pytest
import requests

from app.runtime import paths
from tests.bots import DEMO

pytestmark = pytest.mark.bots


def _relay_stats(world) -> dict:
    return requests.get(f"http://127.0.0.1:{world.relay_port}/_relay/stats", timeout=5).json()


def test_bots_fetch_market_data_through_the_relay(bots_world, bots_ctx, bots_client,
                                                  bots_api_token, demo_bots, simulator):
    for bot in demo_bots:
        config = json.loads(paths.config_path(bot.id).read_text())
        api = config["exchange"]["ccxt_config"]["urls"]["api"]["public"]
        assert api == f"http://127.0.0.1:{bots_world.relay_port}/simulator/api/v3"
        assert config["exchange"]["name"] == "binance"
    deadline = time.monotonic() + 90
    while True:
        stats = _relay_stats(bots_world)
        served = stats["counts"]
        if served["hit"] + served["shared"] > 0 and served["miss"] > 0:
            break
        assert time.monotonic() < deadline, stats
        time.sleep(1)
    direct = next(u for u in stats["upstreams"] if u["key"] == "direct")
    assert direct["requests"] == served["miss"] + served.get("stale", 0) or direct["requests"] > 0
    assert direct["429"] == 0 and direct["418"] == 0
    # What the simulator saw from everyone is at most what the relay passed on, plus the
    # tests' own calls: the bots' shared calls never reached it.
    sim = requests.get(f"{simulator}/_sim/state", timeout=5).json()
    assert sim["limits"]["refused"] == {}

    headers = {"Authorization": f"Bearer {bots_api_token}"}
    deadline = time.monotonic() + 15  # the relay publishes every 5 s
    while True:
        report = bots_client.get("/api/v1/system/exchange", headers=headers).get_json()
        if report["relays"] and report["relays"][0]["counts"]["requests"] > 0:
            break
        assert time.monotonic() < deadline, report
        time.sleep(1)
    assert report["enabled"] is True
    relay = report["relays"][0]
    assert relay["counts"]["requests"] > 0 and relay["upstreams"][0]["key"] == "direct"
    assert {"weight_used", "weight_budget", "429", "418", "requests_per_min"} <= set(
        relay["upstreams"][0])
    assert len(DEMO) == len(demo_bots)
