"""Proxy URLs as people may see them (no Flask, no database: the relay imports this too)."""

from __future__ import annotations

from urllib.parse import urlsplit


def mask(url: str) -> str:
    """The URL with its password replaced by ****."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{user}:****@{host}" + (f":{parts.port}" if parts.port else "")
    return parts._replace(netloc=netloc).geturl()
