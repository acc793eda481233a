"""The bots' API ports: a pool per host, kept in the database (PortAllocation rows).

A port is allocated by inserting a row; the unique (host, port) key makes that atomic across
threads, processes and hosts on SQLite and PostgreSQL alike: of two starts that pick the same
port one insert fails with IntegrityError and that one tries the next port. The strategy id is
unique too, so a strategy holds at most one port.

The pool runs its own short transactions on its own connection, so allocating or releasing a
port never commits or rolls back the caller's session.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable

from sqlalchemy import delete, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from app.extensions import db
from app.strategies.models import PortAllocation
from app.system.settings import current_settings

log = logging.getLogger(__name__)


class PortPoolExhausted(RuntimeError):
    """No port of the range is free on that host."""


def port_is_bindable(host: str, port: int) -> bool:
    """True when nothing listens on host:port, tested by binding it (SO_REUSEADDR, like uvicorn).

    A listener on the wildcard address (0.0.0.0) makes a loopback bind fail too, so such a
    port is skipped as well.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


class PortPool:
    """Ports `start..end` (inclusive) on each host, allocated to strategies."""

    def __init__(self, engine: Engine, start: int, end: int,
                 bindable: Callable[[str, int], bool] = port_is_bindable, attempts: int = 50):
        if not 0 < start <= end < 65536:
            raise ValueError(f"bad port range {start}-{end}")
        self.engine = engine
        self.start = start
        self.end = end
        self.bindable = bindable
        self.attempts = attempts

    @classmethod
    def from_app(cls) -> PortPool:
        """The pool of the current app: its database, system.capacity.port_range_*."""
        capacity = current_settings().system.capacity
        return cls(db.engine, capacity.port_range_start, capacity.port_range_end)

    @property
    def size(self) -> int:
        """How many ports the range holds (per host)."""
        return self.end - self.start + 1

    def preferred_port(self, strategy_id: int) -> int | None:
        """`start + id` (8081 + id with the default range), if that is inside the range."""
        port = self.start + int(strategy_id)
        return port if port <= self.end else None

    def _candidates(self, strategy_id: int, taken: set[int]):
        preferred = self.preferred_port(strategy_id)
        if preferred is not None and preferred not in taken:
            yield preferred
        for port in range(self.start, self.end + 1):
            if port not in taken and port != preferred:
                yield port

    def allocate(self, strategy_id: int, host: str) -> int:
        """A port for the strategy on `host`: preferred `start + id`, else the lowest free one.

        Ports that something else on the host listens on are skipped. A strategy that already
        holds a port on that host keeps it when it is still bindable. Raises PortPoolExhausted.
        """
        for _ in range(self.attempts):
            with Session(self.engine) as session:
                current = session.scalar(
                    select(PortAllocation).where(PortAllocation.strategy_id == strategy_id))
                if current is not None:
                    if current.host == host and self.bindable(host, current.port):
                        return current.port
                    session.delete(current)
                    session.commit()
                taken = set(session.scalars(
                    select(PortAllocation.port).where(PortAllocation.host == host)))
                busy = []
                for port in self._candidates(strategy_id, taken):
                    if not self.bindable(host, port):
                        busy.append(port)
                        continue
                    session.add(PortAllocation(host=host, port=port, strategy_id=strategy_id))
                    try:
                        session.commit()
                    except (IntegrityError, OperationalError) as exc:
                        # Someone took this port (or allocated for this strategy) meanwhile;
                        # SQLite may also report a lock it could not get in time. Re-read.
                        session.rollback()
                        log.debug("port %s:%s taken concurrently (%s); retrying", host, port,
                                  type(exc).__name__)
                        break
                    if busy:
                        log.info("ports %s on %s are used by other programs; skipped",
                                 _ranges(busy), host)
                    log.info("allocated port %s:%s to strategy %s", host, port, strategy_id)
                    return port
                else:
                    raise PortPoolExhausted(
                        f"No free port in {self.start}-{self.end} on {host}: "
                        f"{len(taken)} allocated to strategies, {len(busy)} used by other "
                        f"programs.")
        raise PortPoolExhausted(
            f"Could not allocate a port on {host} after {self.attempts} attempts "
            f"(too many concurrent starts).")

    def claim(self, strategy_id: int, host: str, port: int) -> bool:
        """Record that the strategy holds host:port (an adopted bot already listens there).

        True when the row exists or was written; False if another strategy holds that port.
        """
        with Session(self.engine) as session:
            current = session.scalar(
                select(PortAllocation).where(PortAllocation.strategy_id == strategy_id))
            if current is not None:
                if (current.host, current.port) == (host, port):
                    return True
                session.delete(current)
            session.add(PortAllocation(host=host, port=port, strategy_id=strategy_id))
            try:
                session.commit()
            except IntegrityError:
                session.rollback()
                return False
        return True

    def release(self, strategy_id: int) -> int | None:
        """Give the strategy's port back to the pool; the port it held, or None."""
        with Session(self.engine) as session:
            row = session.scalar(
                select(PortAllocation).where(PortAllocation.strategy_id == strategy_id))
            if row is None:
                return None
            port = row.port
            session.execute(delete(PortAllocation).where(PortAllocation.id == row.id))
            session.commit()
        log.info("released port %s of strategy %s", port, strategy_id)
        return port

    def port_of(self, strategy_id: int) -> tuple[str, int] | None:
        """(host, port) allocated to the strategy, or None."""
        with Session(self.engine) as session:
            row = session.execute(
                select(PortAllocation.host, PortAllocation.port)
                .where(PortAllocation.strategy_id == strategy_id)).first()
        return (row[0], row[1]) if row else None

    def status(self, running_strategies: int | None = None, max_concurrent: int | None = None,
               host_count: int = 1) -> dict:
        """The design's port-pool shape: totals over every host, plus one entry per host.

        The total is one range per host: hosts holding ports, at least `host_count` (pass the
        number of live supervisors).
        """
        with Session(self.engine) as session:
            per_host = dict(session.execute(
                select(PortAllocation.host, func.count(PortAllocation.id))
                .where(PortAllocation.port.between(self.start, self.end))
                .group_by(PortAllocation.host)).all())
        hosts = max(len(per_host), host_count, 1)
        total = self.size * hosts
        allocated = sum(per_host.values())
        result = {
            "total_ports": total,
            "available_ports": total - allocated,
            "allocated_ports": allocated,
            "port_range": f"{self.start}-{self.end}",
            "utilization_percent": round(allocated * 100 / total, 2),
            "hosts": {host: {"allocated_ports": count, "available_ports": self.size - count}
                      for host, count in sorted(per_host.items())},
        }
        if running_strategies is not None:
            result["running_strategies"] = running_strategies
        if max_concurrent is not None:
            result["max_concurrent"] = max_concurrent
        return result


def _ranges(ports: list[int]) -> str:
    """[8081, 8082, 8083, 8090] -> '8081-8083, 8090'."""
    parts, ports = [], sorted(ports)
    begin = prev = ports[0]
    for port in ports[1:] + [None]:
        if port is not None and port == prev + 1:
            prev = port
            continue
        parts.append(str(begin) if begin == prev else f"{begin}-{prev}")
        if port is not None:
            begin = prev = port
    return ", ".join(parts)
