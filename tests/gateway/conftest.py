"""Gateway fixtures: the gateway app on the bots' world (tests/bots.py), a real HTTP server for
it in this process, route rows for stand-in bots, and a guard that searches every response a
test saw for any bot's password, JWT secret or ws_token."""

from __future__ import annotations

import base64
import json
import shutil
import threading
from contextlib import contextmanager

import pytest
from werkzeug.serving import make_server

from config import yaml_io
from tests.bots import make_strategy
from tests.support.servers import free_port

GATEWAY_TIMEOUT = 2.0
GATEWAY_CONNECT_TIMEOUT = 1.0
USER, PASSWORD = "gwuser", "correct-horse!1"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture(scope="session")
def gateway_config_dir(bots_world, tmp_path_factory):
    """The bots' config with short gateway timeouts (so a 504 takes 2 s, not 10)."""
    folder = tmp_path_factory.mktemp("gateway-config")
    for f in bots_world.config_dir.glob("*.yml"):
        shutil.copy(f, folder / f.name)
    system = yaml_io.load((folder / "system.yml").read_text())
    system["system"]["gateway"].update(timeout=GATEWAY_TIMEOUT,
                                       connect_timeout=GATEWAY_CONNECT_TIMEOUT)
    (folder / "system.yml").write_text(yaml_io.dump(system))
    return folder


@pytest.fixture(scope="session")
def gateway_app(bots_world, bots_app, gateway_config_dir):
    """The gateway (create_gateway_app) on the bots' database and Redis."""
    from app import create_gateway_app
    from app.auth import service

    application = create_gateway_app({
        "TESTING": True,
        "SECRET_KEY": "bots-test-secret-key",  # the same as bots_app: its sessions work here
        "SQLALCHEMY_DATABASE_URI": bots_world.database_url,
        "REDIS_URL": bots_world.redis_url,
        "CONFIG_DIR": str(gateway_config_dir),
        "VAR_DIR": str(bots_world.var_dir),
    })
    with bots_app.app_context():
        if service.user_by_name(USER) is None:
            service.create_user(USER, PASSWORD)
    yield application
    application.extensions["btcw_gateway"].routes.stop()


@pytest.fixture(scope="session")
def gateway_server(gateway_app):
    """The gateway app behind a real threaded HTTP server in this process; yields its URL."""
    port = free_port()
    server = make_server("127.0.0.1", port, gateway_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    server.shutdown()


@pytest.fixture
def gw(gateway_app, seen):
    """A Flask test client of the gateway whose responses the secret guard checks."""
    client = gateway_app.test_client()
    original = client.open

    def open_and_record(*args, **kwargs):
        response = original(*args, **kwargs)
        seen.add_flask(response)
        return response

    client.open = open_and_record
    return client


@pytest.fixture
def user_auth():
    return {"Authorization": basic(USER, PASSWORD)}


class Seen:
    """Everything callers received in one test: bodies, header values, websocket frames."""

    def __init__(self) -> None:
        self.items: list[tuple[str, bytes]] = []

    def add(self, label: str, data: bytes | str) -> None:
        self.items.append((label, data.encode() if isinstance(data, str) else data))

    def add_flask(self, response) -> None:
        label = f"{response.request.method} {response.request.path} → {response.status_code}"
        self.add(label, response.get_data())
        self.add(label + " headers", "\n".join(f"{k}: {v}" for k, v in response.headers))

    def add_requests(self, response, *args, **kwargs):
        label = f"{response.request.method} {response.url} → {response.status_code}"
        self.add(label, response.content)
        self.add(label + " headers", "\n".join(f"{k}: {v}" for k, v in response.headers.items()))
        return response

    def hook(self, session) -> None:
        """Record every response of a requests.Session (FtRestClient._session)."""
        session.hooks["response"].append(self.add_requests)


def bot_secrets(app) -> dict[str, str]:
    """Every secret of every strategy in the bots' database: value → what it is."""
    from app.extensions import db
    from app.strategies.models import Strategy

    found: dict[str, str] = {}
    with app.app_context():
        for s in db.session.scalars(db.select(Strategy)):
            for column in ("api_password", "jwt_secret", "ws_token", "webhook_token"):
                value = getattr(s, column)
                if value and len(value) >= 8:
                    found[value] = f"{column} of strategy {s.id}"
            found[basic(s.api_username, s.api_password)[6:]] = f"Basic header of strategy {s.id}"
    return found


@pytest.fixture
def seen(bots_app):
    """Collects what a test's callers received; fails the test if a bot secret is in it."""
    record = Seen()
    yield record
    secrets = bot_secrets(bots_app)
    leaks = [(label, what) for label, data in record.items
             for secret, what in secrets.items() if secret.encode() in data]
    assert not leaks, f"bot secrets reached a caller: {leaks}"


@contextmanager
def route(bots_app, gateway_app, name: str, *, port: int | None, status: str = "running",
          deleted: bool = False):
    """A strategy row (routable to `port` when running) for a stand-in bot; removed after.

    Its host is "localhost", not the test supervisor's 127.0.0.1, so the supervisor leaves
    the row alone (it would otherwise mark a "running" row without a process as stopped).
    """
    from app.clock import utcnow
    from app.extensions import db
    from app.strategies.models import Strategy

    with bots_app.app_context():
        row = make_strategy(name, host="localhost", port=port, status=status,
                            deleted_at=utcnow() if deleted else None)
        strategy_id = row.id
    announce(bots_app, gateway_app, strategy_id)
    try:
        yield strategy_id
    finally:
        with bots_app.app_context():
            db.session.execute(db.delete(Strategy).where(Strategy.id == strategy_id))
            db.session.commit()
        announce(bots_app, gateway_app, strategy_id)


def announce(bots_app, gateway_app, strategy_id: int) -> None:
    """What the supervisor does after a route change: publish it (gateways in other
    processes reload), and reload the in-process gateway right away."""
    import redis

    from app.gateway.routes_cache import publish_route_change

    client = redis.Redis.from_url(bots_app.config["REDIS_URL"])
    try:
        publish_route_change(strategy_id, redis_client=client)
    finally:
        client.close()
    gateway_app.extensions["btcw_gateway"].routes.reload()


def bot_row(bots_app, strategy_id: int) -> dict:
    """A demo bot's address and credentials (what FtRestClient needs to reach it directly)."""
    from app.extensions import db
    from app.strategies.models import Strategy

    with bots_app.app_context():
        s = db.session.get(Strategy, strategy_id, populate_existing=True)
        return {"url": f"http://{s.host}:{s.port}", "username": s.api_username,
                "password": s.api_password, "pid": s.pid, "port": s.port, "name": s.name,
                "status": s.status}


def next_status(ws, seen) -> str:
    """The next `status` message on a bot's message websocket (every frame goes to `seen`)."""
    while True:
        frame = ws.recv()
        seen.add("ws frame", frame)
        message = json.loads(frame)
        if message.get("type") == "status":
            return message["status"]
