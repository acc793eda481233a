"""The periodic monitoring jobs: in the one table, at configured intervals, run through RQ."""

from __future__ import annotations

from datetime import timedelta

from rq import SimpleWorker
from sqlalchemy import select

from app.clock import utcnow
from app.extensions import db, redis_store
from app.monitoring import rq_status, system_status
from app.monitoring.models import Alert, MetricSample
from app.tasks import CLEAR_OF_CANDLE_CLOSE, PERIODIC_JOBS, clear_of_candle_close, interval_of

MINE = {
    "app.tasks.monitoring.sample_system": "system_status_interval",
    "app.tasks.monitoring.sweep_strategies": "strategy_status_interval",
    "app.tasks.monitoring.check_gateway": "gateway_health_interval",
    "app.tasks.monitoring.record_capacity": "capacity_interval",
}


def test_jobs_are_in_the_table_with_configured_intervals(app, monitoring_settings):
    rows = {path: (queue, interval) for path, queue, interval, _ in PERIODIC_JOBS}
    for path, key in MINE.items():
        queue, interval = rows[path]
        assert queue == "monitoring"
        settings = monitoring_settings(**{key: 17})
        assert interval_of(interval, settings) == 17  # a config reload changes the interval


def test_cron_enqueues_and_a_worker_runs_every_monitoring_job(app, monitoring_settings):
    from app.tasks.worker import build_scheduler, enqueue_due

    # The cached host status must outlive this test however slowly a busy machine runs it.
    monitoring_settings(system_status_cache_ttl=900)

    scheduler, _ = build_scheduler()
    scheduler.register_birth()
    try:
        assert {job.name for job in enqueue_due(scheduler)} >= set(MINE)
        worker = SimpleWorker([redis_store.queue("monitoring")], connection=redis_store.client)
        worker.work(burst=True)

        rows = {row["path"]: row for row in rq_status.scheduled_jobs()}
        for path in MINE:
            row = rows[path]
            assert row["last_status"] == "finished", row
            assert row["last_ended"] is not None and row["next_run"] is not None
            after_interval = row["last_enqueued"] + timedelta(seconds=row["interval"])
            if path in CLEAR_OF_CANDLE_CLOSE:  # the status sweep: never in a minute's first 20 s
                assert row["next_run"] >= after_interval
                assert row["next_run"].second >= CLEAR_OF_CANDLE_CLOSE[path]
                assert row["next_run"] - after_interval < timedelta(seconds=21)
            else:
                assert row["next_run"] == after_interval
        assert rq_status.cron_status()["running"] is True
    finally:
        scheduler.register_death()
    kinds = set(db.session.scalars(select(MetricSample.kind)))
    assert "capacity" in kinds
    assert system_status.current_status()["cached"] is True
    # No gateway runs in the tests: the gateway job raised one critical alert.
    gateway = db.session.scalars(select(Alert).where(Alert.kind == "gateway_health")).all()
    assert len(gateway) == 1 and gateway[0].severity == "critical"


def test_gateway_alert_fires_once_per_crossing(app):
    from app.monitoring.gateway_status import check_gateway

    for _ in range(3):
        health = check_gateway()
    assert health["alert_level"] == "critical"
    assert db.session.scalar(select(db.func.count(Alert.id)).where(
        Alert.kind == "gateway_health")) == 1


def test_host_history_is_downsampled_to_five_minutes(app):
    bucket = 1_800_000_000 // 300 * 300  # a 5-minute boundary
    ring = [{"t": bucket - 300 + i * 30, "cpu_percent": 10.0 + i, "memory_percent": 50.0,
             "disk_percent": 20.0, "net_recv_rate": 100.0, "net_sent_rate": 50.0,
             "load_1m": 0.5} for i in range(10)]
    sample = {"timestamp": bucket + 5, "memory_total": 1, "disk_total": 1, **ring[-1]}
    system_status._keep_history(sample, ring, 30)
    system_status._keep_history({**sample, "timestamp": bucket + 35}, ring, 30)  # same bucket
    rows = db.session.scalars(select(MetricSample).where(MetricSample.kind == "system")).all()
    assert len(rows) == 1
    assert rows[0].data["samples"] == 10 and rows[0].data["cpu_percent"] == 14.5


def test_old_host_history_is_pruned(app):
    db.session.add(MetricSample(kind="system", recorded_at=utcnow() - timedelta(days=8),
                                data={"cpu_percent": 1}))
    db.session.commit()
    ring = []
    now = 1_800_000_000 // 300 * 300 + 1
    system_status._keep_history({"timestamp": now, "memory_total": 1, "disk_total": 1,
                                 "cpu_percent": 3.0}, ring, 30)
    rows = db.session.scalars(select(MetricSample).where(MetricSample.kind == "system")).all()
    assert len(rows) == 1 and rows[0].data["cpu_percent"] == 3.0


def test_the_status_sweep_keeps_clear_of_the_candle_close():
    """Bots analyse their new candle in a minute's first seconds; the sweep starts after that."""
    from datetime import UTC, datetime

    sweep = "app.tasks.monitoring.sweep_strategies"
    at = datetime(2026, 12, 7, 3, 15, 4, 500_000, tzinfo=UTC)
    assert clear_of_candle_close(sweep, at) == datetime(2026, 12, 7, 3, 15, 20, tzinfo=UTC)
    later = at.replace(second=34)
    assert clear_of_candle_close(sweep, later) == later
    assert clear_of_candle_close("app.tasks.signals.sweep_outbox", at) == at
