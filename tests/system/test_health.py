"""GET /health names the failing part."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from app.extensions import redis_store


@pytest.fixture
def rq_worker(app, app_config):
    """A real RQ worker process registered on the test Redis."""
    proc = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "rq.cli", "worker", "--url", app_config["REDIS_URL"], "default"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    from rq import Worker

    deadline = time.monotonic() + 20
    while not Worker.all(connection=redis_store.client) and time.monotonic() < deadline:
        time.sleep(0.1)
    yield proc
    proc.terminate()  # a warm shutdown; an idle worker blocked in Redis may need the kill
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def test_health_ok_with_everything_up(client, rq_worker):
    response = client.get("/health")
    body = response.get_json()
    assert response.status_code == 200, body
    assert body["checks"]["database"]["status"] == "ok"
    assert body["checks"]["redis"]["status"] == "ok"
    assert body["checks"]["workers"]["count"] >= 1


def test_health_without_workers_is_503_naming_workers(client):
    response = client.get("/health")
    assert response.status_code == 503
    assert response.get_json()["failing"] == ["workers"]


def test_health_with_redis_down_is_503_naming_redis(client, redis_server):
    redis_server.stop()
    try:
        response = client.get("/health")
        body = response.get_json()
        assert response.status_code == 503
        assert "redis" in body["failing"]
        assert body["checks"]["database"]["status"] == "ok"
    finally:
        redis_server.start()
