"""Supervisor hosts in Redis: one command queue and one heartbeat per host (SPEC §13).

Keys (all in the app's Redis):
- `btcw:supervisor:<host>:commands`  a list; control pushes JSON commands on the right, the
  supervisor of that host pops them from the left (`{"action": "start", "strategy_id": 7}`).
- `btcw:supervisor:<host>:heartbeat` JSON (pid, free memory, running bots, time) with a short TTL;
  a host whose key has expired is considered gone.
- `btcw:supervisors` the set of hosts that registered; those without a live heartbeat are
  skipped on read and removed when their supervisor shuts down cleanly.

The database stays the source of truth (desired_state / status of each strategy); a command only
makes the supervisor act at once instead of on its next reconcile pass.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import redis

HOSTS_KEY = "btcw:supervisors"
ACTIONS = ("start", "stop", "restart")
HEARTBEAT_TTL = 10  # seconds; a supervisor writes its heartbeat every check interval (1 s)


def commands_key(host: str) -> str:
    """The Redis list holding commands for the supervisor of `host`."""
    return f"btcw:supervisor:{host}:commands"


def heartbeat_key(host: str) -> str:
    """The Redis key holding the heartbeat of the supervisor of `host`."""
    return f"btcw:supervisor:{host}:heartbeat"


@dataclass(frozen=True)
class HostInfo:
    """What a live supervisor last reported about its host."""

    host: str
    pid: int
    free_memory: int  # bytes available for new processes
    total_memory: int
    running: int  # bots this supervisor runs
    updated_at: float  # unix time
    cpu_percent: float | None = None  # the host's CPU use
    cpu_count: int | None = None
    freqtrade: str = ""  # the FreqTrade release of the supervisor's own environment
    launcher: str = ""

    def as_dict(self) -> dict:
        """JSON-ready form."""
        return {
            "host": self.host, "pid": self.pid, "free_memory": self.free_memory,
            "total_memory": self.total_memory, "running": self.running,
            "updated_at": self.updated_at, "cpu_percent": self.cpu_percent,
            "cpu_count": self.cpu_count, "freqtrade": self.freqtrade, "launcher": self.launcher,
        }


def push_command(client: redis.Redis, host: str, action: str, strategy_id: int) -> None:
    """Queue a command for the supervisor of `host`."""
    if action not in ACTIONS:
        raise ValueError(f"unknown supervisor action {action!r}; expected one of {ACTIONS}")
    payload = json.dumps({"action": action, "strategy_id": int(strategy_id), "at": time.time()})
    client.rpush(commands_key(host), payload)


def pop_command(client: redis.Redis, host: str, timeout: float = 0) -> dict | None:
    """The next command for `host`, waiting up to `timeout` seconds (0: do not wait)."""
    if timeout > 0:
        # BLPOP takes whole or fractional seconds (Redis >= 6); never 0, which blocks forever.
        item = client.blpop([commands_key(host)], timeout=max(timeout, 0.01))
        raw = item[1] if item else None
    else:
        raw = client.lpop(commands_key(host))
    if raw is None:
        return None
    try:
        command = json.loads(raw)
        action, strategy_id = command["action"], int(command["strategy_id"])
    except (ValueError, KeyError, TypeError):
        return {"action": "invalid", "raw": raw if isinstance(raw, str) else repr(raw)}
    return {"action": action, "strategy_id": strategy_id, "at": command.get("at")}


def write_heartbeat(client: redis.Redis, info: HostInfo, ttl: int = HEARTBEAT_TTL) -> None:
    """Record that the supervisor of `info.host` is alive, with its capacity."""
    pipe = client.pipeline()
    pipe.set(heartbeat_key(info.host), json.dumps(info.as_dict()), ex=ttl)
    pipe.sadd(HOSTS_KEY, info.host)
    pipe.execute()


def clear_heartbeat(client: redis.Redis, host: str) -> None:
    """Forget the host at once (its supervisor is shutting down)."""
    pipe = client.pipeline()
    pipe.delete(heartbeat_key(host))
    pipe.srem(HOSTS_KEY, host)
    pipe.execute()


def registered_hosts(client: redis.Redis) -> set[str]:
    """Every host in the register, live or not."""
    return {h.decode() if isinstance(h, bytes) else h for h in client.smembers(HOSTS_KEY)}


def live_hosts(client: redis.Redis) -> list[HostInfo]:
    """Hosts whose supervisor sent a heartbeat within the TTL, most free memory first."""
    hosts = sorted(registered_hosts(client))
    if not hosts:
        return []
    values = client.mget([heartbeat_key(h) for h in hosts])
    found: list[HostInfo] = []
    for host, raw in zip(hosts, values, strict=True):
        if raw is None:
            continue
        try:
            data = json.loads(raw)
            found.append(HostInfo(
                host=host, pid=int(data["pid"]), free_memory=int(data["free_memory"]),
                total_memory=int(data.get("total_memory", 0)), running=int(data["running"]),
                updated_at=float(data["updated_at"]),
                cpu_percent=_number(data.get("cpu_percent")),
                cpu_count=int(data["cpu_count"]) if data.get("cpu_count") else None,
                freqtrade=str(data.get("freqtrade") or "")[:32],
                launcher=str(data.get("launcher") or "")[:32],
            ))
        except (ValueError, KeyError, TypeError):
            continue
    return sorted(found, key=lambda h: (-h.free_memory, h.host))


def _number(value) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None
