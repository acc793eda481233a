"""Exchange proxies with real proxy servers from Debian's packages on loopback (tinyproxy for
HTTP, microsocks for SOCKS5): validation that names the field, credentials masked everywhere,
health checks through each kind, wrong credentials, a killed proxy marked down and its strategy
moved to another proxy of its group (or to a direct connection), and back up after three
successes."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import select

from app.extensions import db
from app.monitoring.models import Alert
from app.proxies import service
from app.strategies.models import Strategy, StrategyEvent
from tests.support.proxies import MicroSocks, TinyProxy
from tests.support.servers import free_port


class _Exchange(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's name
        body = b"{}"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def exchange():
    """A stand-in exchange ping on loopback that the health checks request."""
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _Exchange)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/api/v3/ping"
    yield url
    server.shutdown()


@pytest.fixture
def proxy_health(app, exchange):
    """proxy.health pointed at the stand-in exchange (short timeout)."""
    import dataclasses

    holder = app.extensions["btcw_settings"]
    original = holder.settings

    def apply(**changes):
        proxy = holder.settings.proxy
        health = dataclasses.replace(proxy.health, **{"url": exchange, "timeout": 2.0,
                                                      **changes})
        holder.settings = dataclasses.replace(holder.settings, proxy=dataclasses.replace(
            proxy, health=health))
        return holder.settings.proxy

    def switching(**changes):
        proxy = holder.settings.proxy
        holder.settings = dataclasses.replace(holder.settings, proxy=dataclasses.replace(
            proxy, switching=dataclasses.replace(proxy.switching, **changes)))

    apply()
    apply.switching = switching
    yield apply
    holder.settings = original


@pytest.fixture
def servers(tmp_path):
    started = []

    def start(kind: str, **options):
        server = (TinyProxy(tmp_path, **options) if kind == "http" else MicroSocks()).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def _strategy(**values) -> Strategy:
    row = Strategy(name=values.pop("name", "proxied"), strategy_class="MA_Cross_BTC",
                   strategy_file="ma.py", api_username="u", api_password="p", jwt_secret="j",
                   ws_token="w", webhook_token="t", **values)
    db.session.add(row)
    db.session.commit()
    return row


@pytest.mark.parametrize(("url", "words"), [
    ("ftp://host:21", "must start with"),
    ("http://host", "port"),
    ("socks5://host:70000", "port"),
    ("http://:8080", "no host"),
    ("http://host:3128/path", "nothing after"),
    ("http://ho st:3128", "spaces or control"),
    ("http://host:3128\r\nX: y", "spaces or control"),
    ("", "Give the proxy URL"),
])
def test_bad_proxy_urls_are_refused_naming_the_field(client, api_token, url, words):
    headers = {"Authorization": f"Bearer {api_token}"}
    response = client.post("/api/v1/proxies", headers=headers, json={"name": "x", "url": url})
    assert response.status_code == 422, response.get_json()
    assert response.get_json()["field"] == "url" and words in response.get_json()["message"]
    assert client.get("/api/v1/proxies", headers=headers).get_json()["proxies"] == []


def test_credentials_never_show_and_names_are_unique(client, api_token, runner):
    headers = {"Authorization": f"Bearer {api_token}"}
    made = client.post("/api/v1/proxies", headers=headers,
                       json={"name": "eu-1", "url": "http://alice:s3cr3t!pw@127.0.0.1:3128",
                             "group": "eu"})
    assert made.status_code == 201
    assert made.get_json()["url"] == "http://alice:****@127.0.0.1:3128"
    for text in (client.get("/api/v1/proxies", headers=headers).get_data(as_text=True),
                 client.get("/proxies/", headers=headers).get_data(as_text=True),
                 runner.invoke(args=["proxies", "list", "--json"]).output):
        assert "s3cr3t" not in text and "alice:****@" in text
    again = client.post("/api/v1/proxies", headers=headers,
                        json={"name": "eu-1", "url": "socks5://127.0.0.1:1080"})
    assert again.status_code == 409
    assert client.get("/api/v1/proxies/999", headers=headers).status_code == 404
    assert client.patch(f"/api/v1/proxies/{made.get_json()['id']}", headers=headers,
                        json={"url": "gopher://x:1"}).get_json()["field"] == "url"


def test_checks_go_through_each_kind_of_real_proxy(app, servers, proxy_health, tmp_path):
    http = servers("http")
    socks = servers("socks")
    for name, url in (("tiny", f"http://127.0.0.1:{http.port}"),
                      ("socks", f"socks5://127.0.0.1:{socks.port}"),
                      ("socks-h", f"socks5h://127.0.0.1:{socks.port}")):
        proxy = service.create({"name": name, "url": url})
        row = service.check(proxy)
        assert row.ok, (name, row.error)
        assert proxy.status == "up" and proxy.last_latency_ms is not None
    assert "GET http://127.0.0.1" in http.log.read_text() or "Request" in http.log.read_text()


def test_wrong_credentials_say_so(app, servers, proxy_health):
    http = servers("http", auth=("bob", "right-pass"))
    good = service.create({"name": "auth-ok", "url": f"http://bob:right-pass@127.0.0.1:{http.port}"})
    bad = service.create({"name": "auth-bad", "url": f"http://bob:wrong@127.0.0.1:{http.port}"})
    assert service.check(good).ok
    failed = service.check(bad)
    assert not failed.ok and "refused the credentials" in failed.error
    assert "wrong" not in failed.error


def test_a_killed_proxy_goes_down_its_strategy_moves_and_it_comes_back_up(
        app, servers, proxy_health):
    first, second = servers("http"), servers("socks")
    main = service.create({"name": "main", "url": f"http://127.0.0.1:{first.port}",
                           "group": "pool"})
    spare = service.create({"name": "spare", "url": f"socks5://127.0.0.1:{second.port}",
                            "group": "pool"})
    strategy = _strategy(proxy_id=main.id)
    assert service.check_all()["moved"] == []
    first.stop()
    killed = time.monotonic()
    summary = service.check_all()  # one pass: the failure is re-checked at once
    assert main.status == "down" and spare.status == "up"
    assert summary["moved"] == [{"strategy_id": strategy.id, "from": "main", "to": "spare",
                                 "restarted": False}]
    assert time.monotonic() - killed < 30
    db.session.refresh(strategy)
    assert strategy.proxy_id == spare.id and strategy.proxy_group == "pool"
    event = db.session.scalars(select(StrategyEvent).where(
        StrategyEvent.kind == "proxy_failover")).one()
    assert "moved to proxy spare" in event.message
    assert db.session.scalars(select(Alert).where(Alert.kind == "proxy_down")).first()

    restarted = TinyProxy(first.conf.parent)
    restarted.port = first.port
    restarted.conf = first.conf
    restarted.start()
    try:
        states = []
        for _ in range(3):
            service.check(main)
            states.append(main.status)
        assert states == ["down", "down", "up"], "up again after three successes"
    finally:
        restarted.stop()


def test_with_no_other_proxy_up_a_strategy_goes_direct_only_when_allowed(
        app, servers, proxy_health):
    only = servers("http")
    proxy = service.create({"name": "alone", "url": f"http://127.0.0.1:{only.port}"})
    strategy = _strategy(proxy_id=proxy.id)
    only.stop()
    for _ in range(3):
        service.check_all()
    db.session.refresh(strategy)
    assert proxy.status == "down" and strategy.proxy_id == proxy.id, "stays: nowhere to go"
    proxy_health.switching(allow_direct=True)
    moved = service.check_all()["moved"]
    assert moved and moved[0]["to"] == "direct"
    db.session.refresh(strategy)
    assert strategy.proxy_id is None
