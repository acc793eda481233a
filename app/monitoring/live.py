"""Live monitoring pages: fresh samples pushed to open pages over a WebSocket (/ws/monitoring).

The periodic jobs publish each sample on `store.LIVE_CHANNEL` (Redis pub/sub). Every web
process keeps one subscription (the same hub class the live signal pages use, on this channel)
and copies events to its open monitoring pages, which get htmx-ws out-of-band fragments:

- `system_status` -> the System page's host tiles (`#system-host`), re-rendered;
- `capacity` -> a small element that makes the Capacity page reload its summary.

Pages still poll as a fallback, so they stay current while the socket reconnects.
"""

from __future__ import annotations

from flask import Flask, render_template, url_for

from app.monitoring.store import LIVE_CHANNEL
from app.signals.live import app_hub

WS_PATH = "/ws/monitoring"
IDLE_SECONDS = 5.0


def hub_for(app: Flask | None = None):
    """This process's subscription to LIVE_CHANNEL (created on first use, after the fork)."""
    return app_hub("btcw_monitoring_hub", LIVE_CHANNEL, app)


def render_event(event: dict) -> str | None:
    """The htmx-ws fragment for one live event, or None for events pages do not show."""
    kind, data = event.get("type"), event.get("data")
    if not isinstance(data, dict):
        return None
    if kind == "system_status":
        return render_template("system/_host.html", host={**data, "cached": True})
    if kind == "capacity":
        return render_template("monitoring/_capacity_nudge.html",
                               url=url_for("monitoring.capacity"))
    return None


def serve(ws) -> None:
    """Feed one open page until its socket closes: the newest event of each kind."""
    hub = hub_for()
    sub = hub.subscribe()
    try:
        while ws.connected:
            events = sub.wait(IDLE_SECONDS)
            sub.take_dropped()
            latest = {e.get("type"): e for e in events if isinstance(e, dict)}
            for event in latest.values():
                html = render_event(event)
                if html:
                    ws.send(html)
    finally:
        hub.unsubscribe(sub)
