"""Real proxy servers from Debian's packages for the tests: tinyproxy (HTTP) and microsocks
(SOCKS5), on free loopback ports, killed after."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.servers import free_port, wait_port


class TinyProxy:
    """Debian's tinyproxy in the foreground on a free loopback port (optional Basic auth)."""

    def __init__(self, folder: Path, auth: tuple[str, str] | None = None,
                 bind: str | None = None):
        self.port = free_port()
        self.log = folder / f"tinyproxy-{self.port}.log"
        self.conf = folder / f"tinyproxy-{self.port}.conf"
        lines = [f"Port {self.port}", "Listen 127.0.0.1", "Timeout 10", "MaxClients 20",
                 f"LogFile \"{self.log}\"", "LogLevel Info", "Allow 127.0.0.1",
                 f"PidFile \"{folder / f'tinyproxy-{self.port}.pid'}\""]
        if auth:
            lines.append(f"BasicAuth {auth[0]} {auth[1]}")
        if bind:  # the address its outgoing connections come from (another "IP" to the exchange)
            lines.append(f"Bind {bind}")
        self.conf.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen | None = None

    def start(self) -> TinyProxy:
        self.proc = _serve("tinyproxy", ["-d", "-c", str(self.conf)], self.port)
        return self

    def stop(self) -> None:
        _kill(self.proc)


class MicroSocks:
    """Debian's microsocks (SOCKS5) on a free loopback port."""

    def __init__(self, bind: str | None = None):
        self.port = free_port()
        self.bind = bind  # the address its outgoing connections come from
        self.proc: subprocess.Popen | None = None

    def start(self) -> MicroSocks:
        argv = ["-i", "127.0.0.1", "-p", str(self.port)] + (["-b", self.bind] if self.bind else [])
        self.proc = _serve("microsocks", argv, self.port)
        return self

    def stop(self) -> None:
        _kill(self.proc)


def _serve(name: str, argv: list[str], port: int) -> subprocess.Popen:
    """Start a Debian proxy binary and wait until it listens on `port`."""
    binary = shutil.which(name) or f"/usr/bin/{name}"
    if not Path(binary).exists():
        pytest.fail(f"{name} is not installed (make test-packages installs it)")
    proc = subprocess.Popen([binary, *argv], stdout=subprocess.DEVNULL,  # noqa: S603
                            stderr=subprocess.DEVNULL)
    wait_port(port, 10)
    return proc


def _kill(proc: subprocess.Popen | None) -> None:
    if proc and proc.poll() is None:
        proc.kill()
        proc.wait(5)
