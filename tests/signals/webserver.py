"""The web app under gunicorn with gevent workers on a free port, for live tests and the bench."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from app.system.stack import gunicorn_flags
from tests.support.servers import free_port, wait_port

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


class GunicornWeb:
    """`gunicorn -k gevent wsgi:web()` (or another entry point of wsgi.py, ready when `ready`
    answers 200) as a subprocess with the given environment."""

    def __init__(self, env: dict[str, str], workers: int = 2, log_path: Path | None = None,
                 port: int | None = None, entry: str = "wsgi:web()", ready: str = "/login",
                 bind: str = "127.0.0.1"):
        self.entry, self.ready, self.bind = entry, ready, bind
        self.port = port or free_port()
        self.env = {k: v for k, v in env.items() if not k.startswith("FREQTRADE__")}
        self.workers = workers
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> GunicornWeb:
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            self.proc = subprocess.Popen(
                [str(BIN / "gunicorn"), "-k", "gevent", "-w", str(self.workers),
                 "--worker-connections", "1000", "-b", f"{self.bind}:{self.port}",
                 "--keep-alive", "30", "--graceful-timeout", "5", "--log-level", "warning",
                 *gunicorn_flags(), self.entry],
                cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            if self.log_path:
                out.close()
        wait_port(self.port, timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:  # the port opens before the workers have booted
            try:
                if requests.get(f"{self.url}{self.ready}", timeout=5).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.proc.returncode}")
            time.sleep(0.2)
        raise TimeoutError(f"{self.entry} did not answer {self.ready}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.proc = None

    def login(self, username: str, password: str) -> requests.Session:
        """A requests session logged in to this server (its cookie also opens /ws/signals)."""
        session = requests.Session()
        page = session.get(f"{self.url}/login", timeout=10).text
        match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page)
        assert match, "login page carries no CSRF token"
        response = session.post(f"{self.url}/login", timeout=10, allow_redirects=False,
                                data={"username": username, "password": password,
                                      "csrf_token": match.group(1)})
        assert response.status_code == 302, response.text[:500]
        return session


def session_web(database_url: str, redis_url: str, config_dir: Path, var_dir: Path,
                log_path: Path, workers: int) -> GunicornWeb:
    """GunicornWeb on the test session's database, Redis, config and var folders (started)."""
    env = dict(os.environ)
    env.update({"DATABASE_URL": database_url, "REDIS_URL": redis_url,
                "BTCW_CONFIG_DIR": str(config_dir), "BTCW_VAR_DIR": str(var_dir),
                "SECRET_KEY": "test-secret-key-not-for-production"})
    return GunicornWeb(env, workers=workers, log_path=log_path).start()
