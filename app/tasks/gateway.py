"""Gateway jobs (RQ entry points): thin wrappers over app/gateway/service.py."""

from __future__ import annotations

from app.gateway.service import check_drift


def check_routes() -> dict:
    """Compare routes with the live bots and the gateway workers; repair and log any drift."""
    report = check_drift()
    return {"routes": report["routes"], "problems": len(report["problems"]),
            "stale_workers": len(report["stale_workers"]),
            "reload_published": report["reload_published"]}
