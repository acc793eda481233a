"""Delivery through real RQ workers (`flask worker notifications` subprocesses): retries with
backoff on the worker's scheduler, and a worker SIGKILLed mid-send while the receiver holds the
request — the job re-run never sends a second time."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from rq.job import Job

from app.extensions import db, redis_store
from app.notifications import dispatcher, service
from app.notifications.models import DeliveryAttempt, NotificationDelivery
from config import yaml_io
from config.loader import load_settings

# Depends on the database dialect: runs on SQLite and on PostgreSQL.
pytestmark = pytest.mark.both_databases

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


class WorkerProcess:
    """`flask worker notifications` in its own process group (worker + work horse)."""

    def __init__(self, env: dict[str, str], log_path: Path):
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    def start(self) -> WorkerProcess:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(  # noqa: S603
                [str(BIN / "flask"), "--app", "app", "worker", "notifications"],
                cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def kill(self) -> None:
        """SIGKILL the worker, its work horse and its scheduler at once (RQ puts the horse in
        a session of its own, so the process group alone would miss it)."""
        if self.proc and self.proc.poll() is None:
            family = psutil.Process(self.proc.pid).children(recursive=True)
            os.killpg(self.proc.pid, signal.SIGKILL)
            for child in family:
                try:
                    child.kill()
                except psutil.NoSuchProcess:
                    pass
            self.proc.wait(10)
            psutil.wait_procs(family, timeout=10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]


@pytest.fixture
def worker_world(app, app_config, config_dir, var_dir, tmp_path, http_receiver):
    """A config folder whose notifications.yml sends P0 to a webhook on the receiver at any
    hour; this process uses it too. Yields (env for a worker subprocess, log path)."""
    folder = tmp_path / "config"
    folder.mkdir()
    for name in ("system.yml", "proxy.yml"):
        (folder / name).write_text((config_dir / name).read_text())
    section = {
        "channels": {"inbox": {"type": "inbox"},
                     "hook": {"type": "webhook", "webhook_url": f"{http_receiver.url}/hook",
                              "timeout": 3, "retry_backoff": 0.5, "max_attempts": 5}},
        "priorities": {"P0": {"name": "Immediate", "delay_seconds": 0, "channels": ["hook"]}},
        "time_slots": {"always": {"start_time": "00:00", "end_time": "00:00",
                                  "enabled_priorities": ["P0", "P1", "P2"],
                                  "enabled_channels": ["all"]}},
    }
    (folder / "notifications.yml").write_text(yaml_io.dump({"notifications": section}))
    holder = app.extensions["btcw_settings"]
    original = holder.settings
    holder.settings = load_settings(folder)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FREQTRADE__")}
    env.update({"DATABASE_URL": app_config["SQLALCHEMY_DATABASE_URI"],
                "REDIS_URL": app_config["REDIS_URL"], "BTCW_CONFIG_DIR": str(folder),
                "BTCW_VAR_DIR": str(var_dir), "SECRET_KEY": "worker-test-secret",
                "PYTHONUNBUFFERED": "1"})
    yield env, tmp_path / "worker.log"
    holder.settings = original


def _wait(predicate, timeout: float, what: str, worker: WorkerProcess | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        db.session.rollback()  # see the other process's commits
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}" +
                         (f"\nworker log:\n{worker.log()}" if worker else ""))


def _hook_delivery(notification) -> NotificationDelivery:
    return next(d for d in notification.deliveries if d.channel == "hook")


def test_real_worker_retries_500_twice_then_sends_once(worker_world, http_receiver,
                                                       make_signal):
    env, log = worker_world
    http_receiver.reply(500, "boom", {"Content-Type": "text/plain"})
    http_receiver.reply(500, "boom", {"Content-Type": "text/plain"})
    notification = service.notify_signal(make_signal("BTC/USDT", "P0").id)
    delivery_id = _hook_delivery(notification).id
    worker = WorkerProcess(env, log).start()
    try:
        delivery = _wait(lambda: (d := db.session.get(NotificationDelivery, delivery_id))
                         and d.status == "sent" and d, 60, "the delivery to be sent", worker)
    finally:
        worker.stop()
    assert delivery.attempts == 3
    assert [a.outcome for a in delivery.attempt_log] == ["error", "error", "ok"]
    assert len(http_receiver.requests) == 3
    gaps = [b.at - a.at for a, b in zip(http_receiver.requests, http_receiver.requests[1:],
                                        strict=False)]
    assert gaps[0] >= 0.5 and gaps[1] >= 1.0, f"exponential backoff: {gaps}"


def test_worker_killed_mid_send_then_the_job_rerun_sends_exactly_once(
        worker_world, http_receiver, make_signal):
    env, log = worker_world
    http_receiver.hold()
    notification = service.notify_signal(make_signal("ETH/USDT", "P0").id)
    delivery_id = _hook_delivery(notification).id
    first = WorkerProcess(env, log).start()
    try:
        http_receiver.wait_for(1, timeout=60)  # the horse is inside the send, held there
        attempt = _wait(lambda: db.session.query(DeliveryAttempt)
                        .filter_by(delivery_id=delivery_id).one_or_none(), 10,
                        "the write-ahead attempt", first)
        assert attempt.outcome == "sending"
        first.kill()
    finally:
        first.kill()
        http_receiver.release()

    # Re-run the job at once: the lease of the dead worker still holds, nothing is sent.
    queue = redis_store.queue("notifications")
    rerun = queue.enqueue(dispatcher.DELIVER_JOB, delivery_id, job_id="rerun-now")
    second = WorkerProcess(env, log).start()
    try:
        _wait(lambda: Job.fetch(rerun.id, connection=redis_store.client)
              .get_status(refresh=True) == "finished", 60, "the re-run job", second)
        assert "claimed by another worker" in Job.fetch(
            rerun.id, connection=redis_store.client).return_value()
        delivery = db.session.get(NotificationDelivery, delivery_id)
        assert delivery.status == "queued" and len(http_receiver.requests) == 1

        # After the lease: the sweep hands it on, the job finds the interrupted attempt.
        lease_left = (delivery.claimed_until - dispatcher.utcnow()).total_seconds()
        time.sleep(max(lease_left, 0) + 0.5)
        assert service.deliver_due() == 1
        delivery = _wait(lambda: (d := db.session.get(NotificationDelivery, delivery_id))
                         and d.status != "queued" and d, 60, "the second run", second)
        queue.enqueue(dispatcher.DELIVER_JOB, delivery_id, job_id="rerun-late")
        _wait(lambda: Job.fetch("rerun-late", connection=redis_store.client)
              .get_status(refresh=True) == "finished", 60, "the late duplicate", second)
    finally:
        second.stop()
    db.session.rollback()
    delivery = db.session.get(NotificationDelivery, delivery_id)
    assert len(http_receiver.requests) == 1, "exactly one request ever reached the receiver"
    assert delivery.status == "failed" and "outcome unknown" in delivery.last_error
    assert delivery.attempts == 1
    assert [a.outcome for a in delivery.attempt_log] == ["unknown"]
