"""GET /health names the failing part."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from app.extensions import redis_store
from app.runtime import hosts
from app.runtime.launcher import stop_zygote

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _env(app_config) -> dict:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")},
            "DATABASE_URL": app_config["SQLALCHEMY_DATABASE_URI"],
            "REDIS_URL": app_config["REDIS_URL"], "BTCW_CONFIG_DIR": app_config["CONFIG_DIR"],
            "BTCW_VAR_DIR": app_config["VAR_DIR"], "SECRET_KEY": app_config["SECRET_KEY"]}


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()  # a warm shutdown; one blocked in Redis may need the kill
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.fixture
def control_plane(app, app_config, client):
    """The real RQ worker, cron scheduler and bot supervisor, as `make run` starts them."""
    flask = [str(BIN / "flask"), "--app", "app"]
    procs = {name: subprocess.Popen([*flask, *argv], cwd=ROOT, env=_env(app_config),  # noqa: S603
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for name, argv in (("workers", ["worker", "default"]), ("cron", ["cron", "run"]),
                                ("supervisor", ["supervisor", "run"]))}
    deadline = time.monotonic() + 60
    while client.get("/health").status_code != 200:
        assert time.monotonic() < deadline, client.get("/health").get_json()
        time.sleep(0.3)
    yield procs
    for proc in procs.values():
        _stop(proc)
    stop_zygote(Path(app_config["VAR_DIR"]) / "run")


def test_health_ok_with_everything_up(client, control_plane):
    response = client.get("/health")
    body = response.get_json()
    assert response.status_code == 200, body
    assert body["checks"]["database"]["status"] == "ok"
    assert body["checks"]["redis"]["status"] == "ok"
    assert body["checks"]["workers"]["count"] >= 1


@pytest.mark.parametrize("part", ["workers", "cron", "supervisor"])
def test_health_names_a_part_killed_with_sigkill_within_15_s(client, control_plane, part):
    control_plane[part].kill()
    control_plane[part].wait(10)
    killed = time.monotonic()
    while client.get("/health").status_code == 200:
        assert time.monotonic() - killed < 15, f"/health still ok after {part} died"
        time.sleep(0.2)
    body = client.get("/health").get_json()
    assert body["failing"] == [part], body
    assert body["checks"][part]["error"]


def test_health_without_workers_is_503_naming_workers(client):
    response = client.get("/health")
    assert response.status_code == 503
    assert response.get_json()["failing"] == ["workers", "cron", "supervisor"]


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


def test_health_fails_when_a_queued_job_waits_past_the_limit(client, control_plane,
                                                            system_settings):
    """Workers alive but not taking jobs (here: nobody listens on `backups`)."""
    system_settings("monitoring", queue_wait_limit=60)
    job = redis_store.queue("backups").enqueue("time.sleep", 0, job_id="waiting-job",
                                               at_front=True)
    assert client.get("/health").status_code == 200
    job.enqueued_at = datetime.now(UTC) - timedelta(seconds=90)
    job.save()
    body = client.get("/health").get_json()
    assert body["failing"] == ["workers"], body["checks"]["workers"]
    workers = body["checks"]["workers"]
    assert workers["oldest_queued_job"] == "waiting-job" and workers["oldest_queued_seconds"] >= 90
    assert "waiting-job" in workers["error"] and "backups" in workers["error"]


def test_health_names_a_registered_supervisor_host_gone_silent(client, control_plane, runner):
    hosts.write_heartbeat(redis_store.client, hosts.HostInfo("far-host", 1, 1, 1, 0, 0), ttl=1)
    time.sleep(1.2)  # its heartbeat expired; it never said goodbye
    body = client.get("/health").get_json()
    assert body["failing"] == ["supervisor"], body
    assert body["checks"]["supervisor"]["hosts"]["far-host"] == "silent"
    assert "far-host" in body["checks"]["supervisor"]["error"]
    result = runner.invoke(args=["supervisor", "forget", "far-host"])
    assert result.exit_code == 0, result.output
    assert client.get("/health").status_code == 200
    result = runner.invoke(args=["supervisor", "forget", "far-host"])
    assert result.exit_code != 0 and "no supervisor host named 'far-host'" in result.output
