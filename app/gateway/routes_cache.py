"""The gateway's route table: strategy id → the bot's address and credentials.

Routes come from the database (every strategy that is not deleted; only running ones with a
port are routable) through a short per-process cache (system.gateway.route_cache_seconds).
Every gateway process listens on Redis pub/sub and reloads at once on a message on
`btcw:routes` (`publish_route_change(strategy_id)`, for anything that moves a route) or on the
supervisor's status channel `btcw:runtime:events` (every start, stop, crash and restart).

Each gateway process also writes a fingerprint of its table to Redis
(`btcw:gateway:routes:<host>:<pid>`) so the periodic drift check can see stale workers.
"""

from __future__ import annotations

import atexit
import base64
import hashlib
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from functools import lru_cache

from sqlalchemy import select

from app.extensions import db, redis_store
from app.runtime.supervisor import EVENTS_CHANNEL
from app.strategies.models import Strategy

log = logging.getLogger(__name__)

CHANNEL = "btcw:routes"
RELOAD_ALL = "*"
FINGERPRINT_PREFIX = "btcw:gateway:routes:"
FINGERPRINT_TTL = 120
ROUTABLE_STATUSES = ("running", "stalled")
_MISS_RELOADS_PER_SECOND = 10  # unknown ids may reload the table this often (see get())


def publish_route_change(strategy_id: int | str = RELOAD_ALL, redis_client=None) -> bool:
    """Tell every gateway process that a route changed (call after a bot starts/stops/moves).

    Never raises: with Redis down the gateways still pick the change up within
    route_cache_seconds. Returns True when the message was published.
    """
    try:
        if redis_client is None:
            redis_client = redis_store.client
        redis_client.publish(CHANNEL, str(strategy_id))
        return True
    except Exception as exc:  # noqa: BLE001 - a route change must not fail because of Redis
        log.warning("could not publish route change for %s: %s", strategy_id, exc)
        return False


@dataclass(frozen=True)
class Route:
    """Where one strategy's bot answers, and how the gateway logs into it."""

    strategy_id: int
    name: str
    status: str
    host: str | None
    port: int | None
    username: str = field(repr=False)
    password: str = field(repr=False)
    ws_token: str = field(repr=False)
    jwt_secret: str = field(default="", repr=False)
    webhook_token: str = field(default="", repr=False)

    @property
    def routable(self) -> bool:
        """True when requests can be forwarded (running, with a port)."""
        return bool(self.port) and self.status in ROUTABLE_STATUSES

    @property
    def label(self) -> str:
        """How errors name the strategy."""
        return f"strategy {self.name!r} (id {self.strategy_id})"

    @property
    def upstream(self) -> str:
        """host:port of the bot."""
        return f"{self.host or '127.0.0.1'}:{self.port}"

    @property
    def basic_header(self) -> str:
        """The Authorization header the gateway sends to the bot."""
        return _basic(self.username, self.password)

    @property
    def secrets(self) -> tuple[bytes, ...]:
        """What must never reach a caller: the bot's password, JWT secret, ws_token, webhook
        token (FreqTrade logs the webhook URL when a call fails) and its Basic header."""
        return _secrets(self.password, self.jwt_secret, self.ws_token, self.webhook_token,
                        self.basic_header[6:])


@lru_cache(maxsize=4096)
def _basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


@lru_cache(maxsize=4096)
def _secrets(*values: str) -> tuple[bytes, ...]:
    return tuple(v.encode() for v in values if v and len(v) >= 6)


def mask(data: bytes, secrets: tuple[bytes, ...]) -> bytes:
    """`data` with every secret replaced by as many '*' (so Content-Length stays right)."""
    for secret in secrets:
        if secret in data:
            data = data.replace(secret, b"*" * len(secret))
    return data


def load_routes() -> dict[int, Route]:
    """Every strategy that is not deleted, as Routes (needs an app context)."""
    rows = db.session.execute(
        select(Strategy.id, Strategy.name, Strategy.status, Strategy.host, Strategy.port,
               Strategy.api_username, Strategy.api_password, Strategy.ws_token,
               Strategy.jwt_secret, Strategy.webhook_token)
        .where(Strategy.deleted_at.is_(None))
    ).all()
    return {r.id: Route(r.id, r.name, r.status, r.host, r.port, r.api_username,
                        r.api_password, r.ws_token, r.jwt_secret, r.webhook_token)
            for r in rows}


def fingerprint(routes: dict[int, Route]) -> str:
    """A short hash of the routable part of a table (id, address, credentials)."""
    digest = hashlib.sha256()
    for sid in sorted(routes):
        r = routes[sid]
        if r.routable:
            digest.update(f"{sid}|{r.upstream}|{r.username}|{r.password}\n".encode())
    return digest.hexdigest()[:16]


class RouteTable:
    """The per-process route cache: stale after `ttl` seconds or a published change."""

    def __init__(self, app, ttl: float):
        self.app = app
        self.ttl = ttl
        self.routes: dict[int, Route] = {}
        self.loaded_at = 0.0
        self.version = 0
        self._dirty = True
        self._lock = threading.Lock()
        self._missed: dict[int, float] = {}
        self._miss_window_start = 0.0
        self._miss_count = 0
        self._fingerprint_at = 0.0
        self._listener_pid: int | None = None
        self._stop = threading.Event()

    # ------------------------------------------------------------------ lookups

    def get(self, strategy_id: int) -> Route | None:
        """The route of a strategy id (reloading when stale), or None if unknown/deleted."""
        self._ensure_listener()
        now = time.monotonic()
        if self._dirty or now - self.loaded_at > self.ttl:
            self.reload(blocking=not self.routes)
        route = self.routes.get(strategy_id)
        if route is None and self._may_reload_for_miss(strategy_id, now):
            # A strategy created a moment ago: check the database once before saying 404.
            self.reload()
            route = self.routes.get(strategy_id)
        return route

    def _may_reload_for_miss(self, strategy_id: int, now: float) -> bool:
        """At most one reload per unknown id per second, and ten a second in all (a flood of
        made-up ids must not become a flood of database queries)."""
        if now - self._miss_window_start >= 1.0:
            self._miss_window_start, self._miss_count = now, 0
            if len(self._missed) > 1024:
                self._missed.clear()
        if self._miss_count >= _MISS_RELOADS_PER_SECOND:
            return False
        if now - self._missed.get(strategy_id, -10.0) < 1.0:
            return False
        self._missed[strategy_id] = now
        self._miss_count += 1
        return True

    def all(self) -> dict[int, Route]:
        """The whole table, fresh."""
        self._ensure_listener()
        if self._dirty or time.monotonic() - self.loaded_at > self.ttl:
            self.reload()
        return dict(self.routes)

    def routable(self) -> list[Route]:
        """Routes of running bots, by id."""
        return [r for _, r in sorted(self.all().items()) if r.routable]

    # ------------------------------------------------------------------ reloads

    def invalidate(self) -> None:
        """Mark the table stale; the next lookup reloads it."""
        self._dirty = True

    def reload(self, blocking: bool = True) -> int:
        """Load the table from the database now; returns the number of routes.

        With blocking=False a reload already running elsewhere is not waited for (the caller
        keeps the current table). A database error keeps the old table and is logged.
        """
        if not self._lock.acquire(blocking=blocking):
            return len(self.routes)
        try:
            self._dirty = False
            try:
                with self.app.app_context():
                    routes = load_routes()
            except Exception:
                self._dirty = True
                log.exception("gateway: could not load routes; keeping %d cached", len(self.routes))
                if not self.routes:
                    raise
                return len(self.routes)
            if routes != self.routes:
                self.version += 1
                changed = _diff(self.routes, routes)
                if changed and self.loaded_at:
                    log.info("gateway: routes changed for %s", ", ".join(map(str, changed)))
            self.routes = routes
            self.loaded_at = time.monotonic()
            self._write_fingerprint()
            return len(routes)
        finally:
            self._lock.release()

    def _write_fingerprint(self) -> None:
        try:
            redis_store.client.set(worker_key(), fingerprint(self.routes), ex=FINGERPRINT_TTL)
            self._fingerprint_at = time.monotonic()
        except Exception as exc:  # noqa: BLE001 - best effort, only the drift check reads it
            log.debug("gateway: fingerprint not written: %s", exc)

    # ------------------------------------------------------------------ pub/sub

    def _ensure_listener(self) -> None:
        """Start the Redis subscriber once per process (gunicorn forks after import)."""
        if self._listener_pid == os.getpid():
            return
        with self._lock:
            if self._listener_pid == os.getpid():
                return
            self._listener_pid = os.getpid()
            self._dirty = True
            thread = threading.Thread(target=self._listen, name="btcw-routes", daemon=True)
            thread.start()
            atexit.register(self._forget_fingerprint)

    def _forget_fingerprint(self) -> None:
        """On exit: this worker's table no longer exists (the drift check must not see it)."""
        try:
            redis_store.client.delete(worker_key())
        except Exception:  # noqa: BLE001, S110 - best effort at shutdown
            pass

    def _listen(self) -> None:
        """Reload on every message on btcw:routes; reconnect with backoff if Redis goes away."""
        backoff = 0.5
        while not self._stop.is_set():
            pubsub = None
            try:
                pubsub = redis_store.client.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(*_channels())
                backoff = 0.5
                self._dirty = True  # changes may have been missed while disconnected
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message and message.get("type") == "message":
                        self._dirty = True
                        self.reload(blocking=False)  # in the background, not in a request
                    elif time.monotonic() - self._fingerprint_at > FINGERPRINT_TTL / 3:
                        self.reload(blocking=False)  # keeps the fingerprint true when idle
            except Exception as exc:  # noqa: BLE001 - keep listening whatever happens
                log.debug("gateway: route channel unavailable (%s); retrying", exc)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)
            finally:
                if pubsub is not None:
                    try:
                        pubsub.close()
                    except Exception:  # noqa: BLE001, S110
                        pass

    def stop(self) -> None:
        """Stop the subscriber (tests)."""
        self._stop.set()


def _channels() -> tuple[str, ...]:
    """The channels whose messages mean "routes may have changed"."""
    return (CHANNEL, EVENTS_CHANNEL)


def _diff(old: dict[int, Route], new: dict[int, Route]) -> list[int]:
    return sorted(sid for sid in set(old) | set(new) if old.get(sid) != new.get(sid))


def worker_key() -> str:
    """This process's fingerprint key in Redis."""
    return f"{FINGERPRINT_PREFIX}{socket.gethostname()}:{os.getpid()}"
