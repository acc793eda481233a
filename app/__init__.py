"""BTC Watcher: the application factory."""

from __future__ import annotations

import importlib
import logging
import os
import secrets
from pathlib import Path

from flask import Flask
from sqlalchemy import event
from sqlalchemy.engine import Engine
from werkzeug.routing import IntegerConverter

from config.loader import PROJECT_ROOT, load_settings

log = logging.getLogger(__name__)

# The domains with pages or a JSON API: each routes.py defines its blueprints and lists them in
# BLUEPRINTS = [(blueprint, url_prefix), ...]; create_app registers them (flask's tutorial does
# the same), so importing a service never loads the web layer.
WEB_DOMAINS = ("auth", "system", "strategies", "signals", "notifications", "monitoring",
               "backups", "proxies")


def var_dir() -> Path:
    """Where run-time state lives (database, secret key, bot configs, logs): $BTCW_VAR_DIR."""
    return Path(os.environ.get("BTCW_VAR_DIR") or PROJECT_ROOT / "var")


def owner_only(path: Path, mode: int) -> None:
    """Give a path of ours to its owner alone (0700 for a folder, 0600 for a file): var/ holds
    every bot's password, JWT secret and tokens."""
    try:
        if path.stat().st_uid == os.getuid() and path.stat().st_mode & 0o777 != mode:
            path.chmod(mode)
    except OSError as exc:
        log.warning("could not restrict %s to its owner: %s", path, exc)


def _private_sqlite_file(uri: str) -> None:
    """The SQLite database file (and so its WAL and SHM files, which take its mode) is created
    0600 before SQLite opens it, and an existing one is tightened."""
    if not uri.startswith("sqlite:///") or uri == "sqlite:///:memory:":
        return
    path = Path(uri[len("sqlite:///"):].split("?", 1)[0])
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    for part in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if part.exists():
            owner_only(part, 0o600)


def _secret_key(folder: Path) -> str:
    """SECRET_KEY from the environment, else one generated on first run and kept in var/."""
    if os.environ.get("SECRET_KEY"):
        return os.environ["SECRET_KEY"]
    path = folder / "secret_key"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    return path.read_text().strip()


def _base_config(overrides: dict | None) -> dict:
    overrides = dict(overrides or {})
    folder = Path(overrides.pop("VAR_DIR", None) or var_dir())
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    owner_only(folder, 0o700)
    settings = load_settings(overrides.pop("CONFIG_DIR", None))
    cfg = {
        "VAR_DIR": str(folder),
        "SECRET_KEY": overrides.get("SECRET_KEY") or _secret_key(folder),
        "SQLALCHEMY_DATABASE_URI": os.environ.get("DATABASE_URL")
        or f"sqlite:///{folder / 'btcw.db'}",
        "REDIS_URL": os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0",
        "REDIS_MAX_CONNECTIONS": settings.system.performance.redis_max_connections,
        "MAX_CONTENT_LENGTH": 2 * 1024 * 1024,
        "MAX_FORM_MEMORY_SIZE": 1024 * 1024,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "PERMANENT_SESSION_LIFETIME": settings.system.security.session_expire_hours * 3600,
        "WTF_CSRF_CHECK_DEFAULT": False,  # checked in the auth guard, after auth is known
        "WTF_CSRF_TIME_LIMIT": None,
        "BTCW_SETTINGS": settings,
    }
    cfg.update(overrides)
    uri = cfg["SQLALCHEMY_DATABASE_URI"]
    if uri.startswith("postgres://"):
        cfg["SQLALCHEMY_DATABASE_URI"] = uri = "postgresql://" + uri[len("postgres://"):]
    if uri.startswith("postgresql"):
        perf = settings.system.performance
        cfg.setdefault("SQLALCHEMY_ENGINE_OPTIONS", {
            "pool_size": perf.db_pool_min_size,
            "max_overflow": max(perf.db_pool_max_size - perf.db_pool_min_size, 0),
            "pool_pre_ping": True,
            # A database host that vanished (network cut) fails a call in seconds, not after
            # the kernel's two-minute TCP retries.
            "connect_args": {"connect_timeout": 5, "keepalives": 1, "keepalives_idle": 10,
                             "keepalives_interval": 5, "keepalives_count": 3},
        })
    return cfg


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, _record) -> None:
    """SQLite: WAL, a busy timeout, and foreign keys, on every connection."""
    if type(dbapi_connection).__module__.startswith("sqlite3"):
        cur = dbapi_connection.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=10000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()


class DatabaseIdConverter(IntegerConverter):
    """`<int:…>` in every route: a whole number the database can hold (1 … 2**63 - 1), so a
    larger one is a 404 like any unknown id, never a 500 from the driver."""

    def __init__(self, url_map, *args, **kwargs):
        kwargs.setdefault("max", 2**63 - 1)
        super().__init__(url_map, *args, **kwargs)


def import_models() -> None:
    """Import every domain's models so metadata (and migrations) see the whole schema."""
    from app.auth import models as _auth  # noqa: F401
    from app.backups import models as _backups  # noqa: F401
    from app.monitoring import models as _monitoring  # noqa: F401
    from app.notifications import models as _notifications  # noqa: F401
    from app.proxies import models as _proxies  # noqa: F401
    from app.runtime import models as _runtime  # noqa: F401
    from app.signals import models as _signals  # noqa: F401
    from app.strategies import models as _strategies  # noqa: F401
    from app.system import models as _system  # noqa: F401


def _init_common(app: Flask) -> None:
    from app.extensions import db, migrate, redis_store
    from app.system.settings import SettingsHolder

    app.url_map.converters["int"] = DatabaseIdConverter
    app.extensions["btcw_settings"] = SettingsHolder(app.config["BTCW_SETTINGS"])
    import_models()
    db.init_app(app)
    migrate.init_app(app, db, directory=str(PROJECT_ROOT / "migrations"))
    redis_store.init_app(app)
    _private_sqlite_file(app.config["SQLALCHEMY_DATABASE_URI"])


def create_app(test_config: dict | None = None) -> Flask:
    """The web app: pages, JSON API, webhook receiver, live WebSocket."""
    app = Flask(
        __name__,
        template_folder=str(PROJECT_ROOT / "templates"),
        static_folder=str(PROJECT_ROOT / "static"),
    )
    app.config.from_mapping(_base_config(test_config))
    _init_common(app)

    from app.extensions import csrf, htmx, sock

    csrf.init_app(app)
    htmx.init_app(app)
    sock.init_app(app)

    from app import errors
    from app.auth import guard
    from app.rendering import register_filters

    errors.register(app)
    guard.register(app)
    register_filters(app)

    for domain in WEB_DOMAINS:
        module = importlib.import_module(f"app.{domain}.routes")
        for blueprint, prefix in module.BLUEPRINTS:
            app.register_blueprint(blueprint, url_prefix=prefix)

    from app.cli import register_cli

    register_cli(app)
    return app


def create_gateway_app(test_config: dict | None = None) -> Flask:
    """The gateway: one port in front of every bot (see app/gateway)."""
    app = Flask(__name__, template_folder=str(PROJECT_ROOT / "templates"))
    app.config.from_mapping(_base_config(test_config))
    app.config["BTCW_JSON_ERRORS"] = True
    _init_common(app)
    from app import errors
    from app.gateway import routes
    from app.gateway.cors import GatewayCors
    from app.gateway.proxy import GatewayProxy

    errors.register(app)
    app.register_blueprint(routes.bp)
    proxy = GatewayProxy(app, app.wsgi_app)
    app.extensions["btcw_gateway"] = proxy
    holder = app.extensions["btcw_settings"]
    app.wsgi_app = GatewayCors(proxy, lambda: (*holder.settings.system.security.cors_origins,
                                               holder.settings.system.web.public_url))
    return app


def create_relay_app(test_config: dict | None = None):
    """The exchange relay of this host as a WSGI callable (see app/relay): settings, database
    and Redis like the others, answers served by its own small WSGI function."""
    app = Flask(__name__)
    app.config.from_mapping(_base_config(test_config))
    _init_common(app)
    from app.relay.service import build_wsgi

    return build_wsgi(app)
