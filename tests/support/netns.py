"""Separate hosts for tests: Linux network namespaces, each joined to this one by a veth pair.

Namespace `i` gets 10.231.<n>.2/24 on its side and this namespace 10.231.<n>.1/24 on ours (a
subnet nobody on the machine uses); its own loopback is up and private to it. Processes run in
it with `ip netns exec`. Everything is removed by `remove()` (the fixtures call it). Needs root.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True,  # noqa: S603,S607
                          timeout=20)


def available() -> str:
    """"" when namespaces can be made here, else why not."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if not Path("/usr/sbin/ip").exists() and not Path("/sbin/ip").exists():
        return "iproute2 (ip) is not installed"
    return ""


def _free_subnet() -> int:
    used = _ip("-o", "-4", "addr").stdout
    for n in range(10 + os.getpid() % 200, 255):
        if f"10.231.{n}." not in used:
            return n
    raise RuntimeError("no free 10.231.x.0/24 subnet for a test namespace")


class Namespace:
    """One test host: a network namespace and the veth pair to it."""

    def __init__(self, label: str):
        self.subnet = _free_subnet()
        self.name = f"btcw-{label}-{os.getpid()}"
        tag = f"{self.subnet}{os.getpid() % 1000}"
        self.outer, self.inner = f"bwo{tag}"[:15], f"bwi{tag}"[:15]
        self.gateway = f"10.231.{self.subnet}.1"  # our side: the shared servers listen here
        self.address = f"10.231.{self.subnet}.2"  # the host's own address

    def create(self) -> Namespace:
        _ip("netns", "add", self.name)
        _ip("link", "add", self.outer, "type", "veth", "peer", "name", self.inner)
        _ip("link", "set", self.inner, "netns", self.name)
        _ip("addr", "add", f"{self.gateway}/24", "dev", self.outer)
        _ip("link", "set", self.outer, "up")
        inside = ("netns", "exec", self.name, "ip")
        _ip(*inside, "addr", "add", f"{self.address}/24", "dev", self.inner)
        _ip(*inside, "link", "set", self.inner, "up")
        _ip(*inside, "link", "set", "lo", "up")
        _ip(*inside, "route", "add", "default", "via", self.gateway)
        return self

    def argv(self, *command: str) -> list[str]:
        """`command` run inside the namespace."""
        return ["ip", "netns", "exec", self.name, *command]

    def cut(self) -> None:
        """The host drops off the network (its processes keep running)."""
        _ip("link", "set", self.outer, "down")

    def mend(self) -> None:
        _ip("link", "set", self.outer, "up")

    def remove(self) -> None:
        pids = _ip("netns", "pids", self.name, check=False).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), 9)
            except (ProcessLookupError, ValueError):
                pass
        _ip("link", "del", self.outer, check=False)
        _ip("netns", "del", self.name, check=False)
