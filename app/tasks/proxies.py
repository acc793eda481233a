"""Proxy jobs (RQ entry points)."""

from __future__ import annotations

from app.proxies import service


def check_proxies() -> dict:
    """Check every enabled proxy and fail strategies over from the ones that went down."""
    return service.check_all()
