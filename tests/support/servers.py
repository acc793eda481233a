"""Real Redis and PostgreSQL servers on loopback for tests and benchmarks, started and stopped here."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_RESERVED: list[socket.socket] = []


RESERVED_HOST = "127.0.0.2"  # loopback too, but no test server binds here


def reserved_port() -> int:
    """A port on RESERVED_HOST held for the rest of this process — bound, never listening —
    for a server the tests configure but never start: connecting is refused at once, and no
    test server (they all bind 127.0.0.1, any port) can answer there instead."""
    s = socket.socket()
    s.bind((RESERVED_HOST, 0))
    _RESERVED.append(s)
    return s.getsockname()[1]


def wait_port(port: int, seconds: float = 15.0, host: str = "127.0.0.1") -> None:
    """Wait until something accepts connections on the port, or raise."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {seconds}s")


def wait_healthy(url: str, seconds: float, proc: subprocess.Popen | None = None) -> bool:
    """Wait until `url`/health answers 200 (False after `seconds`, or as soon as `proc` exits)."""
    import requests

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/health", timeout=2).status_code == 200:
                return True
        except requests.RequestException:
            pass
        if proc is not None and proc.poll() is not None:
            return False
        time.sleep(0.2)
    return False


class RedisServer:
    """redis-server on a free loopback port in a temp folder."""

    def __init__(self, bind: tuple[str, ...] = ("127.0.0.1",)) -> None:
        self.port = free_port()
        self.bind = bind  # more addresses: reachable from test network namespaces
        self.dir = tempfile.mkdtemp(prefix="btcw-redis-")
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        server = shutil.which("redis-server")
        if not server:
            raise RuntimeError("redis-server is not installed (make test installs it)")
        self.proc = subprocess.Popen(  # noqa: S603
            [server, "--port", str(self.port), "--bind", *self.bind, "--protected-mode", "no",
             "--dir", self.dir,
             "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_port(self.port)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def _pg_bin(name: str) -> str:
    for folder in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (folder / name).exists():
            return str(folder / name)
    found = shutil.which(name)
    if not found:
        raise RuntimeError("PostgreSQL server binaries not found (make test installs them)")
    return found


class PostgresServer:
    """A throwaway PostgreSQL cluster on a free loopback port (runs as the postgres user)."""

    def __init__(self, listen: tuple[str, ...] = ("127.0.0.1",)) -> None:
        self.port = free_port()
        self.listen = listen  # more addresses: reachable from test network namespaces
        self.dir = tempfile.mkdtemp(prefix="btcw-pg-")
        self.data = os.path.join(self.dir, "data")
        self.started = False

    def _as_postgres(self, argv: list[str]) -> list[str]:
        if os.geteuid() == 0:
            return ["runuser", "-u", "postgres", "--", *argv]
        return argv

    def url(self, database: str = "btcw") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> PostgresServer:
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        subprocess.run(  # noqa: S603
            self._as_postgres([_pg_bin("initdb"), "-D", self.data, "-U", "postgres",
                               "--auth=trust", "-E", "UTF8", "--no-sync"]),
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        if self.listen != ("127.0.0.1",):
            with open(os.path.join(self.data, "pg_hba.conf"), "a") as hba:
                for address in self.listen:
                    hba.write(f"host all all {address.rsplit('.', 1)[0]}.0/24 trust\n")
        opts = (f"-p {self.port} -k {self.dir} -c listen_addresses={','.join(self.listen)} "
                "-c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300")
        subprocess.run(  # noqa: S603
            self._as_postgres([_pg_bin("pg_ctl"), "-D", self.data, "-o", opts, "-w", "-t", "60",
                               "-l", os.path.join(self.dir, "log"), "start"]),
            check=True, stdout=subprocess.DEVNULL,
        )
        self.started = True
        self.create_database("btcw")
        return self

    def create_database(self, name: str) -> str:
        subprocess.run(  # noqa: S603
            [_pg_bin("createdb") if Path(_pg_bin("createdb")).exists() else "createdb",
             "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name],
            check=True, stdout=subprocess.DEVNULL,
        )
        return self.url(name)

    def stop(self) -> None:
        if self.started:
            subprocess.run(  # noqa: S603
                self._as_postgres([_pg_bin("pg_ctl"), "-D", self.data, "-m", "fast", "-w",
                                   "stop"]),
                check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            self.started = False
        shutil.rmtree(self.dir, ignore_errors=True)
