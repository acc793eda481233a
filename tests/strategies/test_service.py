"""Service pieces that the pages and the API lean on: process figures, log tails."""

from __future__ import annotations

import os
import time
from datetime import timedelta

from app.clock import utcnow
from app.extensions import db, redis_store
from app.monitoring import bot_usage
from app.strategies import service
from app.strategies.models import Strategy


def _running_here(strategy: Strategy, pid: int | None = None) -> Strategy:
    """The strategy as if its bot ran on this machine as `pid` (this test process)."""
    strategy.status, strategy.desired_state = "running", "running"
    strategy.pid, strategy.port, strategy.host = pid or os.getpid(), 18123, "127.0.0.1"
    strategy.started_at = utcnow() - timedelta(minutes=3)
    db.session.commit()
    return strategy


def _without_uptime(process: dict) -> dict:
    return {k: v for k, v in process.items() if k != "uptime_seconds"}


def test_process_figures_are_the_monitoring_measurement(app, strategy):
    _running_here(strategy)
    before = service.process_of(strategy)
    assert before["pid"] == os.getpid() and 175 <= before["uptime_seconds"] <= 200
    # No measurement yet: unknown, not 0.
    assert before["cpu_percent"] is None and before["memory_pss"] is None
    assert before["measured_at"] is None

    busy_until = time.process_time() + 0.2
    while time.process_time() < busy_until:
        pass
    measured = bot_usage.measure_bots()  # what the status sweep does every 30 s
    figures = service.process_of(strategy)
    mine = next(p for p in measured["processes"] if p["strategy_id"] == strategy.id)
    assert figures["cpu_percent"] == mine["cpu_percent"] > 0
    assert figures["memory_pss"] == mine["pss"] and figures["memory_rss"] == mine["rss"]
    assert figures["memory_rss"] > 10 * 1024 * 1024 and figures["measured_at"].endswith("Z")
    # Every web worker reads the same stored figures: no per-process CPU state. (The uptime is
    # counted at each read, so a second may tick between two of them.)
    for shown in (service.process_of(strategy), service.list_rows([strategy])[0]["process"],
                  service.overview()["strategies"][0]["process"],
                  service.detailed_status(strategy.id)["process"]):
        assert _without_uptime(shown) == _without_uptime(figures)
        assert 0 <= shown["uptime_seconds"] - figures["uptime_seconds"] <= 2


def test_no_figures_for_a_stopped_bot_or_another_process(app, strategy):
    assert service.process_of(strategy) is None  # stopped
    _running_here(strategy)
    bot_usage.measure_bots()
    assert service.process_of(strategy)["cpu_percent"] is not None
    strategy.pid = os.getpid() + 2**22  # restarted: the stored figures are of the old pid
    db.session.commit()
    assert service.process_of(strategy)["memory_pss"] is None
    redis_store.client.delete(bot_usage.USAGE_KEY.format(id=strategy.id))
    strategy.pid = os.getpid()
    db.session.commit()
    assert service.process_of(strategy)["cpu_percent"] is None  # expired


def test_cpu_percent_is_measured_over_a_real_window():
    created, now = 1000.0, 2000.0
    # First measurement: the lifetime average.
    cpu, baseline = bot_usage._cpu_since(None, 50.0, now, created)
    assert cpu == 5.0 and baseline == (50.0, now, 5.0)
    # 30 s later (the next sweep): 6 CPU seconds in 30 s.
    cpu, later = bot_usage._cpu_since(baseline, 56.0, now + 30, created)
    assert cpu == 20.0 and later == (56.0, now + 30, 20.0)
    # A page measuring 4 s after that: measured over those 4 s, the baseline is kept.
    cpu, kept = bot_usage._cpu_since(later, 57.0, now + 34, created)
    assert cpu == 25.0 and kept[:2] == (56.0, now + 30)
    # Within a second of the baseline: the last figure again, not a lifetime average or 0.
    cpu, _ = bot_usage._cpu_since(kept, 57.0, now + 30.5, created)
    assert cpu == 25.0


def test_mebibytes_is_the_one_memory_format(app):
    from flask import render_template_string

    from app.rendering import mebibytes

    assert mebibytes(344_064_000) == "328 MiB"
    assert mebibytes(5 * 1024**3) == "5,120 MiB"
    assert mebibytes(None) == "—"
    assert render_template_string("{{ 250000000 | mib }}") == "238 MiB"


def test_tail_file_reads_backwards_across_blocks(tmp_path):
    path = tmp_path / "bot.log"
    path.write_text("".join(f"line {i} " + "x" * 200 + "\n" for i in range(2000)))
    lines = service.tail_file(path, 700, block=4096)
    assert len(lines) == 700
    assert lines[0].startswith("line 1300 ") and lines[-1].startswith("line 1999 ")
    assert service.tail_file(tmp_path / "missing.log", 10) == []
