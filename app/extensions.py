"""Extensions, created unbound; create_app() binds them to an app."""

from __future__ import annotations

import redis
from flask import Flask, current_app, has_app_context
from flask_migrate import Migrate
from flask_sock import Sock
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from htmx_flask import Htmx
from rq import Queue
from sqlalchemy import MetaData

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

db = SQLAlchemy(metadata=MetaData(naming_convention=NAMING))
migrate = Migrate()
sock = Sock()
csrf = CSRFProtect()
htmx = Htmx()

QUEUE_NAMES = ("monitoring", "notifications", "backups", "default")


class RedisStore:
    """The app's Redis connection and RQ queues, bound to an app by init_app().

    Each app keeps its own client (app.extensions["btcw_redis_client"]); inside an app context
    `client` and `url` are that app's, so two apps in one process (the tests' bot world on
    another Redis db) never share a connection. Outside any app context the last bound app's
    client is used.
    """

    def __init__(self) -> None:
        self._last: tuple[str, redis.Redis] | None = None

    def init_app(self, app: Flask) -> None:
        """Bind to the app's REDIS_URL; no connection is opened until first use."""
        url = app.config["REDIS_URL"]
        max_conn = app.config.get("REDIS_MAX_CONNECTIONS", 20)
        pool = redis.BlockingConnectionPool.from_url(
            url, max_connections=max(max_conn, 8), timeout=2,
            socket_connect_timeout=1, socket_timeout=5, health_check_interval=30,
        )
        self._last = (url, redis.Redis(connection_pool=pool))
        app.extensions["btcw_redis"] = self
        app.extensions["btcw_redis_client"] = self._last

    def _bound(self) -> tuple[str, redis.Redis]:
        if has_app_context():
            bound = current_app.extensions.get("btcw_redis_client")
            if bound is not None:
                return bound
        if self._last is None:
            raise RuntimeError("RedisStore is not bound to an app")
        return self._last

    @property
    def url(self) -> str:
        """The current app's REDIS_URL."""
        return self._bound()[0]

    @property
    def client(self) -> redis.Redis:
        """The current app's client (a connection pool underneath)."""
        return self._bound()[1]

    def queue(self, name: str = "default") -> Queue:
        """The RQ queue of that name, on this Redis."""
        if name not in QUEUE_NAMES:
            raise ValueError(f"unknown queue {name!r}")
        return Queue(name, connection=self.client)

    def queues(self) -> list[Queue]:
        """Every queue, most urgent first."""
        order = ("notifications", "monitoring", "default", "backups")
        return [self.queue(n) for n in order]


redis_store = RedisStore()
