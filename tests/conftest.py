"""Shared fixtures: real Redis (and PostgreSQL when BTCW_TEST_DB=postgres), the app, clients."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from sqlalchemy import text

from config import yaml_io
from tests.support.servers import RESERVED_HOST, PostgresServer, RedisServer, reserved_port

pytest_plugins = ["tests.bots"]

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct-horse!1"
# Fixtures of the real-bots world (tests/bots.py) and the files whose tests use them. Those files
# run on one xdist worker (BotsWorldScheduling), so the simulator, supervisor and demo bots start
# once per run; collection fails if a test elsewhere uses the world.
BOTS_WORLD = {"bots_world", "bots_app", "bots_ctx", "bots_client", "bots_api_token", "simulator",
              "supervisor_process", "bots_web", "demo_bots"}
BOTS_FILES = {
    "tests/gateway/test_auth.py", "tests/gateway/test_cors.py", "tests/gateway/test_frequi.py",
    "tests/gateway/test_gunicorn.py",
    "tests/gateway/test_proxy.py",
    "tests/gateway/test_routes.py", "tests/monitoring/test_bots.py",
    "tests/backups/test_live_backup.py", "tests/notifications/test_end_to_end.py",
    "tests/runtime/test_bots.py", "tests/runtime/test_versions.py",
    "tests/proxies/test_bot_proxies.py", "tests/relay/test_bot_relay.py",
    "tests/signals/test_bot_signals.py", "tests/strategies/test_bots.py",
}


def _file_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def pytest_xdist_make_scheduler(config, log):
    """Every test on its own, except the bots world's files: one scope, one worker."""
    from xdist.scheduler import LoadScopeScheduling

    class BotsWorldScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return "bots-world" if _file_of(nodeid) in BOTS_FILES else nodeid

    return BotsWorldScheduling(config, log)


def pytest_collection_modifyitems(config, items):
    """Keep BOTS_FILES true; on the PostgreSQL pass keep only the tests whose behaviour depends
    on the database dialect (marked `both_databases`)."""
    for item in items:
        if BOTS_WORLD & set(item.fixturenames) and _file_of(item.nodeid) not in BOTS_FILES:
            raise pytest.UsageError(f"{item.nodeid} uses the bots world: add its file to "
                                    "BOTS_FILES in tests/conftest.py")
    if os.environ.get("BTCW_TEST_DB") == "postgres":
        kept = [item for item in items if item.get_closest_marker("both_databases")]
        config.hook.pytest_deselected(items=[item for item in items if item not in kept])
        items[:] = kept


@pytest.fixture(scope="session")
def redis_server():
    server = RedisServer().start()
    yield server
    server.cleanup()


@pytest.fixture(scope="session")
def postgres_server():
    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def database_url(request, tmp_path_factory):
    if os.environ.get("BTCW_TEST_DB") == "postgres":
        return request.getfixturevalue("postgres_server").url()
    return f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"


@pytest.fixture(scope="session")
def config_dir(tmp_path_factory) -> Path:
    """The shipped config files, with the gateway and the simulator on ports nothing uses, so
    the tests neither reach nor collide with a `make run` on the default ports (nothing in
    these tests serves the web app on its configured port)."""
    folder = tmp_path_factory.mktemp("config")
    for f in (ROOT / "config").glob("*.yml"):
        shutil.copy(f, folder / f.name)
    system = yaml_io.load((folder / "system.yml").read_text())
    section = system["system"]
    # Never started in these tests: held, so no other test's server can answer there.
    section["gateway"].update(host=RESERVED_HOST, port=reserved_port())
    section["simulator"].update(host=RESERVED_HOST, port=reserved_port())
    section["exchange_relay"].update(host=RESERVED_HOST, port=reserved_port())
    (folder / "system.yml").write_text(yaml_io.dump(system))
    return folder


@pytest.fixture(scope="session")
def var_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("var")


@pytest.fixture(scope="session")
def app_config(redis_server, database_url, config_dir, var_dir) -> dict:
    return {
        "TESTING": True,
        "SECRET_KEY": "test-secret-key-not-for-production",
        "SQLALCHEMY_DATABASE_URI": database_url,
        "REDIS_URL": redis_server.url,
        "CONFIG_DIR": str(config_dir),
        "VAR_DIR": str(var_dir),
    }


@pytest.fixture(scope="session")
def _session_app(app_config):
    from app import create_app
    from app.extensions import db

    application = create_app(dict(app_config))

    @application.before_request
    def _fresh_g():
        # Tests keep one app context pushed, so `g` outlives a request; a real request starts
        # with an empty g. Drop the per-request CSRF cache to behave like production.
        from flask import g

        g.pop("csrf_token", None)
    with application.app_context():
        db.drop_all()
        db.create_all()
    return application


def _wipe(application) -> None:
    """Empty tables, Redis db 0 and the per-strategy files (ids start again at 1, so a bot
    folder or log left by one test would show up in the next one's strategy 1)."""
    from app.extensions import db, redis_store

    for folder in ("bots", "logs", "backups"):
        shutil.rmtree(Path(application.config["VAR_DIR"]) / folder, ignore_errors=True)
    with application.app_context():
        db.session.rollback()
        tables = list(reversed(db.metadata.sorted_tables))
        if db.engine.dialect.name == "postgresql":
            names = ", ".join(f'"{t.name}"' for t in tables)
            db.session.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                db.session.execute(table.delete())
        db.session.commit()
        try:
            redis_store.client.flushdb()
        except Exception:  # noqa: BLE001, S110 - a test may have stopped Redis
            pass


@pytest.fixture
def app(_session_app):
    """The app with an app context pushed and empty tables afterwards."""
    _wipe(_session_app)
    with _session_app.app_context():
        yield _session_app
    _wipe(_session_app)


@pytest.fixture
def system_settings(app):
    """Override keys of one system.yml section for one test:
    system_settings("security", max_login_attempts=3)."""
    import dataclasses

    holder = app.extensions["btcw_settings"]
    original = holder.settings

    def override(section: str, **changes):
        system = holder.settings.system
        part = dataclasses.replace(getattr(system, section), **changes)
        holder.settings = dataclasses.replace(
            holder.settings, system=dataclasses.replace(system, **{section: part}))
        return holder.settings

    yield override
    holder.settings = original


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


def csrf_from(html: str) -> str:
    """The CSRF token embedded in a page (hidden input or hx-headers)."""
    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html) or re.search(
        r'"X-CSRFToken":\s*"([^"]+)"', html
    )
    assert match, "page carries no CSRF token"
    return match.group(1)


@pytest.fixture
def user(app):
    from app.auth import service

    return service.create_user("alice", PASSWORD)


class AuthActions:
    def __init__(self, client):
        self.client = client

    def login(self, username="alice", password=PASSWORD, follow=False):
        page = self.client.get("/login")
        token = csrf_from(page.get_data(as_text=True))
        return self.client.post(
            "/login",
            data={"username": username, "password": password, "csrf_token": token},
            follow_redirects=follow,
        )

    def csrf(self) -> str:
        return csrf_from(self.client.get("/system/").get_data(as_text=True))

    def logout(self):
        return self.client.post("/logout", data={"csrf_token": self.csrf()})


@pytest.fixture
def auth(client, user):
    """A client logged in as alice."""
    actions = AuthActions(client)
    response = actions.login()
    assert response.status_code == 302, response.get_data(as_text=True)
    return actions


@pytest.fixture
def api_token(app, user) -> str:
    from app.auth import service

    _, plain = service.create_token(user, "tests")
    return plain


@pytest.fixture
def live_server(app, user):
    """The web app on a free loopback port for browser tests; alice can log in."""
    from tests.support.browser import live_server as serve

    with serve(app) as url:
        yield url


@pytest.fixture(scope="session")
def browser():
    """Debian's headless Chromium through Playwright: one per test session (each page a fresh
    context)."""
    from tests.support.browser import chromium

    with chromium() as instance:
        yield instance
