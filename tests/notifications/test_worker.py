"""Delivery through real RQ workers (`flask worker notifications` subprocesses): retries with
backoff on the worker's scheduler, and a worker SIGKILLed mid-send while the receiver holds the
request — the job re-run never sends a second time."""

from __future__ import annotations

import time

import pytest
from rq.job import Job

from app.extensions import db, redis_store
from app.notifications import dispatcher, service
from app.notifications.models import DeliveryAttempt, NotificationDelivery
from tests.support.workers import WorkerProcess, wait_for

# Depends on the database dialect: runs on SQLite and on PostgreSQL.
pytestmark = pytest.mark.both_databases


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
        delivery = wait_for(lambda: (d := db.session.get(NotificationDelivery, delivery_id))
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
        http_receiver.wait_for(1, timeout=60)  # the worker is inside the send, held there
        attempt = wait_for(lambda: db.session.query(DeliveryAttempt)
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
        wait_for(lambda: Job.fetch(rerun.id, connection=redis_store.client)
              .get_status(refresh=True) == "finished", 60, "the re-run job", second)
        assert "claimed by another worker" in Job.fetch(
            rerun.id, connection=redis_store.client).return_value()
        delivery = db.session.get(NotificationDelivery, delivery_id)
        assert delivery.status == "queued" and len(http_receiver.requests) == 1

        # After the lease: the sweep hands it on, the job finds the interrupted attempt.
        lease_left = (delivery.claimed_until - dispatcher.utcnow()).total_seconds()
        time.sleep(max(lease_left, 0) + 0.5)
        assert service.deliver_due() == 1
        delivery = wait_for(lambda: (d := db.session.get(NotificationDelivery, delivery_id))
                         and d.status != "queued" and d, 60, "the second run", second)
        queue.enqueue(dispatcher.DELIVER_JOB, delivery_id, job_id="rerun-late")
        wait_for(lambda: Job.fetch("rerun-late", connection=redis_store.client)
              .get_status(refresh=True) == "finished", 60, "the late duplicate", second)
    finally:
        second.stop()
    db.session.rollback()
    delivery = db.session.get(NotificationDelivery, delivery_id)
    assert len(http_receiver.requests) == 1, "exactly one request ever reached the receiver"
    assert delivery.status == "failed" and "outcome unknown" in delivery.last_error
    assert delivery.attempts == 1
    assert [a.outcome for a in delivery.attempt_log] == ["unknown"]
