"""The RQ worker and the cron scheduler, both started through flask commands (app context)."""

from __future__ import annotations

import logging
import signal
import time

from flask import Flask
from redis.exceptions import RedisError
from rq import SimpleWorker
from rq.cron import CronScheduler

from app.extensions import db, redis_store
from app.monitoring.watchdog import Watchdog
from app.system.settings import current_settings, refresh_if_changed
from app.tasks import PERIODIC_JOBS, clear_of_candle_close, interval_of

log = logging.getLogger(__name__)


class AppWorker(SimpleWorker):
    """The RQ worker: each job runs in the worker process itself.

    RQ's default forks a work horse per job; a fork of this app costs about 80 ms, which capped
    notification decisions at ~10 a second (measured: 200 notify jobs in 19.5 s forking,
    1000 in 14.9 s in-process — bench/chaos.py's 50 signals/s needs more than 10). Job timeouts
    still hold (RQ's SIGALRM death penalty in the main thread). What a fork gave for free is
    done here: settings saved meanwhile are picked up before each job and the database session
    is dropped after it. A worker killed mid-job leaves the job to the watchdog, which hands it
    back to RQ (retried or failed visibly; app/monitoring/rq_status.recover_abandoned_jobs).
    """

    def perform_job(self, job, queue, *args, **kwargs):
        # rq 3 passes the execution too; keep the signature open.
        refresh_if_changed()
        try:
            return super().perform_job(job, queue, *args, **kwargs)
        finally:
            db.session.remove()  # no transaction or stale row outlives the job


def run_worker(queue_names: list[str], burst: bool = False) -> None:
    """Run a worker on these queues (all when empty) until stopped."""
    queues = [redis_store.queue(n) for n in queue_names] if queue_names else redis_store.queues()
    worker = AppWorker(queues, connection=redis_store.client)
    worker.work(burst=burst, with_scheduler=True, logging_level="INFO")


def _resolve(path: str):
    module, _, name = path.rpartition(".")
    mod = __import__(module, fromlist=[name])
    return getattr(mod, name)


def schedule_signature() -> tuple:
    """(job, interval) pairs as the current settings ask for them."""
    settings = current_settings()
    return tuple((path, interval_of(interval, settings)) for path, _, interval, _ in PERIODIC_JOBS)


def build_scheduler() -> tuple[CronScheduler, tuple]:
    """A CronScheduler with every row of PERIODIC_JOBS at the configured intervals."""
    settings = current_settings()
    scheduler = CronScheduler(connection=redis_store.client, name="btcw-cron")
    for path, queue, interval, timeout in PERIODIC_JOBS:
        scheduler.register(_resolve(path), queue_name=queue,
                           interval=interval_of(interval, settings), job_timeout=timeout,
                           name=path)
    return scheduler, schedule_signature()


def enqueue_due(scheduler: CronScheduler) -> list:
    """Enqueue the jobs that are due, keep the next runs of CLEAR_OF_CANDLE_CLOSE jobs clear of
    the minute's candle close, and save the schedule; the enqueued cron jobs."""
    enqueued = scheduler.enqueue_jobs()
    if enqueued:
        for job in enqueued:
            if job.next_enqueue_time is not None:
                job.next_enqueue_time = clear_of_candle_close(job.name, job.next_enqueue_time)
        scheduler.save()
    return enqueued


def run_cron(app: Flask, max_seconds: float | None = None) -> None:
    """Enqueue periodic jobs when due; rebuild the table when a config reload changes intervals.

    The loop also runs the watchdog (alerts about dead workers and supervisors, delivered from
    here because the worker may be the dead part) and rides out a Redis restart."""
    stop = {"now": False}

    def _stop(*_):
        stop["now"] = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    watchdog = Watchdog(watcher="cron")
    scheduler, signature = None, None
    started = time.monotonic()
    try:
        while not stop["now"]:
            sleep = 1.0
            try:
                refresh_if_changed()
                if scheduler is None or schedule_signature() != signature:
                    if scheduler is not None:
                        log.info("periodic job intervals changed, rebuilding the schedule")
                        scheduler.register_death()
                    scheduler, signature = build_scheduler()
                    scheduler.register_birth()
                enqueue_due(scheduler)
                scheduler.heartbeat()
                sleep = min(max(scheduler.calculate_sleep_interval(), 0.2), 1.0)
            except RedisError as exc:
                log.warning("cron: Redis unavailable (%s); retrying", exc)
            try:
                watchdog.maybe_run()
            except Exception:
                log.exception("cron: the watchdog pass failed; continuing")
                db.session.rollback()
            if max_seconds is not None and time.monotonic() - started > max_seconds:
                break
            time.sleep(sleep)
    finally:
        if scheduler is not None:
            try:
                scheduler.register_death()
            except RedisError:
                pass
