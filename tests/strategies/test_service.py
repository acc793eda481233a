"""Service pieces that the pages and the API lean on: process figures, log tails."""

from __future__ import annotations

import os
import time

from app.strategies import service
from app.strategies.models import Strategy


def test_process_snapshot_of_a_local_process(app):
    strategy = Strategy(pid=os.getpid(), host="127.0.0.1")
    first = service.process_snapshot(strategy)
    assert first["pid"] == os.getpid()
    assert first["memory_rss"] > 10 * 1024 * 1024 and first["memory_mb"] > 10
    assert first["uptime_seconds"] >= 0 and first["cpu_percent"] >= 0
    busy_until = time.process_time() + 0.2  # some CPU time between the two samples
    while time.process_time() < busy_until:
        pass
    second = service.process_snapshot(strategy)
    assert second["cpu_percent"] > 0


def test_no_process_figures_for_a_bot_on_another_host_or_a_gone_pid(app):
    assert service.process_snapshot(Strategy(pid=os.getpid(), host="10.255.255.254")) is None
    assert service.process_snapshot(Strategy(pid=None, host="127.0.0.1")) is None
    assert service.process_snapshot(Strategy(pid=2**22 + 12345, host="127.0.0.1")) is None
    assert service.is_local_host("127.0.0.2") and service.is_local_host(None)


def test_tail_file_reads_backwards_across_blocks(tmp_path):
    path = tmp_path / "bot.log"
    path.write_text("".join(f"line {i} " + "x" * 200 + "\n" for i in range(2000)))
    lines = service.tail_file(path, 700, block=4096)
    assert len(lines) == 700
    assert lines[0].startswith("line 1300 ") and lines[-1].startswith("line 1999 ")
    assert service.tail_file(tmp_path / "missing.log", 10) == []
