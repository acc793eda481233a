"""Workers, queues and scheduled jobs as RQ itself records them (for the System page and API).

Nothing here keeps its own bookkeeping: workers come from `Worker.all`, queue figures from each
queue and its started/failed/scheduled/deferred/finished registries, and the periodic jobs from
the cron scheduler's record in Redis (last and next enqueue time per job) plus the newest job
each one spawned (its status, start and end).
"""

from __future__ import annotations

import logging
import socket
from datetime import UTC, datetime, timedelta

import psutil
from redis.exceptions import RedisError
from rq import Worker
from rq.cron import CronScheduler, get_cron_job_ids
from rq.exceptions import NoSuchJobError
from rq.executions import Execution
from rq.job import Job
from rq.registry import StartedJobRegistry

from app.extensions import redis_store
from app.system.settings import current_settings
from app.tasks import PERIODIC_JOBS, interval_of

log = logging.getLogger(__name__)
HEARTBEAT_STALE = timedelta(seconds=120)  # rq's cron scheduler record TTL


def _naive(value: datetime | None) -> datetime | None:
    """RQ's aware UTC datetimes as the naive UTC the rest of the app uses."""
    if value is None:
        return None
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value


def workers() -> list[dict]:
    """Every registered RQ worker: name, state, queues, current job, counters, heartbeat."""
    found = []
    for worker in Worker.all(connection=redis_store.client):
        job_id = worker.get_current_job_id()
        found.append({
            "name": worker.name,
            "hostname": worker.hostname,
            "pid": worker.pid,
            "state": worker.get_state(),
            "queues": worker.queue_names(),
            "current_job": job_id,
            "successful_jobs": worker.successful_job_count,
            "failed_jobs": worker.failed_job_count,
            "working_seconds": round(worker.total_working_time, 1),
            "birth": _naive(worker.birth_date),
            "last_heartbeat": _naive(worker.last_heartbeat),
        })
    return sorted(found, key=lambda w: w["name"])


def queues() -> list[dict]:
    """Each BTC Watcher queue with its length and registry counts."""
    rows = []
    for queue in redis_store.queues():
        rows.append({
            "name": queue.name,
            "queued": queue.count,
            "started": queue.started_job_registry.count,
            "failed": queue.failed_job_registry.count,
            "scheduled": queue.scheduled_job_registry.count,
            "deferred": queue.deferred_job_registry.count,
            "finished": queue.finished_job_registry.count,
        })
    return rows


def oldest_queued() -> dict:
    """The job that has waited longest in any BTC Watcher queue: {"queue", "job", "seconds"}
    (seconds 0 when every queue is empty). A growing wait means nothing is taking jobs."""
    oldest = {"queue": None, "job": None, "seconds": 0.0}
    now = datetime.now(UTC)
    for queue in redis_store.queues():
        for job_id in queue.get_job_ids(0, 1):  # (offset, length)
            job = queue.fetch_job(job_id)
            enqueued = job.enqueued_at if job is not None else None
            if enqueued is None:
                continue
            if enqueued.tzinfo is None:
                enqueued = enqueued.replace(tzinfo=UTC)
            waited = max((now - enqueued).total_seconds(), 0.0)
            if waited > oldest["seconds"]:
                oldest = {"queue": queue.name, "job": job_id, "seconds": round(waited, 1)}
    return oldest


def recover_abandoned_jobs() -> list[str]:
    """Hand the jobs of dead workers back to RQ's own recovery at once.

    A job whose worker was killed stays in the queue's started registry until its heartbeat
    lease (about 90 s) runs out; RQ then retries it (when it has retries left) or fails it with
    AbandonedJobError. Executions whose worker is no longer registered, or whose process is gone
    from this machine, have their lease ended now, and the registry's cleanup does the rest.
    Returns the ids of the jobs handed back."""
    client = redis_store.client
    running: dict[str, list[tuple[str, str]]] = {}
    for queue in redis_store.queues():
        registry = StartedJobRegistry(queue.name, connection=client)
        for entry in client.zrange(registry.key, 0, -1):
            key = entry.decode() if isinstance(entry, bytes) else entry
            execution = Execution.from_composite_key(key, client)
            try:
                execution.refresh()
            except ValueError:  # its record expired: the lease is as good as over
                execution.worker_name = ""
            running.setdefault(queue.name, []).append((key, execution.worker_name))
    # Read after the registries: a worker registers before it takes a job, so every execution
    # seen above belongs to a worker that is in this list unless it died.
    live = {w.name for w in live_workers()}
    recovered = []
    for name, executions in running.items():
        ended = [key for key, worker in executions if worker not in live]
        if ended:
            registry = StartedJobRegistry(name, connection=client)
            client.zadd(registry.key, dict.fromkeys(ended, 0), xx=True)
            registry.cleanup()
            recovered += [registry.parse_job_id(k) for k in ended]
    if recovered:
        log.warning("jobs of dead workers handed back to RQ (retried or failed): %s",
                    ", ".join(recovered))
    return recovered


def _schedulers() -> list[CronScheduler]:
    try:
        return CronScheduler.all(connection=redis_store.client)
    except RedisError:
        raise
    except Exception as exc:  # noqa: BLE001 - an unreadable record means "unknown", not a 500
        log.warning("cannot read the cron scheduler record: %s", exc)
        return []


def process_gone(hostname: str | None, pid: int | None) -> bool:
    """True when a process registered from this machine no longer runs: its registration in
    Redis outlives a SIGKILL by minutes, the process table tells the truth at once."""
    if not pid or hostname != socket.gethostname():
        return False
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False


def live_workers() -> list[Worker]:
    """Registered RQ workers whose process still runs (as far as this machine can tell)."""
    return [w for w in Worker.all(connection=redis_store.client)
            if not process_gone(w.hostname, w.pid)]


def cron_status() -> dict:
    """Whether a cron scheduler (`flask cron run`) is alive, from its heartbeat and, on this
    machine, its process."""
    schedulers = [s for s in _schedulers() if not process_gone(s.hostname, s.pid)]
    if not schedulers:
        return {"status": "error", "running": False,
                "error": "no cron scheduler is running (start: flask cron run)"}
    beats = [b for b in (_naive(s.last_heartbeat) for s in schedulers) if b is not None]
    last = max(beats) if beats else None
    alive = last is not None and datetime.now(UTC).replace(tzinfo=None) - last < HEARTBEAT_STALE
    return {"status": "ok" if alive else "error", "running": alive, "last_heartbeat": last,
            "schedulers": [f"{s.name}@{s.hostname}:{s.pid}" for s in schedulers]}


def scheduled_jobs() -> list[dict]:
    """PERIODIC_JOBS with interval, last run (enqueue, status, end) and next run."""
    settings = current_settings()
    recorded = {}
    for scheduler in _schedulers():
        for job in scheduler.get_jobs():
            recorded[job.name] = job
    rows = []
    client = redis_store.client
    for path, queue, interval, timeout in PERIODIC_JOBS:
        seconds = interval_of(interval, settings)
        cron_job = recorded.get(path)
        last_enqueued = _naive(cron_job.latest_enqueue_time) if cron_job else None
        next_run = _naive(cron_job.next_enqueue_time) if cron_job else None
        if next_run is not None and next_run.year >= 9999:
            next_run = None
        last = _last_job(client, path)
        rows.append({
            "name": path.rsplit(".", 1)[-1],
            "path": path,
            "queue": queue,
            "interval": seconds,
            "timeout": timeout,
            "last_enqueued": last_enqueued,
            "next_run": next_run,
            **last,
        })
    return rows


def _last_job(client, name: str) -> dict:
    """Status, start and end of the newest job a cron entry spawned (if RQ still keeps it)."""
    empty = {"last_status": None, "last_started": None, "last_ended": None, "last_error": None}
    try:
        ids = get_cron_job_ids(name, client, 0, 0)
        if not ids:
            return empty
        job = Job.fetch(ids[0], connection=client)
    except NoSuchJobError:
        return {**empty, "last_status": "expired"}
    status = job.get_status(refresh=False)
    error = None
    if status is not None and str(getattr(status, "value", status)) == "failed":
        result = job.latest_result()
        error = (result.exc_string or "").strip().splitlines()[-1:] if result else None
        error = error[0][:200] if error else None
    return {"last_status": str(getattr(status, "value", status)) if status else None,
            "last_started": _naive(job.started_at), "last_ended": _naive(job.ended_at),
            "last_error": error}
