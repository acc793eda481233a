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

    def __init__(self, folder: Path, auth: tuple[str, str] | None = None):
        self.port = free_port()
        self.log = folder / f"tinyproxy-{self.port}.log"
        self.conf = folder / f"tinyproxy-{self.port}.conf"
        lines = [f"Port {self.port}", "Listen 127.0.0.1", "Timeout 10", "MaxClients 20",
                 f"LogFile \"{self.log}\"", "LogLevel Info", "Allow 127.0.0.1",
                 f"PidFile \"{folder / f'tinyproxy-{self.port}.pid'}\""]
        if auth:
            lines.append(f"BasicAuth {auth[0]} {auth[1]}")
        self.conf.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen | None = None

    def start(self) -> TinyProxy:
        binary = shutil.which("tinyproxy") or "/usr/bin/tinyproxy"
        if not Path(binary).exists():
            pytest.fail("tinyproxy is not installed (make test-packages installs it)")
        self.proc = subprocess.Popen([binary, "-d", "-c", str(self.conf)],  # noqa: S603
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port, 10)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


class MicroSocks:
    """Debian's microsocks (SOCKS5) on a free loopback port."""

    def __init__(self):
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def start(self) -> MicroSocks:
        binary = shutil.which("microsocks") or "/usr/bin/microsocks"
        if not Path(binary).exists():
            pytest.fail("microsocks is not installed (make test-packages installs it)")
        self.proc = subprocess.Popen([binary, "-i", "127.0.0.1", "-p", str(self.port)],  # noqa: S603
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port, 10)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
