"""Show and reload the configuration files."""

from __future__ import annotations

from app.system.settings import current_settings, reload_settings
from config.loader import CONFIG_FILES, ConfigError, as_dict

NAMES = CONFIG_FILES
SECRET_WORDS = ("secret", "password", "token", "key", "webhook")


def _mask(value):
    """Secrets shown as the first 4 characters and stars."""
    if isinstance(value, dict):
        return {k: (_mask_value(v) if any(w in k.lower() for w in SECRET_WORDS)
                    else _mask(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v) for v in value]
    return value


def _mask_value(v):
    if isinstance(v, str) and v:
        return v[:4] + "****" if len(v) > 8 else "****"
    return _mask(v)


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
