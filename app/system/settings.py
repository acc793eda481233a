"""The live settings of this process: loaded at start, reloaded on demand, shared by version.

A reload validates all three files first; a bad file leaves the last good settings in place.
Other processes notice a reload through a version counter in Redis and load the files too.
"""

from __future__ import annotations

import logging
import threading
import time

from flask import current_app

from app.extensions import redis_store
from config.loader import ConfigError, Settings, load_settings

log = logging.getLogger(__name__)
VERSION_KEY = "btcw:config:version"
_CHECK_EVERY = 2.0
_lock = threading.Lock()


class SettingsHolder:
    """Holds one app's current Settings and the config version it was loaded at."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.version = 0
        self.checked_at = 0.0


def current_settings() -> Settings:
    """The settings of the current app."""
    return current_app.extensions["btcw_settings"].settings


def reload_settings(publish: bool = True) -> Settings:
    """Load the files again; raise ConfigError (keeping the old settings) if one is bad."""
    holder: SettingsHolder = current_app.extensions["btcw_settings"]
    new = load_settings(holder.settings.config_dir)
    with _lock:
        holder.settings = new
    if publish:
        try:
            holder.version = int(redis_store.client.incr(VERSION_KEY))
        except Exception as exc:  # noqa: BLE001 - Redis down: this process still reloaded
            log.warning("config reloaded here but not announced (Redis: %s)", exc)
    log.info("configuration reloaded from %s", new.config_dir)
    return new


def refresh_if_changed() -> None:
    """Reload when another process announced a new config version (checked every 2 s)."""
    holder: SettingsHolder = current_app.extensions["btcw_settings"]
    now = time.monotonic()
    if now - holder.checked_at < _CHECK_EVERY:
        return
    holder.checked_at = now
    try:
        version = int(redis_store.client.get(VERSION_KEY) or 0)
    except Exception:  # noqa: BLE001 - no Redis, no news
        return
    if version != holder.version:
        try:
            holder.settings = load_settings(holder.settings.config_dir)
        except ConfigError as exc:
            log.error("announced config is bad, keeping the last good one: %s", exc)
        holder.version = version
