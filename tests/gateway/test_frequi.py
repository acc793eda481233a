"""FreqUI (FreqTrade's own web UI, the build in ../shared/frequi/) through the gateway, driven
in Chromium against the two running demo bots.

(a) FreqUI served from another loopback origin that is allowed: it logs in to both bots through
    the gateway, the dashboard compares them, trades, the candle chart, logs and the message
    websocket work, and an expired access token is refreshed with the bot staying online;
(b) the same build from an origin that is not allowed gets nothing from any bot;
(c) FreqUI served by BTC Watcher itself: after the BTC Watcher login it shows every running bot
    without any further login, and a strategy's "Open in FreqUI" selects that bot.

The gateway (gunicorn + gevent, as production) and the web app run on this test's config: the
FreqUI folder and the allowed origin set, the web and gateway addresses pointing at each other.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from werkzeug.serving import make_server

from app.system.stack import gunicorn_flags
from config import yaml_io
from tests.gateway.conftest import PASSWORD, USER
from tests.support.browser import chromium, frequi_build
from tests.support.servers import free_port, wait_healthy

pytestmark = pytest.mark.bots
ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SHOTS = ROOT / "var" / "screenshots"


class _SpaHandler(SimpleHTTPRequestHandler):
    """A static server for FreqUI's build that falls back to index.html (its README)."""

    def send_head(self):
        path = Path(self.translate_path(self.path))
        if not path.exists():
            self.path = "/index.html"
        return super().send_head()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def frequi_world(bots_world, gateway_config_dir, gateway_app, demo_bots, tmp_path_factory):
    """FreqUI elsewhere (static server), the gateway and the web app on one config."""
    build = frequi_build()
    static_port, gateway_port, web_port = free_port(), free_port(), free_port()
    allowed = f"http://127.0.0.1:{static_port}"
    folder = tmp_path_factory.mktemp("frequi-config")
    for f in gateway_config_dir.glob("*.yml"):
        (folder / f.name).write_text(f.read_text())
    system = yaml_io.load((folder / "system.yml").read_text())
    section = system["system"]
    # Production timeouts (10 s / 2 s), not the gateway tests' 2 s: on a loaded machine a bot's
    # show_config may take more than 2 s, and FreqUI does not ask again after a 504.
    section["gateway"].update(port=gateway_port, frequi_dir=str(build), timeout=10,
                              connect_timeout=2, public_url=f"http://127.0.0.1:{gateway_port}")
    section["web"]["public_url"] = f"http://127.0.0.1:{web_port}"
    section.setdefault("security", {})["cors_origins"] = [allowed]
    (folder / "system.yml").write_text(yaml_io.dump(system))

    static = ThreadingHTTPServer(("127.0.0.1", static_port),
                                 functools.partial(_SpaHandler, directory=str(build)))
    threading.Thread(target=static.serve_forever, daemon=True).start()

    env = {**bots_world.env(), "BTCW_CONFIG_DIR": str(folder)}
    log_path = bots_world.var_dir / "gateway-frequi.log"
    log = open(log_path, "ab")  # noqa: SIM115
    gateway = subprocess.Popen(  # noqa: S603
        [str(BIN / "gunicorn"), "-k", "gevent", "-w", "1", "-b", f"127.0.0.1:{gateway_port}",
         "--graceful-timeout", "5", *gunicorn_flags(), "wsgi:gateway()"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    gateway_url = f"http://127.0.0.1:{gateway_port}"
    if not wait_healthy(gateway_url, 30, gateway):
        gateway.kill()
        pytest.fail("gateway did not come up:\n" + log_path.read_text()[-3000:])

    from app import create_app

    web_app = create_app({"TESTING": False, "SECRET_KEY": "bots-test-secret-key",
                          "SQLALCHEMY_DATABASE_URI": bots_world.database_url,
                          "REDIS_URL": bots_world.redis_url, "CONFIG_DIR": str(folder),
                          "VAR_DIR": str(bots_world.var_dir)})
    web = make_server("127.0.0.1", web_port, web_app, threaded=True)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    SHOTS.mkdir(parents=True, exist_ok=True)
    yield {"gateway": gateway_url, "web": f"http://127.0.0.1:{web_port}",
           "allowed": allowed, "refused": f"http://localhost:{static_port}",
           "bots": demo_bots, "config": folder}
    web.shutdown()
    static.shutdown()
    gateway.terminate()
    try:
        gateway.wait(15)
    except subprocess.TimeoutExpired:
        gateway.kill()
    log.close()


def _watch(tab) -> dict:
    """Collect the gateway answers FreqUI got (path → statuses) and websocket frames."""
    seen = {"answers": [], "frames": [], "sockets": []}

    def on_response(response):
        if "/api/strategy/" in response.url:
            seen["answers"].append((response.request.method, response.url, response.status))

    def on_socket(ws):
        seen["sockets"].append(ws.url)
        ws.on("framereceived", lambda payload: seen["frames"].append(payload))

    tab.on("response", on_response)
    tab.on("websocket", on_socket)
    return seen


def _ok(seen: dict, strategy_id: int, endpoint: str) -> bool:
    return any(f"/api/strategy/{strategy_id}/api/v1/{endpoint}" in url and status == 200
               for _, url, status in seen["answers"])


def _wait(predicate, timeout: float, what: str, tab=None, seen: dict | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if tab is not None:
            tab.wait_for_timeout(200)
        else:
            time.sleep(0.2)
    got = "" if seen is None else "; FreqUI got: " + ", ".join(
        f"{method} {url.split('/api/strategy/', 1)[-1]} → {status}"
        for method, url, status in seen["answers"][-20:])
    raise AssertionError(f"timed out waiting for {what}{got}")


def _dashboard_shows_both(tab, seen: dict, base: str, bots, screenshot: str) -> None:
    """FreqUI's dashboard at `base` fetched each bot's profit and names them all."""
    tab.goto(f"{base}/dashboard")
    for bot in bots:
        _wait(lambda b=bot: _ok(seen, b.id, "profit"), 30, f"{bot.name}'s profit", tab, seen)
    tab.wait_for_timeout(1500)
    tab.screenshot(path=str(SHOTS / screenshot), full_page=True)
    assert all(bot.name in tab.content() for bot in bots)


def _login_in_frequi(tab, base: str, gateway: str, bot, name: str) -> None:
    """FreqUI's own login form: bot name, API URL (the gateway's path for the bot), a BTC
    Watcher user's name and password."""
    tab.goto(f"{base}/login")
    tab.wait_for_selector("#url-input", timeout=30_000)
    tab.fill("input[placeholder='Bot Name']", name)
    tab.fill("#url-input", f"{gateway}/api/strategy/{bot.id}")
    tab.fill("input[placeholder='Freqtrader']", USER)
    tab.fill("input[type=password]", PASSWORD)
    tab.click("button[type=submit]")


def test_frequi_from_an_allowed_origin_logs_in_to_two_bots_through_the_gateway(frequi_world):
    world = frequi_world
    first, second = world["bots"]
    with chromium() as browser:
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        tab = context.new_page()
        seen = _watch(tab)
        for bot in (first, second):
            _login_in_frequi(tab, world["allowed"], world["gateway"], bot, bot.name)
            _wait(lambda b=bot: _ok(seen, b.id, "show_config"), 30, f"FreqUI on {bot.name}",
                  tab, seen)
        stored = json.loads(tab.evaluate("localStorage.getItem('ftAuthLoginInfo')"))
        assert {v["apiUrl"] for v in stored.values()} == {
            f"{world['gateway']}/api/strategy/{b.id}" for b in (first, second)}

        # Dashboard: both bots side by side.
        _dashboard_shows_both(tab, seen, world["allowed"], (first, second),
                              "frequi-allowed-origin-dashboard.png")

        # Trade view, chart with candles, logs.
        tab.goto(f"{world['allowed']}/trade")
        _wait(lambda: _ok(seen, first.id, "status") or _ok(seen, second.id, "status"), 30,
              "open trades", tab, seen)
        tab.goto(f"{world['allowed']}/graph")
        _wait(lambda: _ok(seen, first.id, "pair_candles") or _ok(seen, second.id,
                                                                  "pair_candles"),
              30, "candles for the chart", tab, seen)
        tab.wait_for_timeout(1500)
        tab.screenshot(path=str(SHOTS / "frequi-allowed-origin-chart.png"))
        tab.goto(f"{world['allowed']}/logs")
        _wait(lambda: _ok(seen, first.id, "logs") or _ok(seen, second.id, "logs"), 30,
              "logs", tab, seen)

        # The message websocket through the gateway.
        _wait(lambda: any("/api/v1/message/ws" in u for u in seen["sockets"]), 30,
              "a websocket", tab, seen)
        _wait(lambda: seen["frames"], 60, "websocket frames", tab, seen)

        # An access token that has expired: FreqUI gets a 401 with CORS headers, refreshes
        # through the gateway and the bot stays online.
        info = json.loads(tab.evaluate("localStorage.getItem('ftAuthLoginInfo')"))
        for value in info.values():
            value["accessToken"] = _expired_access_token(value["accessToken"])
        tab.evaluate("v => localStorage.setItem('ftAuthLoginInfo', v)", json.dumps(info))
        before = len(seen["answers"])
        tab.goto(f"{world['allowed']}/trade")
        _wait(lambda: any(m == "POST" and u.endswith("/token/refresh") and s == 200
                          for m, u, s in seen["answers"][before:]), 30, "a token refresh", tab,
              seen)
        refused = [a for a in seen["answers"][before:] if a[2] == 401]
        assert refused, "the expired token was refused first"
        later = len(seen["answers"])
        _wait(lambda: any(s == 200 and "/api/v1/" in u and not u.endswith("/token/refresh")
                          for _, u, s in seen["answers"][later:]), 30,
              "answers after the refresh", tab, seen)
        context.close()


def _expired_access_token(token: str) -> str:
    """The same claims, signed 16 minutes ago (FreqTrade's access tokens last 15)."""
    from itsdangerous import TimestampSigner, URLSafeTimedSerializer

    class PastSigner(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - 16 * 60

    salt, secret = "btcw-gateway-access", "bots-test-secret-key"
    payload = URLSafeTimedSerializer(secret, salt=salt).loads(token)
    expired = URLSafeTimedSerializer(secret, salt=salt, signer=PastSigner).dumps(payload)
    assert expired != token
    return expired


def test_frequi_from_an_origin_not_allowed_gets_no_bot_data(frequi_world):
    world = frequi_world
    bot = world["bots"][0]
    with chromium() as browser:
        context = browser.new_context()
        tab = context.new_page()
        seen = _watch(tab)
        _login_in_frequi(tab, world["refused"], world["gateway"], bot, bot.name)
        tab.wait_for_selector("text=Login failed", timeout=30_000)
        stored = tab.evaluate("localStorage.getItem('ftAuthLoginInfo')")
        assert not stored or "accessToken\":\"e" not in stored
        assert all(status == 403 for _, _, status in seen["answers"]), seen["answers"]
        context.close()
    # What the browser was refused, as plain HTTP: no CORS headers, no bot data.
    answer = requests.get(f"{world['gateway']}/api/strategy/{bot.id}/api/v1/show_config",
                          headers={"Origin": world["refused"]},
                          auth=(USER, PASSWORD), timeout=10)
    assert answer.status_code == 403 and "cors_origins" in answer.json()["message"]
    assert "Access-Control-Allow-Origin" not in answer.headers
    assert "strategy" not in answer.text.lower().replace("strategy/", "")


def test_frequi_served_by_btc_watcher_shows_every_bot_after_one_login(frequi_world):
    world = frequi_world
    first, second = world["bots"]
    with chromium() as browser:
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        tab = context.new_page()
        seen = _watch(tab)
        tab.goto(f"{world['gateway']}/dashboard")  # not logged in: off to BTC Watcher's login
        tab.wait_for_url(f"{world['web']}/login**", timeout=30_000)
        tab.fill("#username", USER)
        tab.fill("#password", PASSWORD)
        tab.click("button[type=submit]")
        tab.wait_for_url(f"{world['gateway']}/**", timeout=30_000)
        try:
            for bot in (first, second):
                _wait(lambda b=bot: _ok(seen, b.id, "show_config"), 30, f"{bot.name} online",
                      tab, seen)
        except AssertionError:
            tab.screenshot(path=str(SHOTS / "frequi-debug.png"))
            raise AssertionError((tab.url, seen["answers"][:20],
                                  tab.evaluate("localStorage.getItem('ftAuthLoginInfo')"),
                                  tab.content()[:1500])) from None
        stored = json.loads(tab.evaluate("localStorage.getItem('ftAuthLoginInfo')"))
        assert {k for k in stored} == {f"btcw-{first.id}", f"btcw-{second.id}"}
        assert not [a for a in seen["answers"] if a[2] >= 400], seen["answers"]
        _dashboard_shows_both(tab, seen, world["gateway"], (first, second),
                              "frequi-served-by-btc-watcher.png")

        # "Open in FreqUI" on the second strategy's page selects that bot.
        tab.goto(f"{world['web']}/strategies/{second.id}")
        tab.click("#open-frequi")
        tab.wait_for_url(f"{world['gateway']}/**", timeout=30_000)
        tab.wait_for_timeout(500)
        assert tab.evaluate("localStorage.getItem('ftSelectedBot')") == f"btcw-{second.id}"
        context.close()
