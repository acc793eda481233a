"""The DB-backed port pool: preference, skipping busy ports, atomic concurrent allocation."""

from __future__ import annotations

import socket
import threading

import pytest

from tests.bots import _free_port_range, make_strategy

# Depends on the database dialect: runs on SQLite and on PostgreSQL.
pytestmark = pytest.mark.both_databases

HOST = "127.0.0.1"


@pytest.fixture
def pool_range():
    start = _free_port_range(40)
    return start, start + 39


def _pool(start: int, end: int, **kw):
    from app.extensions import db
    from app.runtime.port_pool import PortPool

    return PortPool(db.engine, start, end, **kw)


def test_preferred_port_then_lowest_free_then_release(app, pool_range):
    start, end = pool_range
    pool = _pool(start, end)
    first = make_strategy("one")
    second = make_strategy("two")
    assert pool.allocate(first.id, HOST) == start + first.id
    # The same strategy asking again keeps its port.
    assert pool.allocate(first.id, HOST) == start + first.id
    # Another strategy whose preferred port is taken gets the lowest free one.
    third = make_strategy("three")
    pool_claims = _pool(start, end)
    assert pool_claims.claim(third.id, HOST, start + second.id)
    assert pool.allocate(second.id, HOST) == start
    status = pool.status(running_strategies=2, max_concurrent=999)
    assert status == {
        "total_ports": 40, "available_ports": 37, "allocated_ports": 3,
        "port_range": f"{start}-{end}", "utilization_percent": 7.5,
        "hosts": {HOST: {"allocated_ports": 3, "available_ports": 37}},
        "running_strategies": 2, "max_concurrent": 999,
    }
    assert pool.release(first.id) == start + first.id
    assert pool.release(first.id) is None
    assert pool.port_of(first.id) is None
    assert pool.status()["allocated_ports"] == 2


def test_a_port_another_program_listens_on_is_skipped(app, pool_range):
    start, end = pool_range
    pool = _pool(start, end)
    strategy = make_strategy("squatted")
    preferred = start + strategy.id
    with socket.socket() as squatter:
        squatter.bind((HOST, preferred))
        squatter.listen()
        port = pool.allocate(strategy.id, HOST)
    assert port == start


def test_a_listener_on_the_wildcard_address_blocks_the_loopback_port():
    from app.runtime.port_pool import port_is_bindable

    with socket.socket() as squatter:
        squatter.bind(("0.0.0.0", 0))  # noqa: S104 - a port of the kernel's choosing
        squatter.listen()
        port = squatter.getsockname()[1]
        assert not port_is_bindable(HOST, port)
        assert not port_is_bindable("0.0.0.0", port)  # noqa: S104


def test_hosts_have_separate_pools(app, pool_range):
    start, end = pool_range
    pool = _pool(start, end, bindable=lambda host, port: True)
    a, b = make_strategy("on-a"), make_strategy("on-b")
    assert pool.claim(a.id, "10.0.0.1", start)
    assert pool.allocate(b.id, "10.0.0.2") == start + b.id
    assert pool.status(host_count=2)["total_ports"] == 80


def test_exhausted_pool_names_the_range_and_the_host(app):
    from app.runtime.port_pool import PortPoolExhausted

    pool = _pool(30000, 30001, bindable=lambda host, port: port != 30001)
    a, b = make_strategy("a"), make_strategy("b")
    assert pool.allocate(a.id, HOST) == 30000
    with pytest.raises(PortPoolExhausted, match=r"30000-30001 on 127.0.0.1: 1 allocated.*1 used"):
        pool.allocate(b.id, HOST)


def test_five_concurrent_allocations_get_five_different_ports(app, pool_range):
    """Threads race for the lowest free port (preferred ports are out of range)."""
    start, _ = pool_range
    strategies = [make_strategy(f"racer-{i}") for i in range(5)]
    low = start + 20
    pool = _pool(low, low + 9)
    pool.preferred_port = lambda strategy_id: None  # every thread goes for the same lowest port
    barrier = threading.Barrier(5)
    results: dict[int, int] = {}
    errors: list[BaseException] = []

    def worker(strategy_id: int) -> None:
        try:
            barrier.wait(5)
            results[strategy_id] = pool.allocate(strategy_id, HOST)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(s.id,)) for s in strategies]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert len(results) == 5
    assert len(set(results.values())) == 5
    assert all(low <= port <= low + 9 for port in results.values())


def test_bad_range_is_refused(app):
    with pytest.raises(ValueError, match="bad port range"):
        _pool(9000, 8000)
