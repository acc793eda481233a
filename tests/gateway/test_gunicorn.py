"""The gateway as production runs it: `gunicorn -k gevent 'wsgi:gateway()'` in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
import websocket
from freqtrade_client import FtRestClient

from app.system.stack import gunicorn_flags
from tests.gateway.conftest import (
    GATEWAY_TIMEOUT,
    PASSWORD,
    USER,
    bot_row,
    next_status,
    route,
)
from tests.gateway.fakes import DyingBot, sleepy_bot
from tests.gateway.test_proxy import masked, steady
from tests.support.servers import free_port, wait_healthy

pytestmark = pytest.mark.bots
ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def gunicorn_gateway(bots_world, gateway_config_dir, gateway_app, demo_bots):
    """A gunicorn gevent gateway on a free port (the bots' database and Redis)."""
    port = free_port()
    env = {**bots_world.env(), "BTCW_CONFIG_DIR": str(gateway_config_dir)}
    log = open(bots_world.var_dir / "gateway-gunicorn.log", "ab")  # noqa: SIM115
    proc = subprocess.Popen(  # noqa: S603
        [str(BIN / "gunicorn"), "-k", "gevent", "-w", "1", "-b", f"127.0.0.1:{port}",
         "--graceful-timeout", "5", *gunicorn_flags(), "wsgi:gateway()"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    if not wait_healthy(url, 30, proc) and proc.poll() is None:
        proc.kill()
        pytest.fail("gunicorn gateway did not come up")
    if proc.poll() is not None:
        log.close()
        pytest.fail("gunicorn exited:\n"
                    + (bots_world.var_dir / "gateway-gunicorn.log").read_text()[-3000:])
    yield url
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
    log.close()


@pytest.fixture
def demo(bots_app, demo_bots):
    return {"id": demo_bots[0].id, **bot_row(bots_app, demo_bots[0].id)}


def _secrets(bots_app, sid):
    from app.extensions import db
    from app.strategies.models import Strategy

    with bots_app.app_context():
        row = db.session.get(Strategy, sid)
        return [row.api_password, row.jwt_secret, row.ws_token, row.webhook_token]


@pytest.mark.parametrize("method", ["ping", "version", "count", "whitelist", "blacklist",
                                    "show_config", "locks", "profit", "balance", "trades",
                                    "status", "performance", "daily", "stats", "health"])
def test_freqtrade_client_through_gunicorn(gunicorn_gateway, demo, bots_app, seen, method):
    direct = FtRestClient(demo["url"], demo["username"], demo["password"])
    through = FtRestClient(f"{gunicorn_gateway}/api/strategy/{demo['id']}", USER, PASSWORD)
    seen.hook(through._session)
    secrets = _secrets(bots_app, demo["id"])
    for _ in range(5):
        before = masked(getattr(direct, method)(), secrets)
        via = getattr(through, method)()
        after = masked(getattr(direct, method)(), secrets)
        if via in (before, after) or steady(via) in (steady(before), steady(after)):
            return
        time.sleep(0.5)
    pytest.fail(f"{method}: gateway {via!r}\n direct {before!r}")


def test_errors_through_gunicorn(gunicorn_gateway, bots_app, gateway_app, seen):
    session = requests.Session()
    session.auth = (USER, PASSWORD)
    seen.hook(session)
    missing = session.get(f"{gunicorn_gateway}/api/strategy/999999/status", timeout=10)
    assert missing.status_code == 404 and "999999" in missing.json()["message"]
    with route(bots_app, gateway_app, "gw-g-refused", port=free_port()) as sid:
        # The worker reloads on the published change a moment later; the test reloads it now
        # (SQLite reuses ids: a request racing the reload could hit the previous row's route).
        session.post(f"{gunicorn_gateway}/api/gateway/routes/reload", timeout=10)
        start = time.monotonic()
        refused = session.get(f"{gunicorn_gateway}/api/strategy/{sid}/status", timeout=10)
        took = time.monotonic() - start
    assert refused.status_code == 502, (sid, refused.status_code, refused.text)
    assert "'gw-g-refused'" in refused.json()["message"]
    assert took < GATEWAY_TIMEOUT, took  # refused at once, not after the timeout
    slow = sleepy_bot(GATEWAY_TIMEOUT + 3)
    try:
        with route(bots_app, gateway_app, "gw-g-slow", port=slow.port) as sid:
            session.post(f"{gunicorn_gateway}/api/gateway/routes/reload", timeout=10)
            start = time.monotonic()
            late = session.get(f"{gunicorn_gateway}/api/strategy/{sid}/profit", timeout=10)
            took = time.monotonic() - start
    finally:
        slow.close()
    assert late.status_code == 504 and "'gw-g-slow'" in late.json()["message"], late.text
    assert GATEWAY_TIMEOUT - 0.2 < took < GATEWAY_TIMEOUT + 2.0, took


def test_killed_mid_answer_through_gunicorn(gunicorn_gateway, bots_app, gateway_app, seen):
    dying = DyingBot()
    result = {}
    try:
        with route(bots_app, gateway_app, "gw-g-dying", port=dying.port) as sid:
            requests.post(f"{gunicorn_gateway}/api/gateway/routes/reload",
                          auth=(USER, PASSWORD), timeout=10)

            def ask():
                result["response"] = requests.get(
                    f"{gunicorn_gateway}/api/strategy/{sid}/trades", auth=(USER, PASSWORD),
                    timeout=10)

            asker = threading.Thread(target=ask)
            asker.start()
            dying.wait_half_sent()
            killed_at = time.monotonic()
            dying.kill()
            asker.join(10)
            after_kill = time.monotonic() - killed_at
    finally:
        dying.kill()
    seen.add_requests(result["response"])
    assert result["response"].status_code == 502 and after_kill < 1.0


def test_login_and_websocket_through_gunicorn(gunicorn_gateway, demo, seen):
    base = f"{gunicorn_gateway}/api/strategy/{demo['id']}/api/v1"
    login = requests.post(f"{base}/token/login", auth=(USER, PASSWORD), timeout=10)
    seen.add_requests(login)
    token = login.json()["access_token"]
    counted = requests.get(f"{base}/count", headers={"Authorization": f"Bearer {token}"},
                           timeout=10)
    seen.add_requests(counted)
    assert counted.status_code == 200
    ws = websocket.create_connection(
        base.replace("http://", "ws://") + f"/message/ws?token={token}", timeout=20)
    direct = FtRestClient(demo["url"], demo["username"], demo["password"])

    try:
        ws.send(json.dumps({"type": "subscribe", "data": ["status"]}))
        time.sleep(0.5)
        direct.stop()
        assert next_status(ws, seen) == "stopped"
        direct.start()
        assert next_status(ws, seen) == "running"
    finally:
        direct.start()
        ws.close()


def test_health_through_gunicorn(gunicorn_gateway, demo_bots, seen):
    body = requests.get(f"{gunicorn_gateway}/api/gateway/health", auth=(USER, PASSWORD),
                        timeout=10)
    seen.add_requests(body)
    assert body.json()["healthy_strategies"] >= len(demo_bots)
