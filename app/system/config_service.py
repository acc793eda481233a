"""Show and reload the configuration files."""

from __future__ import annotations

from app.notifications.channels.base import mask
from app.notifications.settings_editor import SECRET_KEYS, masked
from app.system.settings import current_settings, reload_settings
from config.loader import CONFIG_FILES, ConfigError, as_dict

NAMES = CONFIG_FILES
SECRET_WORDS = ("secret", "password", "token", "key", "webhook")


def _mask(value, parent: str = ""):
    """Secrets shown masked: channel secrets the way the settings page shows them."""
    if isinstance(value, dict):
        if parent == "channels":
            return {name: {k: masked(k, v) if k in SECRET_KEYS else v for k, v in ch.items()}
                    for name, ch in value.items()}
        return {k: (mask(str(v)) if any(w in k.lower() for w in SECRET_WORDS)
                    and isinstance(v, str) else _mask(v, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v, parent) for v in value]
    return value


def config_view(name: str) -> dict:
    """The validated settings of one file (secrets masked); KeyError for an unknown name."""
    if name.removesuffix(".yml") not in NAMES:
        raise KeyError(name)
    name = name.removesuffix(".yml")
    settings = current_settings()
    return {"name": name, "config_dir": settings.config_dir,
            name: _mask(as_dict(getattr(settings, name)))}


def reload() -> tuple[bool, str]:
    """Reload all files; on a bad file keep the last good config and say why."""
    try:
        new = reload_settings()
    except ConfigError as exc:
        return False, f"Reload refused, the last good configuration stays in force: {exc}"
    return True, f"Configuration reloaded from {new.config_dir}."
