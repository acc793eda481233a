"""Routes: cache invalidation over Redis, reload, drift repair; all bots' status and health."""

from __future__ import annotations

import time

import pytest
import redis

from app.gateway.routes_cache import CHANNEL, FINGERPRINT_PREFIX, publish_route_change
from config.loader import load_settings
from tests.gateway.conftest import route
from tests.gateway.fakes import json_bot
from tests.support.servers import free_port

pytestmark = pytest.mark.bots


@pytest.fixture
def bots_redis(bots_world):
    client = redis.Redis.from_url(bots_world.redis_url)
    yield client
    client.close()


def _set_port(bots_app, strategy_id: int, port: int) -> None:
    from app.extensions import db
    from app.strategies.models import Strategy

    with bots_app.app_context():
        db.session.get(Strategy, strategy_id).port = port
        db.session.commit()


def _wait_subscribed(client: redis.Redis, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if dict(client.pubsub_numsub(CHANNEL)).get(CHANNEL.encode(), 0) > 0:
            return
        time.sleep(0.05)
    raise AssertionError("the gateway never subscribed to the route channel")


def _served_by(gw, sid, user_auth, payload, timeout: float) -> float | None:
    """Seconds until the gateway answers `payload` for the strategy, or None."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if gw.get(f"/api/strategy/{sid}/whoami", headers=user_auth).get_json() == payload:
            return time.monotonic() - start
        time.sleep(0.05)
    return None


@pytest.mark.parametrize("channel", ["routes", "supervisor"])
def test_a_published_route_change_is_picked_up_at_once(gw, bots_app, gateway_app, user_auth,
                                                       bots_redis, channel):
    first, second = json_bot({"bot": "first"}), json_bot({"bot": "second"})
    try:
        with route(bots_app, gateway_app, f"gw-move-{channel}", port=first.port) as sid:
            assert gw.get(f"/api/strategy/{sid}/whoami",
                          headers=user_auth).get_json() == {"bot": "first"}
            _wait_subscribed(bots_redis)
            _set_port(bots_app, sid, second.port)
            if channel == "routes":
                assert publish_route_change(sid, redis_client=bots_redis)
            else:  # what the supervisor announces on every status change
                bots_redis.publish("btcw:runtime:events", f'{{"strategy_id": {sid}}}')
            took = _served_by(gw, sid, user_auth, {"bot": "second"}, 3)
    finally:
        first.close()
        second.close()
    ttl = gateway_app.extensions["btcw_settings"].settings.system.gateway.route_cache_seconds
    assert took is not None and took < min(1.0, ttl)


def test_without_a_message_the_cache_expires_after_route_cache_seconds(gw, bots_app,
                                                                       gateway_app, user_auth):
    first, second = json_bot({"bot": "first"}), json_bot({"bot": "second"})
    ttl = gateway_app.extensions["btcw_settings"].settings.system.gateway.route_cache_seconds
    try:
        with route(bots_app, gateway_app, "gw-expire", port=first.port) as sid:
            gw.get(f"/api/strategy/{sid}/whoami", headers=user_auth)
            _set_port(bots_app, sid, second.port)
            assert gw.get(f"/api/strategy/{sid}/whoami",
                          headers=user_auth).get_json() == {"bot": "first"}  # cached
            took = _served_by(gw, sid, user_auth, {"bot": "second"}, ttl + 3)
    finally:
        first.close()
        second.close()
    assert took is not None and took <= ttl + 1


def test_reload_endpoint_reloads_now(gw, bots_app, gateway_app, user_auth):
    first, second = json_bot({"bot": "first"}), json_bot({"bot": "second"})
    try:
        with route(bots_app, gateway_app, "gw-reload", port=first.port) as sid:
            gw.get(f"/api/strategy/{sid}/whoami", headers=user_auth)
            _set_port(bots_app, sid, second.port)
            reply = gw.post("/api/gateway/routes/reload", headers=user_auth)
            assert reply.status_code == 200
            body = reply.get_json()
            assert body["status"] == "success" and body["routes_count"] >= body["routable"] >= 1
            assert gw.get(f"/api/strategy/{sid}/whoami",
                          headers=user_auth).get_json() == {"bot": "second"}
    finally:
        first.close()
        second.close()


def test_management_endpoints_need_login_except_liveness(gw):
    for path in ("/api/strategies/status", "/api/gateway/health"):
        assert gw.get(path).status_code == 401
    assert gw.post("/api/gateway/routes/reload").status_code == 401
    assert gw.get("/health").get_json()["status"] == "ok"


def test_strategies_status_fetches_every_bot(gw, bots_app, gateway_app, demo_bots, user_auth):
    with route(bots_app, gateway_app, "gw-status-dead", port=free_port()) as dead:
        start = time.monotonic()
        body = gw.get("/api/strategies/status", headers=user_auth).get_json()
        took = time.monotonic() - start
    for bot in demo_bots:
        entry = body["strategies"][str(bot.id)]
        assert entry["status"] == "healthy" and isinstance(entry["data"], list)
        assert entry["name"] == bot.name
    assert body["strategies"][str(dead)]["status"] == "unreachable"
    assert "connection refused" in body["strategies"][str(dead)]["error"]
    assert body["total_strategies"] >= 3
    assert took < 3


def test_gateway_health_counts_healthy_bots(gw, bots_app, gateway_app, demo_bots, user_auth,
                                           gateway_config_dir):
    healthy = gw.get("/api/gateway/health", headers=user_auth).get_json()
    assert healthy["healthy_strategies"] == healthy["total_strategies"] >= len(demo_bots)
    assert healthy["health_score"] == 100.0 and healthy["status"] == "healthy"
    assert healthy["routes_loaded"] == healthy["total_strategies"]
    assert healthy["gateway_port"] == load_settings(gateway_config_dir).system.gateway.port
    with route(bots_app, gateway_app, "gw-health-dead", port=free_port()) as dead:
        body = gw.get("/api/gateway/health", headers=user_auth).get_json()
    total = healthy["total_strategies"] + 1
    assert body["total_strategies"] == total and body["healthy_strategies"] == total - 1
    assert body["health_score"] == round((total - 1) * 100 / total, 1)
    assert [u["strategy_id"] for u in body["unhealthy"]] == [dead]


def test_drift_check_finds_dead_routes_and_stale_workers(bots_app, gateway_app, bots_redis):
    from app.extensions import db
    from app.gateway.service import check_drift
    from app.strategies.models import StrategyEvent

    bots_redis.set(FINGERPRINT_PREFIX + "elsewhere:1", "stale", ex=60)
    pubsub = bots_redis.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(CHANNEL)
    try:
        with route(bots_app, gateway_app, "gw-drift", port=free_port()) as sid:
            with bots_app.app_context():
                first = check_drift(redis_client=bots_redis)
                second = check_drift(redis_client=bots_redis)
                events = db.session.scalars(db.select(StrategyEvent).where(
                    StrategyEvent.strategy_id == sid, StrategyEvent.kind == "route_drift")).all()
                messages = [e.message for e in events]
        published = []
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and not published:
            message = pubsub.get_message(timeout=0.2)
            if message:
                published.append(message["data"])
    finally:
        pubsub.close()
        bots_redis.delete(FINGERPRINT_PREFIX + "elsewhere:1")
    problem = [p for p in first["problems"] if p["strategy_id"] == sid]
    assert problem and problem[0]["kind"] == "bot_not_answering"
    assert "elsewhere:1" in first["stale_workers"]
    assert first["reload_published"] and published
    assert len(messages) == 1 and "bot_not_answering" in messages[0]  # not once per check
    assert [p for p in second["problems"] if p["strategy_id"] == sid]


def test_drift_check_is_clean_when_routes_match(bots_app, gateway_app, bots_redis, demo_bots):
    from app.gateway.service import check_drift

    gateway_app.extensions["btcw_gateway"].routes.reload()  # writes this worker's fingerprint
    with bots_app.app_context():
        report = check_drift(redis_client=bots_redis)
    assert report["routes"] >= len(demo_bots)
    assert report["problems"] == [] and report["stale_workers"] == []
    assert report["reload_published"] is False


def test_web_app_gateway_status_uses_the_same_service(bots_client, bots_api_token, demo_bots):
    response = bots_client.get("/api/v1/strategies/gateway/status",
                               headers={"Authorization": f"Bearer {bots_api_token}"})
    assert response.status_code == 200
    body = response.get_json()
    assert body["summary"]["healthy_strategies"] >= len(demo_bots)
    assert body["summary"]["total_strategies"] == body["gateway"]["total_strategies"]
    for bot in demo_bots:
        assert body["strategies"]["strategies"][str(bot.id)]["status"] == "healthy"
    assert "gateway_reachable" in body["gateway"]
