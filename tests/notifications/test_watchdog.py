"""The control plane watches itself: a dead RQ worker raises a P0 alert that reaches the
configured immediate channel while no worker exists, its return is alerted, several watchers
raise one alert, and the jobs a SIGKILLed worker was running are retried or failed visibly.

Real `flask worker` and `flask cron run` processes, killed with SIGKILL; the webhook goes to a
real HTTP receiver on loopback.
"""

from __future__ import annotations

import subprocess

from rq import Retry
from rq.job import Job
from sqlalchemy import select

from app.extensions import db, redis_store
from app.monitoring import rq_status
from app.monitoring.models import Alert, SystemPart
from app.monitoring.watchdog import KIND_BACK, KIND_DOWN, Watchdog
from app.notifications.models import Notification, NotificationDelivery
from config import yaml_io
from tests.support.workers import BIN, ROOT, WorkerProcess, wait_for


def _part_alerts(kind: str, part: str = "workers") -> list[Alert]:
    db.session.rollback()
    return list(db.session.scalars(select(Alert).where(Alert.kind == kind, Alert.source == part)
                                   .order_by(Alert.id)))


def _hook_of(alert: Alert) -> NotificationDelivery:
    notification = db.session.scalar(select(Notification).where(Notification.alert_id == alert.id))
    assert notification is not None, f"alert {alert.id} was not notified"
    assert notification.priority == "P0"
    return next(d for d in notification.deliveries if d.channel == "hook")


def _sent(alert: Alert) -> bool:
    """The alert's webhook delivery was sent (False while it is not even decided yet)."""
    if db.session.scalar(select(Notification).where(Notification.alert_id == alert.id)) is None:
        return False
    return _hook_of(alert).status == "sent"


def _workers_live(expected: bool) -> bool:
    return bool(rq_status.live_workers()) == expected


def test_a_dead_worker_is_alerted_without_a_worker_and_its_return_too(
        worker_world, http_receiver, system_settings):
    env, log = worker_world
    settings = system_settings("monitoring", part_down_alert_after=0.0)
    assert settings.system.monitoring.part_down_alert_after == 0.0
    cron_dog, supervisor_dog = Watchdog("cron"), Watchdog("supervisor")
    worker = WorkerProcess(env, log).start()
    try:
        wait_for(lambda: _workers_live(True), 30, "the worker to register", worker)
        cron_dog.run()
        assert not _part_alerts(KIND_DOWN), "a live worker raised an alert"

        worker.kill()
        assert _workers_live(False)
        raised = cron_dog.run()
        assert [a.source for a in raised if a.kind == KIND_DOWN].count("workers") == 1
        assert all(a.source != "workers" for a in supervisor_dog.run())
        down = _part_alerts(KIND_DOWN)
        assert len(down) == 1, "two watchers raised one alert"
        assert down[0].severity == "critical" and "RQ workers are not working" in down[0].message
        hook = _hook_of(down[0])
        assert hook.status == "sent", (hook.status, hook.last_error)
        assert _workers_live(False), "delivered while no worker runs"
        bodies = [r.body.decode() for r in http_receiver.requests]
        assert any("RQ workers are not working" in b for b in bodies), bodies
        assert db.session.get(SystemPart, "workers").status == "down"

        worker = WorkerProcess(env, log).start()
        wait_for(lambda: _workers_live(True), 30, "the worker to come back", worker)
        cron_dog.run()
        supervisor_dog.run()
        back = _part_alerts(KIND_BACK)
        assert len(back) == 1 and "working again after" in back[0].message
        assert _hook_of(back[0]).status == "sent"
        assert _part_alerts(KIND_DOWN)[0].resolved_at is not None
        assert db.session.get(SystemPart, "workers").status == "up"
    finally:
        worker.stop()
    assert len(_part_alerts(KIND_DOWN)) == 1, "no second alert for the same death"


def test_the_cron_process_raises_and_delivers_the_alert_itself(worker_world, http_receiver):
    """No worker at all: only the cron process's own watchdog can have sent it."""
    env, log = worker_world
    system = f"{env['BTCW_CONFIG_DIR']}/system.yml"
    data = yaml_io.load(open(system).read())
    data["system"].setdefault("monitoring", {})["part_down_alert_after"] = 0.5
    with open(system, "w") as handle:
        handle.write(yaml_io.dump(data))
    with open(log, "ab") as out:
        cron = subprocess.Popen([str(BIN / "flask"), "--app", "app", "cron", "run"],  # noqa: S603
                                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        alert = wait_for(lambda: next(iter(_part_alerts(KIND_DOWN)), None), 40,
                      "the cron's watchdog to raise the workers alert")
        wait_for(lambda: _sent(alert), 20, "the P0 to reach the webhook")
        assert not rq_status.live_workers()
    finally:
        cron.terminate()
        cron.wait(15)
    assert any("RQ workers are not working" in r.body.decode() for r in http_receiver.requests)


def _status(job_id: str) -> str:
    return str(Job.fetch(job_id, connection=redis_store.client).get_status(refresh=True).value)


def test_jobs_of_a_killed_worker_are_retried_or_failed_visibly(worker_world):
    env, log = worker_world
    queue = redis_store.queue("notifications")
    queue.enqueue("time.sleep", 4, job_id="with-retries", retry=Retry(max=2), job_timeout=60)
    worker = WorkerProcess(env, log).start()
    try:
        wait_for(lambda: _status("with-retries") == "started", 30, "the job to start", worker)
        worker.kill()
        assert rq_status.recover_abandoned_jobs() == ["with-retries"]
        assert _status("with-retries") == "queued", "retried: back in the queue"
        assert queue.started_job_registry.count == 0

        worker = WorkerProcess(env, log).start()
        wait_for(lambda: _status("with-retries") == "finished", 30, "the retried job", worker)

        queue.enqueue("time.sleep", 30, job_id="no-retries", job_timeout=60)
        wait_for(lambda: _status("no-retries") == "started", 30, "the second job", worker)
        assert rq_status.recover_abandoned_jobs() == [], "a live worker's job is left alone"
        worker.kill()
        assert rq_status.recover_abandoned_jobs() == ["no-retries"]
    finally:
        worker.stop()
    assert _status("no-retries") == "failed"
    assert "no-retries" in queue.failed_job_registry.get_job_ids()
    failure = Job.fetch("no-retries", connection=redis_store.client).latest_result()
    assert failure is not None and "AbandonedJobError" in (failure.exc_string or "")
    assert queue.started_job_registry.count == 0
