"""The system/capacity JSON API: the design's shapes, auth, and the detailed health."""

from __future__ import annotations

import pytest

from app.monitoring import bot_status, system_status

DESIGN_CAPACITY = {"max_strategies", "running_strategies", "available_slots",
                   "utilization_percent", "port_range", "can_start_more", "architecture"}
DESIGN_PORT_POOL = {"total_ports", "available_ports", "allocated_ports", "running_strategies",
                    "port_range", "max_concurrent"}
DESIGN_STATISTICS = {"total_strategies", "max_strategies", "healthy_strategies",
                     "capacity_utilization", "port_range", "uptime_seconds",
                     "architecture_mode", "can_start_more"}


@pytest.fixture
def api(client, api_token):
    def get(path: str, status: int = 200):
        response = client.get(path, headers={"Authorization": f"Bearer {api_token}"})
        assert response.status_code == status, response.get_data(as_text=True)
        return response.get_json()
    return get


@pytest.mark.parametrize("path", [
    "/api/v1/system/capacity", "/api/v1/system/port-pool", "/api/v1/system/capacity/detailed",
    "/api/v1/system/capacity/utilization-trend", "/api/v1/system/statistics",
    "/api/v1/system/health", "/api/v1/system/status",
])
def test_login_is_required(client, path):
    assert client.get(path).status_code == 401


def test_capacity_has_the_design_shape(api, make_strategy):
    make_strategy(port=None)
    make_strategy(port=None, status="stalled")
    body = api("/api/v1/system/capacity")
    assert DESIGN_CAPACITY <= set(body)
    assert body["running_strategies"] == 2
    assert body["max_strategies"] == 999
    assert body["available_slots"] == 997
    assert body["utilization_percent"] == 0.2
    assert body["port_range"] == "8081-9080"
    assert body["architecture"] == "multi_instance_reverse_proxy"
    assert body["can_start_more"] is True


def test_port_pool_has_the_design_shape(api, make_strategy):
    from app.runtime.port_pool import PortPool

    strategy = make_strategy(port=None)
    PortPool.from_app().allocate(strategy.id, "127.0.0.1")
    body = api("/api/v1/system/port-pool")
    assert DESIGN_PORT_POOL <= set(body)
    assert body["total_ports"] == 1000
    assert body["allocated_ports"] == 1 and body["available_ports"] == 999
    assert body["running_strategies"] == 1 and body["max_concurrent"] == 999


def test_detailed_has_the_design_blocks(api):
    body = api("/api/v1/system/capacity/detailed")
    assert {"capacity", "port_pool", "gateway_health", "recommendations", "timestamp",
            "resources"} <= set(body)
    assert DESIGN_CAPACITY <= set(body["capacity"])
    levels = {r["level"] for r in body["recommendations"]}
    assert levels <= {"info", "warning", "critical"}
    actions = [r["action"] for r in body["recommendations"]]
    assert actions[0] == "normal_operation" and "hardware_recommendation" in actions
    hardware = next(r for r in body["recommendations"]
                    if r["action"] == "hardware_recommendation")["hardware"]
    assert {"cpu_cores", "memory_gb", "estimated_memory_usage", "estimated_cpu_usage",
            "this_host"} <= set(hardware)
    assert body["resources"]["host"]["memory_total"] > 0


def test_statistics_has_the_design_shape(api):
    body = api("/api/v1/system/statistics")
    assert DESIGN_STATISTICS <= set(body)
    assert body["architecture_mode"] == "multi_instance_reverse_proxy"
    assert body["uptime_seconds"] > 0


def test_detailed_health_names_every_part(api, app):
    system_status.sample_system()
    body = api("/api/v1/system/health", status=503)  # no worker, cron or supervisor here
    assert set(body["checks"]) == {"host", "database", "redis", "workers", "cron", "supervisor",
                                   "bots", "gateway"}
    assert body["failing"] == ["workers", "cron", "supervisor"]
    assert body["checks"]["database"]["status"] == "ok"
    assert body["checks"]["host"]["memory_percent"] > 0
    assert body["checks"]["bots"]["status"] == "unknown"
    bot_status.sweep_strategies()  # no bots: an empty but fresh summary
    body = api("/api/v1/system/health", status=503)
    assert body["checks"]["bots"]["total_strategies"] == 0


def test_host_status_is_cached_and_has_history(api, app):
    first = system_status.sample_system()
    assert {"cpu_percent", "memory_percent", "disk_percent", "network_io", "uptime_seconds",
            "timestamp"} <= set(first)
    body = api("/api/v1/system/status")
    assert body["cached"] is True and body["timestamp"] == first["timestamp"]
    second = system_status.sample_system()
    assert second["net_recv_rate"] is not None  # measured between the two samples
    points = api("/api/v1/system/status/history?minutes=60")["points"]
    assert len(points) == 2 and points[0]["t"] <= points[1]["t"]
    assert api("/api/v1/system/status/history?minutes=500", status=400)["message"]
