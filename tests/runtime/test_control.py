"""The control interface: transitions, capacity, placement by free memory, the command queues."""

from __future__ import annotations

import dataclasses
import json
import time

import pytest

from tests.bots import make_strategy

# Depends on the database dialect: runs on SQLite and on PostgreSQL.
pytestmark = pytest.mark.both_databases


def _limit(app, max_strategies: int):
    holder = app.extensions["btcw_settings"]
    original = holder.settings
    capacity = dataclasses.replace(original.system.capacity, max_strategies=max_strategies)
    holder.settings = dataclasses.replace(
        original, system=dataclasses.replace(original.system, capacity=capacity))
    return original


def _heartbeat(host: str, free_gb: float, running: int = 0):
    from app.extensions import redis_store
    from app.runtime import hosts

    hosts.write_heartbeat(redis_store.client, hosts.HostInfo(
        host=host, pid=1, free_memory=int(free_gb * 2**30), total_memory=16 * 2**30,
        running=running, updated_at=time.time()))


def _queued(host: str) -> list[dict]:
    from app.extensions import redis_store
    from app.runtime import hosts

    return [json.loads(raw) for raw in redis_store.client.lrange(hosts.commands_key(host), 0, -1)]


def test_start_without_a_supervisor_waits_on_the_default_host(app):
    from app.runtime import control

    strategy = make_strategy("waiting", api_password="", jwt_secret="short")
    got = control.request_start(strategy.id)
    assert (got.status, got.desired_state, got.host) == ("starting", "running", "127.0.0.1")
    assert "waiting for the supervisor of 127.0.0.1" in got.status_message
    assert len(got.jwt_secret) >= 32 and got.api_password  # generated when missing
    assert _queued("127.0.0.1")[-1]["action"] == "start"
    with pytest.raises(control.InvalidTransition, match="already starting"):
        control.request_start(strategy.id)
    # Nothing was ever launched and no supervisor is alive: a stop is immediate.
    got = control.request_stop(strategy.id)
    assert (got.status, got.desired_state) == ("stopped", "stopped")
    with pytest.raises(control.InvalidTransition, match="not running"):
        control.request_stop(strategy.id)


def test_placement_picks_the_host_with_most_room(app):
    from app.runtime import control

    _heartbeat("127.0.0.2", free_gb=1.0)
    _heartbeat("127.0.0.3", free_gb=3.0)
    first = control.request_start(make_strategy("p1").id)
    assert first.host == "127.0.0.3" and first.status_message == "queued on 127.0.0.3"
    assert _queued("127.0.0.3") and not _queued("127.0.0.2")
    # Starts placed on a host count against it until its heartbeat reflects them: after
    # p1 and five more, 3 GiB - 6 x 330 MiB leaves room for 3 bots, as 1 GiB does, and the
    # host with fewer bots wins the tie.
    hosts = [control.request_start(make_strategy(f"q{i}").id).host for i in range(5)]
    assert hosts == ["127.0.0.3"] * 5
    assert control.request_start(make_strategy("p2").id).host == "127.0.0.2"


def test_supervisors_on_one_machine_share_the_bots(app):
    from app.runtime import control

    _heartbeat("127.0.0.2", free_gb=4.0, running=3)
    _heartbeat("127.0.0.3", free_gb=4.0001, running=0)
    _heartbeat("127.0.0.4", free_gb=3.9999, running=1)
    placed = [control.request_start(make_strategy(f"even-{i}").id).host for i in range(4)]
    # Same room (12 bots of 330 MiB): fewest bots first, then the room shrinks as starts queue.
    assert placed == ["127.0.0.3", "127.0.0.4", "127.0.0.2", "127.0.0.3"]


def test_a_start_pinned_to_a_host_needs_its_supervisor(app):
    from app.runtime import control

    strategy = make_strategy("pinned")
    with pytest.raises(control.HostUnavailable, match="No supervisor is running on host 10.9"):
        control.request_start(strategy.id, host="10.9.9.9")
    _heartbeat("10.9.9.9", free_gb=0.1)
    assert control.request_start(strategy.id, host="10.9.9.9").host == "10.9.9.9"


def test_a_dead_heartbeat_is_not_a_host(app):
    from app.extensions import redis_store
    from app.runtime import control, hosts

    _heartbeat("127.0.0.9", free_gb=8)
    redis_store.client.delete(hosts.heartbeat_key("127.0.0.9"))
    assert control.live_hosts() == []
    assert control.choose_host() == ("127.0.0.1", False)


def test_capacity_limit_counts_every_host(app):
    from app.runtime import control

    original = _limit(app, 2)
    try:
        a, b, c = (make_strategy(n) for n in ("cap-a", "cap-b", "cap-c"))
        control.request_start(a.id)
        b.desired_state, b.status, b.host = "running", "running", "10.0.0.2"  # elsewhere
        from app.extensions import db

        db.session.commit()
        with pytest.raises(control.CapacityError, match=r"2 of 2 strategies") as raised:
            control.request_start(c.id)
        assert raised.value.status == 409
        assert control.active_count() == 2
        control.request_stop(a.id)
        assert control.request_start(c.id).status == "starting"
    finally:
        app.extensions["btcw_settings"].settings = original


def test_unknown_and_deleted_strategies_are_not_found(app):
    from app.clock import utcnow
    from app.extensions import db
    from app.runtime import control

    with pytest.raises(control.StrategyNotFound, match="No strategy with id 4242") as raised:
        control.request_start(4242)
    assert raised.value.status == 404
    gone = make_strategy("gone")
    gone.deleted_at = utcnow()
    db.session.commit()
    for call in (control.request_start, control.request_stop, control.request_restart,
                 control.request_reload_config):
        with pytest.raises(control.StrategyNotFound):
            call(gone.id)


def test_reload_config_needs_a_running_bot(app):
    from app.runtime import control

    strategy = make_strategy("idle")
    with pytest.raises(control.InvalidTransition, match="not running"):
        control.request_reload_config(strategy.id)


def test_restart_of_a_stopped_strategy_starts_it(app):
    from app.runtime import control

    strategy = make_strategy("cold")
    got = control.request_restart(strategy.id)
    assert got.status == "starting" and _queued("127.0.0.1")[-1]["action"] == "start"


def test_stop_all_and_wait_for_status(app):
    from app.runtime import control

    ids = [make_strategy(f"all-{i}").id for i in range(3)]
    for strategy_id in ids[:2]:
        control.request_start(strategy_id)
    assert control.stop_all() == ids[:2]
    assert control.wait_for_status(ids[0], "stopped", timeout=1).status == "stopped"
    with pytest.raises(TimeoutError, match="expected one of \\['running'\\]"):
        control.wait_for_status(ids[2], ["running"], timeout=0.3, poll=0.1)


def test_command_queue_round_trip_and_bad_payloads(app):
    from app.extensions import redis_store
    from app.runtime import hosts

    client = redis_store.client
    hosts.push_command(client, "10.1.1.1", "restart", 5)
    assert hosts.pop_command(client, "10.1.1.1", timeout=0.5)["action"] == "restart"
    assert hosts.pop_command(client, "10.1.1.1", timeout=0.05) is None
    client.rpush(hosts.commands_key("10.1.1.1"), "not json")
    assert hosts.pop_command(client, "10.1.1.1")["action"] == "invalid"
    with pytest.raises(ValueError, match="unknown supervisor action"):
        hosts.push_command(client, "10.1.1.1", "explode", 5)


def test_credentials_are_long_and_random():
    from app.runtime.credentials import ensure_credentials, new_credentials

    a, b = new_credentials(), new_credentials()
    assert a.keys() == b.keys() == {"api_username", "api_password", "jwt_secret", "ws_token",
                                    "webhook_token"}
    assert all(a[k] != b[k] for k in a)
    assert len(a["jwt_secret"]) >= 32

    class Row:
        api_username = "keep"
        api_password = ""
        jwt_secret = "x" * 10
        ws_token = "w"
        webhook_token = None

    row = Row()
    assert ensure_credentials(row)
    assert row.api_username == "keep" and row.ws_token == "w"
    assert row.api_password and len(row.jwt_secret) >= 32 and row.webhook_token
    assert not ensure_credentials(row)
