"""`flask up` runs every process under supervisord: each one killed with SIGKILL comes back
within 10 s, and Ctrl-C stops them all, leaving nothing behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import requests

from config import yaml_io
from tests.support.servers import free_port, wait_healthy

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PROGRAMS = ("web", "gateway", "worker", "backup-worker", "cron", "supervisor", "simulator",
            "relay", "redis")


def _ours(var: Path) -> list[psutil.Process]:
    """Processes started for this stack (they carry its BTCW_VAR_DIR)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("BTCW_VAR_DIR") == str(var) and proc.pid != os.getpid():
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


@pytest.fixture
def stack(tmp_path, config_dir):
    """`flask up --no-demo` on free ports with its own Redis, var and config folders."""
    config = tmp_path / "config"
    config.mkdir()
    for f in config_dir.glob("*.yml"):
        (config / f.name).write_text(f.read_text())
    system = yaml_io.load((config / "system.yml").read_text())
    web_port = free_port()
    system["system"]["web"].update(port=web_port, public_url=f"http://127.0.0.1:{web_port}",
                                   workers=1)
    system["system"]["gateway"].update(port=free_port(), workers=1)
    system["system"]["simulator"]["port"] = free_port()
    system["system"]["exchange_relay"].update(host="127.0.0.1", port=free_port())
    system["system"]["capacity"].update(port_range_start=42000, port_range_end=42099)
    (config / "system.yml").write_text(yaml_io.dump(system))
    var = tmp_path / "var"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")},
           "BTCW_VAR_DIR": str(var), "BTCW_CONFIG_DIR": str(config),
           "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
           "DATABASE_URL": f"sqlite:///{var / 'btcw.db'}", "SECRET_KEY": "stack-test-key"}
    flask = [str(BIN / "flask"), "--app", "app"]
    subprocess.run([*flask, "db", "upgrade"], cwd=ROOT, env=env, check=True,
                   capture_output=True, timeout=120)
    up = subprocess.Popen([*flask, "up", "--no-demo"], cwd=ROOT, env=env,  # noqa: S603
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{web_port}"
    if not wait_healthy(url, 90, up):
        up.kill()
        pytest.fail("the stack did not become healthy: " + (up.stdout.read() or ""))
    yield {"up": up, "var": var, "url": url, "env": env,
           "ctl": [str(BIN / "supervisorctl"), "-c", str(var / "run" / "supervisord.conf")]}
    if up.poll() is None:
        up.kill()
    for proc in _ours(var):
        proc.kill()


def _pid(stack, name: str) -> tuple[int, str]:
    out = subprocess.run([*stack["ctl"], "status", name], capture_output=True, text=True,
                         timeout=10).stdout.split()
    state = out[1] if len(out) > 1 else "?"
    pid = int(out[3].rstrip(",")) if state == "RUNNING" else 0
    return pid, state


def test_every_process_comes_back_after_kill_9_and_ctrl_c_stops_everything(stack):
    took = {}
    for name in PROGRAMS:
        pid, state = _pid(stack, name)
        assert state == "RUNNING" and pid, (name, state)
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        while time.monotonic() - killed < 15:
            new, state = _pid(stack, name)
            if state == "RUNNING" and new not in (0, pid):
                break
            time.sleep(0.2)
        took[name] = time.monotonic() - killed
        assert new not in (0, pid), f"{name} was not restarted"
    assert all(seconds <= 10 for seconds in took.values()), took
    deadline = time.monotonic() + 30  # and the whole is healthy again
    while True:
        try:  # a web worker may still be reconnecting to the Redis that just came back
            if requests.get(f"{stack['url']}/health", timeout=5).status_code == 200:
                break
        except requests.RequestException:
            pass
        assert time.monotonic() < deadline, "not healthy again after the restarts"
        time.sleep(0.5)

    stack["up"].send_signal(signal.SIGINT)
    output, _ = stack["up"].communicate(timeout=90)
    assert "Stopped." in output
    time.sleep(1)
    assert _ours(stack["var"]) == [], "processes left behind"
