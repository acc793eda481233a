"""Live signal pages: one Redis subscription per web process, fanned out to its WebSockets.

`SignalHub` listens on the `btcw:signals` channel (outbox.CHANNEL) in a background thread (a
greenlet under gunicorn's gevent worker) and copies every event to the queue of each connected
page of this process; since every web worker has its own hub, a signal stored by any worker
reaches the pages held by all of them. `/ws/signals` (see routes.py) turns the events into
htmx-ws out-of-band fragments: new rows at the top of `#signal-rows`, and the new-signals badge.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import redis
from flask import Flask, current_app

from app.extensions import redis_store
from app.signals.outbox import CHANNEL

log = logging.getLogger(__name__)

QUEUE_SIZE = 2000  # events a slow page may lag behind before they are only counted
BATCH = 200  # events sent to a page in one message at most
RECONNECT_MAX_SECONDS = 5.0
SUBSCRIBE_WAIT_SECONDS = 3.0  # a new page waits this long at most for the hub's subscription


class LiveSubscription:
    """One page's view of the hub: a bounded queue of events and a count of dropped ones."""

    def __init__(self) -> None:
        self.events: queue.Queue[dict[str, Any]] = queue.Queue(QUEUE_SIZE)
        self.dropped = 0

    def offer(self, event: dict[str, Any]) -> None:
        """Queue an event; when the page lags too far behind, count it instead."""
        try:
            self.events.put_nowait(event)
        except queue.Full:
            self.dropped += 1

    def wait(self, timeout: float) -> list[dict[str, Any]]:
        """The next events (up to BATCH), waiting at most `timeout` seconds for the first."""
        try:
            batch = [self.events.get(timeout=timeout)]
        except queue.Empty:
            return []
        while len(batch) < BATCH:
            try:
                batch.append(self.events.get_nowait())
            except queue.Empty:
                break
        return batch

    def take_dropped(self) -> int:
        """How many events were dropped since the last call."""
        count, self.dropped = self.dropped, 0
        return count


class SignalHub:
    """The process-wide Redis subscriber feeding every LiveSubscription of this process."""

    def __init__(self, redis_url: str, channel: str) -> None:
        self.redis_url = redis_url
        self.channel = channel
        self._subs: set[LiveSubscription] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.connected = threading.Event()
        # Counts (re)subscriptions; a page that sees it change replays what the gap hid.
        self.generation = 0
        self._rendered: OrderedDict[tuple[str, str], str] = OrderedDict()

    # subscriptions ---------------------------------------------------------------------
    def subscribe(self) -> LiveSubscription:
        """A new subscription; starts the listener on first use."""
        sub = LiveSubscription()
        with self._lock:
            self._subs.add(sub)
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(target=self._run, name="signal-hub",
                                                daemon=True)
                self._thread.start()
        return sub

    def unsubscribe(self, sub: LiveSubscription) -> None:
        """Forget a subscription (its page went away)."""
        with self._lock:
            self._subs.discard(sub)

    @property
    def subscribers(self) -> int:
        """How many pages of this process listen."""
        with self._lock:
            return len(self._subs)

    def stop(self) -> None:
        """Stop the listener (tests)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self._thread = None

    def dispatch(self, event: dict[str, Any]) -> None:
        """Hand one event to every subscription of this process."""
        with self._lock:
            subs = list(self._subs)
        for sub in subs:
            sub.offer(event)

    # rendering, shared by every page of the process -------------------------------------
    def render_once(self, event: dict[str, Any], variant: str,
                    render: Callable[[dict[str, Any]], str]) -> str:
        """`render(event)`, memoised per (event, variant) so N pages render a row once."""
        key = (json.dumps(event, sort_keys=True, default=str), variant)
        with self._lock:
            html = self._rendered.get(key)
        if html is None:
            html = render(event)
            with self._lock:
                self._rendered[key] = html
                while len(self._rendered) > 512:
                    self._rendered.popitem(last=False)
        return html

    # the listener ---------------------------------------------------------------------
    def _run(self) -> None:
        delay = 0.2
        while not self._stop.is_set():
            client = redis.Redis.from_url(self.redis_url, socket_connect_timeout=1,
                                          socket_timeout=10, health_check_interval=15)
            pubsub = client.pubsub()
            try:
                pubsub.subscribe(self.channel)
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message is None:
                        continue
                    if message.get("type") == "subscribe":
                        # Confirmed by the server: from now on every PUBLISH reaches us.
                        self.generation += 1
                        self.connected.set()
                        delay = 0.2
                        continue
                    if message.get("type") != "message":
                        continue
                    try:
                        event = json.loads(message["data"])
                    except (TypeError, ValueError):
                        log.warning("ignoring a malformed live signal event")
                        continue
                    if isinstance(event, dict):
                        self.dispatch(event)
            except (redis.RedisError, OSError) as exc:
                if self.connected.is_set():
                    log.warning("live signals: Redis subscription lost (%s); reconnecting", exc)
                self.connected.clear()
                self._stop.wait(delay)
                delay = min(delay * 2, RECONNECT_MAX_SECONDS)
            finally:
                try:
                    pubsub.close()
                    client.close()
                except Exception:  # noqa: BLE001, S110 - closing a broken connection
                    pass
        self.connected.clear()


_hub_lock = threading.Lock()


def app_hub(key: str, channel: str, app: Flask | None = None) -> SignalHub:
    """This process's hub on `channel` for the app, kept in app.extensions[key] (created on
    first use, after gunicorn forked)."""
    app = app or current_app._get_current_object()  # type: ignore[attr-defined]
    hub = app.extensions.get(key)
    if hub is None:
        with _hub_lock:
            hub = app.extensions.get(key)
            if hub is None:
                hub = app.extensions[key] = SignalHub(redis_store.url, channel)
    return hub


def hub_for(app: Flask | None = None) -> SignalHub:
    """This process's hub for the signals channel."""
    return app_hub("btcw_signal_hub", CHANNEL, app)


def wait_until_listening(app: Flask, seconds: float = 5.0) -> bool:
    """True once the app's hub has its Redis subscription (tests and the bench use it)."""
    deadline = time.monotonic() + seconds
    hub = hub_for(app)
    return hub.connected.wait(max(deadline - time.monotonic(), 0))


# ------------------------------------------------------------------------- one page's socket


class PageFeed:
    """What one connected signals page has been told: sent rows and the badge counters.

    `paged` pages (looking at older rows) get no rows, only the count of newer matching ones;
    `outside` counts new signals that the page's filters hide.
    """

    def __init__(self, filters, paged: bool) -> None:
        self.filters = filters
        self.paged = paged
        self.shown = 0
        self.held = 0
        self.outside = 0
        self.sent_ids: set[int] = set()
        self.last_id = 0  # the newest signal this page has heard of

    def sort(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The events to insert as rows, newest first; counts the others."""
        rows = []
        for event in events:
            event_id = int(event.get("id") or 0)
            self.last_id = max(self.last_id, event_id)
            if event_id in self.sent_ids:
                continue
            if not self.filters.matches(event):
                self.outside += 1
            elif self.paged:
                self.held += 1
            else:
                self.sent_ids.add(event_id)
                rows.append(event)
        if len(self.sent_ids) > 5000:  # only recent ids can come twice (replay vs. live)
            self.sent_ids = set(sorted(self.sent_ids)[-1000:])
        self.shown += len(rows)
        rows.sort(key=lambda e: int(e.get("id") or 0), reverse=True)
        return rows


def serve_page(ws, filters, paged: bool, since_id: int | None,
               render_rows: Callable[[list[dict[str, Any]], PageFeed], str],
               replay: Callable[[int], list[dict[str, Any]]],
               idle_timeout: float = 5.0) -> None:
    """Feed one page until its socket closes: replay what it missed since `since_id`, then
    every live event, as htmx out-of-band fragments built by `render_rows(rows, feed)`.

    When the hub had to resubscribe (Redis restarted), the page is sent what was stored since
    the newest signal it heard of, so a Redis blip leaves no hole in the list.
    """
    hub = hub_for()
    sub = hub.subscribe()
    feed = PageFeed(filters, paged)
    feed.last_id = since_id or 0
    try:
        # Listen first, then replay: a signal committed after the replay's query is published
        # after it, so the hub hears it; one committed before is in the replay.
        hub.connected.wait(SUBSCRIBE_WAIT_SECONDS)
        generation = hub.generation
        if since_id is not None and not paged:
            rows = feed.sort(replay(since_id))
            if rows:
                ws.send(render_rows(rows, feed))
        while ws.connected:
            events = sub.wait(idle_timeout)
            dropped = sub.take_dropped()
            if hub.generation != generation and hub.connected.is_set():
                generation = hub.generation
                if not paged and since_id is not None:
                    events = replay(feed.last_id) + events
            if not events and not dropped:
                continue
            feed.held += dropped
            rows = feed.sort(events)
            ws.send(render_rows(rows, feed))
    finally:
        hub.unsubscribe(sub)
