"""`flask up`: start every process of BTC Watcher on this machine and stop them on Ctrl-C."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import click
import requests
from flask import current_app

from app.system.settings import current_settings
from config.loader import PROJECT_ROOT

BIN = Path(sys.executable).parent


@dataclass
class Process:
    name: str
    argv: list[str]
    popen: subprocess.Popen | None = None
    log: Path | None = None
    env: dict = field(default_factory=dict)


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def _start(proc: Process, logs: Path) -> None:
    proc.log = logs / f"{proc.name}.log"
    fh = open(proc.log, "ab")  # noqa: SIM115 - the child owns it
    env = {**os.environ, **proc.env}
    proc.popen = subprocess.Popen(  # noqa: S603 - fixed argv from this module
        proc.argv, cwd=PROJECT_ROOT, stdout=fh, stderr=subprocess.STDOUT, env=env,
        start_new_session=True,
    )
    click.echo(f"  started {proc.name:11} pid {proc.popen.pid:<7} log {proc.log}")


def gunicorn_flags() -> list[str]:
    """Flags every gunicorn this project starts gets (the stack, the tests, the benches).

    gunicorn >= 25.1 opens a control socket at one fixed path ($XDG_RUNTIME_DIR or
    ~/.gunicorn/gunicorn.ctl): the web and the gateway (and any other gunicorn of this user)
    would unlink each other's socket. Nothing here uses it, so it is turned off.
    """
    from importlib.metadata import PackageNotFoundError, version

    try:
        parts = tuple(int(p) for p in version("gunicorn").split(".")[:2])
    except (PackageNotFoundError, ValueError):
        return []
    return ["--no-control-socket"] if parts >= (25, 1) else []


def _redis_process(url: str, var: Path) -> Process | None:
    """A local redis-server when REDIS_URL points at this machine and nothing answers there."""
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
        click.echo(f"  Redis already running at {url}")
        return None
    except redis.RedisError:
        pass
    parts = urlsplit(url)
    if parts.hostname not in ("127.0.0.1", "localhost"):
        raise click.ClickException(f"Redis at {url} does not answer.")
    server = shutil.which("redis-server")
    if not server:
        raise click.ClickException("redis-server is not installed (make run installs it).")
    folder = var / "redis"
    folder.mkdir(parents=True, exist_ok=True)
    return Process("redis", [server, "--port", str(parts.port or 6379), "--bind", "127.0.0.1",
                             "--dir", str(folder), "--save", "300 1", "--appendonly", "no"])


def _wait_http(url: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=1).status_code < 500:
                return True
        except requests.RequestException:
            pass
        time.sleep(0.5)
    return False


def _first_admin() -> str | None:
    """Create the first admin on a fresh install; return the line to print, or None."""
    from app.auth import service

    if service.first_admin() is not None:
        return None
    password = os.environ.get("BTCW_ADMIN_PASSWORD") or service.generate_password()
    service.create_user("admin", password)
    shown = "(from BTCW_ADMIN_PASSWORD)" if os.environ.get("BTCW_ADMIN_PASSWORD") else password
    return f"First login: admin / {shown}   (shown once; change it with `flask users passwd admin`)"


def run_stack(demo: bool = True) -> None:
    """Start everything, print the URL and the first login, wait for Ctrl-C, stop everything."""
    settings = current_settings().system
    var = Path(current_app.config["VAR_DIR"])
    logs = var / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    flask = [str(BIN / "flask"), "--app", "app"]
    gunicorn = str(BIN / "gunicorn")
    extra_flags = gunicorn_flags()
    procs: list[Process] = []
    redis_proc = _redis_process(current_app.config["REDIS_URL"], var)
    if redis_proc:
        procs.append(redis_proc)
    if settings.simulator.enabled and _has_module("app.simulator.cli"):
        procs.append(Process("simulator", [*flask, "simulator", "run"]))
    procs.append(Process("web", [gunicorn, "-k", "gevent", "-w", str(settings.web.workers),
                                 "-b", f"{settings.web.host}:{settings.web.port}",
                                 "--graceful-timeout", "5", *extra_flags, "wsgi:web()"]))
    if _has_module("app.gateway.proxy"):
        procs.append(Process("gateway", [gunicorn, "-k", "gevent", "-w",
                                         str(settings.gateway.workers), "-b",
                                         f"{settings.gateway.host}:{settings.gateway.port}",
                                         "--graceful-timeout", "5", *extra_flags,
                                         "wsgi:gateway()"]))
    procs.append(Process("worker", [*flask, "worker"]))
    procs.append(Process("cron", [*flask, "cron", "run"]))
    if _has_module("app.runtime.cli"):
        procs.append(Process("supervisor", [*flask, "supervisor", "run"]))

    stopping = {"now": False}

    def _stop(*_):
        stopping["now"] = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    click.echo("Starting BTC Watcher:")
    try:
        for proc in procs:
            _start(proc, logs)
            if proc.name == "redis":
                time.sleep(0.5)
        admin_line = _first_admin()
        url = f"http://127.0.0.1:{settings.web.port}"
        ready = _wait_http(f"{url}/health", 60)
        if demo and settings.simulator.enabled and _has_module("app.strategies.demo"):
            from app.strategies import demo as demo_strategies

            click.echo(demo_strategies.seed_and_start())
        click.echo("")
        click.echo(f"BTC Watcher is {'up' if ready else 'starting (health not green yet)'}: {url}")
        if admin_line:
            click.echo(admin_line)
        click.echo("Press Ctrl-C to stop everything.")
        while not stopping["now"]:
            for proc in procs:
                if proc.popen and proc.popen.poll() is not None:
                    click.echo(f"  {proc.name} exited with {proc.popen.returncode}; see {proc.log}")
                    proc.popen = None
            time.sleep(1)
    finally:
        click.echo("Stopping…")
        # Redis goes last: the supervisor, the worker and the web still talk to it while they
        # stop their bots and jobs.
        grace = current_settings().system.freqtrade.shutdown_timeout + 5
        _stop_all([p for p in reversed(procs) if p.name != "redis"], grace)
        _stop_zygote()
        _stop_all([p for p in procs if p.name == "redis"], 10)
        click.echo("Stopped.")


def _stop_zygote() -> None:
    """Stop the bot zygote the supervisor left behind (the fork launcher's, if any).

    A supervisor leaves its zygote running for a while after it exits, for a supervisor that
    restarts; `flask up` stops the supervisor for good, so nothing must linger.
    """
    try:
        from app.runtime import launcher, paths
    except ImportError:
        return
    stop = getattr(launcher, "stop_zygote", None)
    if stop is None:
        return
    try:
        pid = stop(paths.resolve_path("var/run"), timeout=5)
    except Exception as exc:  # noqa: BLE001 - shutdown goes on whatever happens
        click.echo(f"  could not stop the bot zygote: {exc}")
        return
    if pid:
        click.echo(f"  stopped the bot zygote (pid {pid})")


def _stop_all(procs: list[Process], grace: float) -> None:
    """SIGTERM each process group, wait up to `grace` seconds in all, then SIGKILL the rest."""
    for proc in procs:
        if proc.popen and proc.popen.poll() is None:
            os.killpg(proc.popen.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in procs:
        if proc.popen:
            try:
                proc.popen.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                click.echo(f"  {proc.name} did not stop in {grace:.0f} s; killing it")
                try:
                    os.killpg(proc.popen.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
