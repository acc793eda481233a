"""`flask up`: every process of BTC Watcher on this machine under supervisord, stopped on Ctrl-C.

The programs (Redis when none answers, the simulator, the exchange relay, web, gateway, worker, cron
and the bot supervisor) run under supervisord (PyPI `supervisor`), whose configuration is generated
into var/run/supervisord.conf on each start: a program that dies is started again at once, one that
keeps failing to start is retried with a growing delay, and their output goes to var/logs/. Ctrl-C
(or SIGTERM) makes supervisord stop them in reverse order (the bot supervisor first, which stops its
bots; Redis last), then the bot zygote is stopped. `supervisorctl -c var/run/supervisord.conf
status` shows them while it runs.
"""

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

from app.auth import service as auth_service
from app.runtime import launcher, paths, placement
from app.strategies import demo as demo_strategies
from app.system.settings import current_settings
from config.loader import PROJECT_ROOT

BIN = Path(sys.executable).parent
# Start order (supervisord priority); stopping goes the other way.
PRIORITY = {"redis": 10, "simulator": 20, "relay": 25, "web": 30, "gateway": 30, "worker": 40,
            "backup-worker": 40, "cron": 40, "supervisor": 50}


@dataclass
class Process:
    name: str
    argv: list[str]
    env: dict = field(default_factory=dict)
    stop_seconds: int = 10


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


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
    # AOF fsynced every second: a Redis restart keeps queued jobs and host registrations.
    return Process("redis", [server, "--port", str(parts.port or 6379), "--bind", "127.0.0.1",
                             "--dir", str(folder), "--save", "300 1", "--appendonly", "yes",
                             "--appendfsync", "everysec"])


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
    if auth_service.first_admin() is not None:
        return None
    password = os.environ.get("BTCW_ADMIN_PASSWORD") or auth_service.generate_password()
    auth_service.create_user("admin", password)
    shown = "(from BTCW_ADMIN_PASSWORD)" if os.environ.get("BTCW_ADMIN_PASSWORD") else password
    return f"First login: admin / {shown}   (shown once; change it with `flask users passwd admin`)"


def programs(settings, redis_url: str, var: Path) -> list[Process]:
    """The processes of this machine's BTC Watcher, in start order."""
    flask = [str(BIN / "flask"), "--app", "app"]
    gunicorn = str(BIN / "gunicorn")
    extra_flags = gunicorn_flags()
    procs: list[Process] = []
    redis_proc = _redis_process(redis_url, var)
    if redis_proc:
        procs.append(redis_proc)
    if settings.simulator.enabled:
        procs.append(Process("simulator", [*flask, "simulator", "run"]))
    relay = settings.exchange_relay
    if relay.enabled:
        # One worker: the relay's cache and rate budget live in its memory.
        procs.append(Process("relay", [gunicorn, "-k", "gevent", "-w", "1",
                                       "--worker-connections", "2000",
                                       "-b", f"{relay.host}:{relay.port}",
                                       "--graceful-timeout", "5", *extra_flags, "wsgi:relay()"]))
    procs.append(Process("web", [gunicorn, "-k", "gevent", "-w", str(settings.web.workers),
                                 "-b", f"{settings.web.host}:{settings.web.port}",
                                 "--graceful-timeout", "5", *extra_flags, "wsgi:web()"]))
    procs.append(Process("gateway", [gunicorn, "-k", "gevent", "-w",
                                     str(settings.gateway.workers), "-b",
                                     f"{settings.gateway.host}:{settings.gateway.port}",
                                     "--graceful-timeout", "5", *extra_flags, "wsgi:gateway()"]))
    # Backups take minutes: their own worker, so notifications never wait behind one.
    procs.append(Process("worker", [*flask, "worker", "notifications", "monitoring", "default"]))
    procs.append(Process("backup-worker", [*flask, "worker", "backups"]))
    procs.append(Process("cron", [*flask, "cron", "run"]))
    procs.append(Process("supervisor", [*flask, "supervisor", "run"],
                         stop_seconds=settings.freqtrade.shutdown_timeout + 30))
    return procs


def supervisord_config(procs: list[Process], run_dir: Path, logs: Path) -> str:
    """supervisord.conf for the programs: restart on death, logs in var/logs, a private socket."""
    lines = [
        "; Generated by `flask up` on every start; edits are overwritten.",
        "[supervisord]",
        "nodaemon=true",
        f"logfile={logs / 'supervisord.log'}",
        f"pidfile={run_dir / 'supervisord.pid'}",
        f"directory={PROJECT_ROOT}",
        "logfile_maxbytes=10MB",
        "",
        "[unix_http_server]",
        f"file={run_dir / 'supervisord.sock'}",
        "chmod=0700",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "",
        "[supervisorctl]",
        f"serverurl=unix://{run_dir / 'supervisord.sock'}",
    ]
    for proc in procs:
        lines += [
            "",
            f"[program:{proc.name}]",
            "command=" + " ".join(_quoted(arg) for arg in proc.argv),
            f"directory={PROJECT_ROOT}",
            f"priority={PRIORITY.get(proc.name, 60)}",
            "autostart=true",
            "autorestart=true",
            "startsecs=1",
            "startretries=1000",  # a failing start is retried with a growing delay
            "stopsignal=TERM",
            f"stopwaitsecs={proc.stop_seconds}",
            "stopasgroup=true",
            "killasgroup=true",
            "redirect_stderr=true",
            f"stdout_logfile={logs / (proc.name + '.log')}",
            "stdout_logfile_maxbytes=20MB",
            "stdout_logfile_backups=3",
        ]
    return "\n".join(lines) + "\n"


def _quoted(arg: str) -> str:
    """An argument as supervisord's shlex-style command line reads it."""
    if arg and all(c.isalnum() or c in "-_./:=@,%+" for c in arg):
        return arg
    return "'" + arg.replace("'", "'\"'\"'") + "'"


def run_stack(demo: bool = True) -> None:
    """Start everything under supervisord, print the URL and the first login, wait for Ctrl-C,
    stop everything."""
    settings = current_settings().system
    var = Path(current_app.config["VAR_DIR"])
    logs, run_dir = var / "logs", var / "run"
    for folder in (logs, run_dir):
        folder.mkdir(parents=True, exist_ok=True)
    procs = programs(settings, current_app.config["REDIS_URL"], var)
    config = run_dir / "supervisord.conf"
    config.write_text(supervisord_config(procs, run_dir, logs))  # var/ is 0700
    stopping = {"now": False}

    def _stop(*_):
        stopping["now"] = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    click.echo("Starting BTC Watcher under supervisord:")
    for proc in procs:
        click.echo(f"  {proc.name:11} log {logs / (proc.name + '.log')}")
    manager = subprocess.Popen(  # noqa: S603 - our own config
        [str(BIN / "supervisord"), "-c", str(config)], cwd=PROJECT_ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        admin_line = _first_admin()
        placement.publish_sources()  # supervisors on other hosts take the files from here
        url = f"http://127.0.0.1:{settings.web.port}"
        ready = _wait_http(f"{url}/health", 60)
        if demo and settings.simulator.enabled:
            click.echo(demo_strategies.seed_and_start())
        click.echo("")
        click.echo(f"BTC Watcher is {'up' if ready else 'starting (health not green yet)'}: {url}")
        if admin_line:
            click.echo(admin_line)
        click.echo(f"Processes: {BIN / 'supervisorctl'} -c {config} status")
        click.echo("Press Ctrl-C to stop everything.")
        while not stopping["now"] and manager.poll() is None:
            time.sleep(0.5)
        if manager.poll() is not None:
            click.echo(f"supervisord exited with {manager.returncode}; see {logs}")
    finally:
        click.echo("Stopping…")
        if manager.poll() is None:
            manager.send_signal(signal.SIGTERM)  # stops the programs in reverse order
            try:
                manager.wait(max(p.stop_seconds for p in procs) + 15)
            except subprocess.TimeoutExpired:
                manager.kill()
        _stop_zygote()
        click.echo("Stopped.")


def _stop_zygote() -> None:
    """Stop the bot zygote the supervisor left behind (the fork launcher's, if any).

    A supervisor leaves its zygote running for a while after it exits, for a supervisor that
    restarts; `flask up` stops the supervisor for good, so nothing must linger.
    """
    try:
        pid = launcher.stop_zygote(paths.resolve_path("var/run"), timeout=5)
    except Exception as exc:  # noqa: BLE001 - shutdown goes on whatever happens
        click.echo(f"  could not stop the bot zygote: {exc}")
        return
    if pid:
        click.echo(f"  stopped the bot zygote (pid {pid})")
