"""The relay of this host, built from settings and the proxy records, and its figures in Redis.

The relay process (`wsgi:relay()` under gunicorn+gevent, one worker: the cache and the budget
live in it) refreshes its upstream pool every few seconds from the database: every enabled
proxy that the health checks have not marked down, plus this host's own IP when
`exchange_relay.use_direct` is on — or as the last resort when no proxy is usable and
`proxy.switching.allow_direct` is on, or when there are no proxies at all. It publishes its
figures to Redis (`btcw:relay:<host>`, kept 60 s), where the Exchange access page, the JSON API
and `flask relay status` read them.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time

import psutil
from sqlalchemy import select

from app.extensions import db, redis_store
from app.proxies.models import Proxy
from app.proxies.urls import mask
from app.relay.core import Relay, RelayConfig, wsgi_app
from app.system.settings import current_settings, refresh_if_changed

log = logging.getLogger(__name__)

STATS_PREFIX = "btcw:relay:"
STATS_TTL = 60
REFRESH_EVERY = 5.0


def relay_config() -> RelayConfig:
    """The relay's settings, with the exchanges it serves (the simulator's when it is on)."""
    settings = current_settings().system
    cfg = settings.exchange_relay
    exchanges = {"binance": cfg.binance_url}
    sim = settings.simulator
    exchanges["simulator"] = f"http://{sim.host}:{sim.port}"
    return RelayConfig(exchanges=exchanges, weight_limit=cfg.weight_limit,
                       weight_share=cfg.weight_share, forming_ttl=cfg.forming_ttl,
                       ticker_ttl=cfg.ticker_ttl, exchange_info_ttl=float(cfg.exchange_info_ttl),
                       cache_mb=cfg.cache_mb, timeout=cfg.timeout)


def wanted_upstreams() -> list[tuple[str, str, str | None, str]]:
    """(key, name, proxy URL, shown URL) of the pool (see the module docstring)."""
    settings = current_settings()
    proxies = list(db_proxies())
    usable = [p for p in proxies if p.enabled and p.status != "down"]
    pool = [(f"proxy:{p.id}", p.name, p.url, mask(p.url)) for p in usable]
    direct = settings.system.exchange_relay.use_direct or not proxies or (
        not usable and settings.proxy.switching.allow_direct)
    if direct:
        pool.insert(0, ("direct", "direct", None, "this host"))
    return pool


def db_proxies() -> list[Proxy]:
    try:
        return list(db.session.scalars(select(Proxy).order_by(Proxy.id)))
    finally:
        db.session.remove()


def host_name() -> str:
    """The host this relay serves (the supervisor's name for it)."""
    return current_settings().system.runtime.host


def publish(relay: Relay) -> dict:
    """Write the relay's figures (plus its CPU and memory) to Redis; the figures."""
    stats = relay.stats()
    proc = psutil.Process(os.getpid())
    with proc.oneshot():
        times = proc.cpu_times()
        stats["process"] = {"pid": proc.pid, "rss": proc.memory_info().rss,
                            "cpu_seconds": round(times.user + times.system, 2)}
    stats["host"] = host_name()
    redis_store.client.set(STATS_PREFIX + stats["host"], json.dumps(stats), ex=STATS_TTL)
    return stats


def all_stats() -> list[dict]:
    """The figures every live relay published, by host."""
    client = redis_store.client
    found = []
    for key in sorted(client.scan_iter(match=STATS_PREFIX + "*", count=100)):
        raw = client.get(key)
        if not raw:
            continue
        try:
            stats = _readable(json.loads(raw))
        except (ValueError, TypeError, KeyError):
            log.warning("relay figures at %s are unreadable; skipped", key)
            continue
        stats["age"] = round(max(0.0, time.time() - float(stats.get("at", 0))), 1)
        found.append(stats)
    return found


_UPSTREAM_DEFAULTS = {"key": "?", "name": "?", "url": "", "state": "unknown", "blocked_for": 0,
                      "requests_per_min": 0, "weight_used": 0, "weight_budget": 0,
                      "weight_limit": 0, "last_error": "", "requests": 0, "weight": 0,
                      "429": 0, "418": 0, "errors": 0}


def _readable(stats: dict) -> dict:
    """Figures a relay published, with every field the page and CLI read (an older or damaged
    record never breaks them); TypeError/KeyError when it is not a relay's record at all."""
    counts = {"requests": 0, "hit": 0, "shared": 0, "stale": 0, "miss": 0, "relay": 0,
              **dict(stats.get("counts") or {})}
    return {
        "host": str(stats["host"]), "at": float(stats.get("at") or 0),
        "uptime": float(stats.get("uptime") or 0), "counts": counts,
        "hit_rate": stats.get("hit_rate"),
        "cache": {"entries": 0, "bytes": 0, "max_bytes": 0, **dict(stats.get("cache") or {})},
        "overhead_ms": {"p50": None, "p99": None, **dict(stats.get("overhead_ms") or {})},
        "upstreams": [{**_UPSTREAM_DEFAULTS, **dict(u)} for u in stats.get("upstreams") or []],
        "process": dict(stats["process"]) if isinstance(stats.get("process"), dict) else None,
        "exchanges": list(stats.get("exchanges") or []),
    }


def access_report() -> dict:
    """What the Exchange access page and API show: the relay setting and every live relay's
    figures (per upstream IP or proxy: state, requests/min, weight used vs budget, 429/418)."""
    cfg = current_settings().system.exchange_relay
    relays = all_stats()
    return {
        "enabled": cfg.enabled,
        "bots_url": f"http://{cfg.host}:{cfg.port}/<exchange>" if cfg.enabled else None,
        "relayed_exchanges": ["binance", "simulator"],
        "weight_limit": cfg.weight_limit,
        "weight_share": cfg.weight_share,
        "relays": relays,
    }


def build_wsgi(app):
    """The relay of `app`'s settings as a WSGI callable, with its pool kept fresh in the
    background (a greenlet under gevent, else a daemon thread)."""
    with app.app_context():
        relay = Relay(relay_config())

    def refresh_forever() -> None:
        while True:
            try:
                with app.app_context():
                    refresh_if_changed()
                    relay.config = relay_config()
                    relay.set_upstreams(wanted_upstreams())
                    publish(relay)
            except Exception as exc:  # noqa: BLE001 - the relay keeps serving from its last pool
                log.warning("relay: pool refresh failed: %s", exc)
            time.sleep(REFRESH_EVERY)

    with app.app_context():
        try:
            relay.set_upstreams(wanted_upstreams())
        except Exception as exc:  # noqa: BLE001 - no database yet: direct until the next pass
            log.warning("relay: no pool from the database yet (%s); going direct", exc)
            relay.set_upstreams([("direct", "direct", None, "this host")])
    threading.Thread(target=refresh_forever, name="relay-pool", daemon=True).start()

    def extra(path: str):
        if path == "/_relay/stats":
            return 200, json.dumps(relay.stats()).encode()
        return None

    wsgi = wsgi_app(relay, extra)
    wsgi.relay = relay  # type: ignore[attr-defined]
    return wsgi
