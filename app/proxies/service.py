"""Exchange proxies (SPEC §9): records, validation, health checks and failover.

A proxy is an `http://`, `https://`, `socks5://` or `socks5h://` URL with optional credentials
(shown masked everywhere: `user:****@host`), a unique name and an optional group. A strategy
uses one proxy (`strategies.proxy_id`; none = a direct connection); the generated FreqTrade
config gets exactly one ccxt proxy key for it (app/runtime/ft_config.proxy_ccxt_config).

Health: every `proxy.health.interval` seconds (RQ cron) and on demand, one request through each
enabled proxy to the exchange's ping (the market simulator here); a failure is re-checked at
once, so a dead proxy is down within one pass. A proxy goes **down** after
`failures_to_down` failures in a row, or when its success rate over the last `window` checks
falls under `success_rate` %, or its latency over `max_latency_ms`; it is **up** again after
`successes_to_up` successes in a row. Checks are kept 24 h.

Failover: a strategy whose proxy went down moves to another up proxy of the same group (the
proxy's group, else the strategy's `proxy_group`), or to a direct connection when
`proxy.switching.allow_direct` is set; a running bot is restarted with the new config; the move
is recorded as a strategy event and alerted.
"""

from __future__ import annotations

import contextlib
import logging
import time
from datetime import timedelta
from urllib.parse import quote, unquote, urlsplit

import requests
from sqlalchemy import delete, select

from app.clock import utcnow
from app.errors import AppError, Conflict, NotFound
from app.extensions import db
from app.monitoring.alerts import raise_alert
from app.proxies.models import Proxy, ProxyCheck
from app.proxies.urls import mask
from app.runtime import control
from app.runtime.launcher import simulator_url
from app.strategies.models import Strategy
from app.system.settings import current_settings

log = logging.getLogger(__name__)

SCHEMES = ("http", "https", "socks5", "socks5h")
KEEP_CHECKS = timedelta(hours=24)


class ProxyError(AppError):
    """A proxy request that cannot be done; `field` names the culprit."""

    status = 422


# ------------------------------------------------------------------------------ values


def clean_url(value: object) -> str:
    """A usable proxy URL; ProxyError(field=url) naming the problem."""
    if not isinstance(value, str) or not value.strip():
        raise ProxyError("Give the proxy URL, like socks5://host:1080 or http://user:pass@"
                         "host:3128.", field="url")
    url = value.strip()
    if len(url) > 255:
        raise ProxyError("The proxy URL is longer than 255 characters.", field="url")
    if any(ord(c) < 32 or ord(c) == 127 or c.isspace() for c in url):
        raise ProxyError("The proxy URL contains spaces or control characters.", field="url")
    parts = urlsplit(url)
    if parts.scheme.lower() not in SCHEMES:
        raise ProxyError(f"The proxy URL must start with {', '.join(s + '://' for s in SCHEMES)}"
                         f"; got {mask(url)!r}.", field="url")
    try:
        port = parts.port
    except ValueError:
        raise ProxyError("The proxy port must be a number from 1 to 65535.", field="url") \
            from None
    if not parts.hostname:
        raise ProxyError("The proxy URL has no host.", field="url")
    if port is None or not 1 <= port <= 65535:
        raise ProxyError("Give the proxy's port (1–65535), like socks5://host:1080.",
                         field="url")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ProxyError("A proxy URL is scheme://[user:password@]host:port, nothing after.",
                         field="url")
    user = parts.username
    if user is not None:  # normalise the credentials' escaping
        password = parts.password or ""
        credentials = quote(unquote(user), safe="") + (
            f":{quote(unquote(password), safe='')}" if parts.password is not None else "")
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        url = f"{parts.scheme.lower()}://{credentials}@{host}:{port}"
    else:
        url = f"{parts.scheme.lower()}://{parts.netloc}"
    return url


def _clean_name(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ProxyError("Give the proxy a name.", field="name")
    name = value.strip()
    if len(name) > 64 or any(ord(c) < 32 for c in name):
        raise ProxyError("The name is 1–64 printable characters.", field="name")
    return name


def _clean_group(value: object) -> str | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str) or len(value.strip()) > 64 or any(ord(c) < 32 for c in value):
        raise ProxyError("The group is up to 64 printable characters.", field="group")
    return value.strip() or None


def proxy_json(proxy: Proxy) -> dict:
    """A proxy as the API shows it (credentials masked)."""
    return {"id": proxy.id, "name": proxy.name, "url": mask(proxy.url), "group": proxy.group,
            "enabled": proxy.enabled, "status": proxy.status,
            "consecutive_failures": proxy.consecutive_failures,
            "consecutive_successes": proxy.consecutive_successes,
            "last_latency_ms": proxy.last_latency_ms,
            "last_checked_at": proxy.last_checked_at.isoformat() + "Z"
            if proxy.last_checked_at else None,
            "strategies": sorted(db.session.scalars(select(Strategy.id).where(
                Strategy.proxy_id == proxy.id, Strategy.deleted_at.is_(None))))}


# ------------------------------------------------------------------------------ records


def get(proxy_id: int) -> Proxy:
    proxy = db.session.get(Proxy, proxy_id)
    if proxy is None:
        raise NotFound(f"No proxy with id {proxy_id}.")
    return proxy


def list_proxies() -> list[Proxy]:
    return list(db.session.scalars(select(Proxy).order_by(Proxy.name)))


def create(data: dict) -> Proxy:
    """A new proxy from {"name", "url", "group"?, "enabled"?}."""
    if not isinstance(data, dict):
        raise ProxyError('Send a JSON object like {"name": "eu-1", "url": '
                         '"socks5://host:1080"}.', status=400)
    name, url = _clean_name(data.get("name")), clean_url(data.get("url"))
    group = _clean_group(data.get("group"))
    enabled = data.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ProxyError("enabled is true or false.", field="enabled")
    if db.session.scalar(select(Proxy.id).where(Proxy.name == name)) is not None:
        raise Conflict(f"A proxy named {name!r} exists already.")
    proxy = Proxy(name=name, url=url, group=group, enabled=enabled, status="unknown")
    db.session.add(proxy)
    db.session.commit()
    return proxy


def update(proxy_id: int, data: dict) -> Proxy:
    """Change name, URL, group or enabled; all validated before anything is saved."""
    proxy = get(proxy_id)
    if not isinstance(data, dict):
        raise ProxyError("Send a JSON object.", status=400)
    unknown = set(data) - {"name", "url", "group", "enabled"}
    if unknown:
        raise ProxyError(f"Unknown fields: {', '.join(sorted(unknown))}.", status=400)
    values = {}
    if "name" in data:
        values["name"] = _clean_name(data["name"])
        other = db.session.scalar(select(Proxy.id).where(Proxy.name == values["name"],
                                                         Proxy.id != proxy_id))
        if other is not None:
            raise Conflict(f"A proxy named {values['name']!r} exists already.")
    if "url" in data:
        values["url"] = clean_url(data["url"])
    if "group" in data:
        values["group"] = _clean_group(data["group"])
    if "enabled" in data:
        if not isinstance(data["enabled"], bool):
            raise ProxyError("enabled is true or false.", field="enabled")
        values["enabled"] = data["enabled"]
    for key, value in values.items():
        setattr(proxy, key, value)
    if "url" in values:
        proxy.status, proxy.consecutive_failures, proxy.consecutive_successes = "unknown", 0, 0
    db.session.commit()
    return proxy


def remove(proxy_id: int) -> None:
    proxy = get(proxy_id)
    users = sorted(db.session.scalars(select(Strategy.id).where(
        Strategy.proxy_id == proxy_id, Strategy.deleted_at.is_(None))))
    if users:
        raise Conflict(f"Proxy {proxy.name} is used by strategies {users}; move them first.")
    db.session.delete(proxy)
    db.session.commit()


# ------------------------------------------------------------------------------ health


def check_url() -> str:
    """Where a health check goes: proxy.health.url, else the exchange's ping."""
    configured = current_settings().proxy.health.url
    return configured or f"{simulator_url().rstrip('/')}/api/v3/ping"


def probe(url: str, timeout: float) -> tuple[bool, int | None, str]:
    """One request through a proxy URL: (ok, latency ms, error)."""
    started = time.monotonic()
    try:
        answer = requests.get(check_url(), proxies={"http": url, "https": url},
                              timeout=timeout)
    except requests.RequestException as exc:
        reason = str(exc)
        if "407" in reason or "Proxy Authentication Required" in reason:
            reason = "the proxy refused the credentials (407)"
        return False, None, f"{type(exc).__name__}: {mask(reason)}"[:500]
    latency = int((time.monotonic() - started) * 1000)
    if answer.status_code in (401, 407):  # tinyproxy answers 401, the RFC says 407
        return False, latency, f"the proxy refused the credentials ({answer.status_code})"
    if answer.status_code >= 400:
        return False, latency, f"the exchange answered {answer.status_code} through the proxy"
    return True, latency, ""


def check(proxy: Proxy) -> ProxyCheck:
    """Check one proxy now; record it and move its status (up/down) by the rules."""
    health = current_settings().proxy.health
    ok, latency, error = probe(proxy.url, health.timeout)
    if ok and latency is not None and latency > health.max_latency_ms:
        ok, error = False, f"latency {latency} ms is over {health.max_latency_ms} ms"
    row = ProxyCheck(proxy_id=proxy.id, ok=ok, latency_ms=latency, error=error)
    db.session.add(row)
    proxy.last_checked_at, proxy.last_latency_ms = utcnow(), latency
    if ok:
        proxy.consecutive_successes += 1
        proxy.consecutive_failures = 0
    else:
        proxy.consecutive_failures += 1
        proxy.consecutive_successes = 0
    db.session.flush()
    recent = list(db.session.scalars(select(ProxyCheck.ok).where(
        ProxyCheck.proxy_id == proxy.id).order_by(ProxyCheck.id.desc()).limit(health.window)))
    rate = 100.0 * sum(recent) / len(recent) if recent else 100.0
    before = proxy.status
    if proxy.consecutive_failures >= health.failures_to_down or (
            len(recent) >= health.window and rate < health.success_rate):
        proxy.status = "down"
    elif proxy.consecutive_successes >= health.successes_to_up:
        proxy.status = "up"
    elif before == "unknown":
        proxy.status = "up" if ok else "unknown"
    db.session.commit()
    if before != proxy.status and proxy.status in ("up", "down"):
        log.warning("proxy %s is %s (%s)", proxy.name, proxy.status, error or f"{latency} ms")
        if before != "unknown" or proxy.status == "down":
            with contextlib.suppress(Exception):
                raise_alert("proxy_down" if proxy.status == "down" else "proxy_up",
                            f"Proxy {proxy.name} is {proxy.status}"
                            + (f": {error}" if error else "."),
                            "warning" if proxy.status == "down" else "info", source="proxies")
    return row


RECHECK_DELAY = 1.0  # seconds between the quick re-checks of a proxy that just failed


def check_all() -> dict:
    """Check every enabled proxy, prune old checks, fail strategies over; a summary.

    A proxy that is not down and fails is re-checked at once (RECHECK_DELAY apart) until it
    answers or reaches `failures_to_down`: a dead proxy is down — and its bots moved — within
    one pass, never `failures_to_down` intervals later; one lost request does not take it down.
    """
    summary = {"up": 0, "down": 0, "unknown": 0, "moved": []}
    health = current_settings().proxy.health
    for proxy in list_proxies():
        if proxy.enabled:
            row = check(proxy)
            while (not row.ok and proxy.status != "down"
                   and proxy.consecutive_failures < health.failures_to_down):
                time.sleep(RECHECK_DELAY)
                row = check(proxy)
        summary[proxy.status if proxy.status in summary else "unknown"] += 1
    db.session.execute(delete(ProxyCheck).where(ProxyCheck.checked_at < utcnow() - KEEP_CHECKS))
    db.session.commit()
    summary["moved"] = fail_over()
    return summary


def history(proxy_id: int) -> list[dict]:
    """The last 24 h of checks of a proxy (for its chart)."""
    get(proxy_id)
    rows = db.session.scalars(select(ProxyCheck).where(
        ProxyCheck.proxy_id == proxy_id, ProxyCheck.checked_at >= utcnow() - KEEP_CHECKS)
        .order_by(ProxyCheck.id))
    return [{"at": r.checked_at.isoformat() + "Z", "ok": r.ok, "latency_ms": r.latency_ms,
             "error": r.error} for r in rows]


# ------------------------------------------------------------------------------ failover


def _replacement(strategy: Strategy, dead: Proxy) -> tuple[bool, Proxy | None]:
    """(found, proxy): another up proxy of the group, or (True, None) = direct if allowed."""
    group = dead.group or strategy.proxy_group
    if group:
        candidates = db.session.scalars(select(Proxy).where(
            Proxy.group == group, Proxy.id != dead.id, Proxy.enabled.is_(True),
            Proxy.status == "up").order_by(Proxy.last_latency_ms.is_(None), Proxy.last_latency_ms))
        best = next(iter(candidates), None)
        if best is not None:
            return True, best
    if current_settings().proxy.switching.allow_direct:
        return True, None
    return False, None


def fail_over() -> list[dict]:
    """Move every strategy off a down proxy (see the module docstring); the moves."""
    moves = []
    strategies = db.session.scalars(select(Strategy).join(Proxy, Strategy.proxy_id == Proxy.id)
                                    .where(Proxy.status == "down", Strategy.deleted_at.is_(None)))
    for strategy in list(strategies):
        dead = db.session.get(Proxy, strategy.proxy_id)
        found, target = _replacement(strategy, dead)
        if not found:
            log.warning("strategy %s stays on down proxy %s: no other proxy is up in its group "
                        "and proxy.switching.allow_direct is off", strategy.id, dead.name)
            continue
        strategy.proxy_id = target.id if target else None
        if not strategy.proxy_group and dead.group:
            strategy.proxy_group = dead.group  # remember where it belongs
        db.session.commit()
        where = f"proxy {target.name}" if target else "a direct connection"
        message = f"Proxy {dead.name} is down: moved to {where}."
        control.record_event(strategy.id, "proxy_failover", message)
        db.session.commit()
        with contextlib.suppress(Exception):
            raise_alert("proxy_failover", f"{strategy.name}: {message}", "warning",
                        strategy_id=strategy.id, source="proxies")
        restarted = False
        if strategy.desired_state == "running" and strategy.status in ("running", "stalled"):
            with contextlib.suppress(AppError, LookupError):
                control.request_restart(strategy.id)
                restarted = True
        moves.append({"strategy_id": strategy.id, "from": dead.name,
                      "to": target.name if target else "direct", "restarted": restarted})
    return moves
