"""Health of the parts BTC Watcher needs: database, Redis, RQ workers."""

from __future__ import annotations

from sqlalchemy import text

from app.extensions import db, redis_store


def check_database() -> dict:
    """SELECT 1 on the database."""
    try:
        db.session.execute(text("SELECT 1"))
        return {"status": "ok"}
    except Exception as exc:  # noqa: BLE001 - any failure is the answer
        db.session.rollback()
        return {"status": "error", "error": f"{type(exc).__name__}: {exc}"[:300]}


def check_redis() -> dict:
    """PING Redis."""
    try:
        redis_store.client.ping()
        return {"status": "ok"}
    except Exception as exc:  # noqa: BLE001
        return {"status": "error", "error": f"{type(exc).__name__}: {exc}"[:300]}


def check_workers() -> dict:
    """At least one RQ worker registered (needs Redis)."""
    from rq import Worker

    try:
        workers = Worker.all(connection=redis_store.client)
    except Exception as exc:  # noqa: BLE001
        return {"status": "error", "error": f"cannot list workers: {type(exc).__name__}"}
    if not workers:
        return {"status": "error", "error": "no RQ worker is running (start: flask worker)"}
    return {"status": "ok", "count": len(workers),
            "queues": sorted({q for w in workers for q in w.queue_names()})}


def system_health() -> tuple[dict, bool]:
    """All checks; (report, healthy)."""
    checks = {"database": check_database(), "redis": check_redis()}
    checks["workers"] = (check_workers() if checks["redis"]["status"] == "ok"
                         else {"status": "error", "error": "unknown: Redis is down"})
    failing = [name for name, c in checks.items() if c["status"] != "ok"]
    report = {"status": "ok" if not failing else "error", "failing": failing, "checks": checks}
    return report, not failing
