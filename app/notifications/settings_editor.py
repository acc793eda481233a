"""The Notifications settings page's logic: read, validate and save config/notifications.yml.

The page edits the raw file (so `${ENV}` references stay references), checks every value
(field errors name the form field), validates the whole file with the same loader the app uses
(in a scratch folder next to copies of the other two files), writes it atomically into the
config folder in use (`current_settings().config_dir`), then reloads the settings of every
process (`reload_settings()`). Secrets are never shown back: the form shows them masked and an
empty secret field keeps the stored value.
"""

from __future__ import annotations

import copy
import io
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml.comments import CommentedMap

from app.errors import AppError, NotFound
from app.notifications.channels import build_channel, configured_channels
from app.notifications.channels.apprise_channels import private_url
from app.notifications.channels.base import mask, mask_url
from app.notifications.messages import (
    SampleSignal,
    TemplateProblem,
    render_custom,
    render_signal,
    sample_context,
)
from app.system.settings import current_settings, reload_settings
from config import yaml_io
from config.loader import (
    CHANNEL_COMMON_KEYS,
    CHANNEL_FAMILIES,
    CHANNEL_TYPES,
    ChannelSettings,
    ConfigError,
    load_settings,
)

FILE = "notifications.yml"
HEADER = ("# How and when BTC Watcher tells the owner. Secrets may be given as ${ENV_NAME}.\n"
          "# Written by the Notifications settings page; docs/notifications.md explains "
          "every key.\n")
SECRET_KEYS = frozenset({"secret", "bot_token", "corp_secret", "password", "webhook_url",
                         "urls", "url", "headers"})
LIST_KEYS = frozenset({"to", "urls"})
INT_KEYS = frozenset({"port", "agent_id", "max_attempts"})
FLOAT_KEYS = frozenset({"timeout", "retry_backoff"})
BOOL_KEYS = frozenset({"enabled", "verify_tls"})
CHOICES = {"security": ("starttls", "ssl", "none"), "method": ("POST", "GET", "PUT")}

# What the form shows for each key: label and help.
FIELD_LABELS: dict[str, tuple[str, str]] = {
    "webhook_url": ("Webhook URL", "The full URL the service gives you (kept secret)."),
    "secret": ("Signing secret", "Feishu/Lark/DingTalk signature secret, or an HMAC key for "
                                 "webhooks. Leave empty to keep the stored one."),
    "base_url": ("Base URL override", "Send to this scheme://host instead (a relay)."),
    "bot_token": ("Bot token", "From @BotFather."),
    "chat_id": ("Chat id", "A user, group or @channel."),
    "corp_id": ("Corp id", ""),
    "corp_secret": ("Corp secret", "The application's secret."),
    "agent_id": ("Agent id", "The application's AgentId."),
    "to_user": ("To users", "WeCom user ids joined by |, or @all."),
    "host": ("SMTP host", ""),
    "port": ("SMTP port", "0: 587 for STARTTLS, 465 for SSL, 25 for none."),
    "security": ("Security", ""),
    "username": ("SMTP user", ""),
    "password": ("SMTP password", ""),
    "from_addr": ("From", ""),
    "to": ("To", "Recipients, comma or newline separated."),
    "urls": ("Apprise URLs", "One per line, e.g. twilio://SID:TOKEN@+1555…/+1555…"),
    "url": ("Gateway URL", "May use {{ to }}, {{ message }} (Jinja, with |urlencode)."),
    "method": ("Method", ""),
    "headers": ("Headers", "One 'Name: value' per line."),
    "body_template": ("Body template", "Jinja; default sends {\"to\": …, \"message\": …}."),
    "content_type": ("Content type", ""),
    "timeout": ("Timeout (s)", "Per request."),
    "max_attempts": ("Max attempts", "Tries before the delivery is marked failed."),
    "retry_backoff": ("Retry backoff (s)", "Wait before the 2nd try; doubled each time."),
    "verify_tls": ("Verify TLS certificates", ""),
}


_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


class SettingsError(AppError):
    """A form that cannot be saved: `errors` maps form field names to messages."""

    status = 422

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(v if k == "__all__" else f"{k}: {v}"
                                   for k, v in errors.items()))
        self.errors = errors


# ------------------------------------------------------------------------------ reading


def config_path() -> Path:
    """config/notifications.yml of the config folder in use."""
    return Path(current_settings().config_dir) / FILE


def raw_section() -> dict[str, Any]:
    """The `notifications:` block of the file as written (env references unexpanded)."""
    path = config_path()
    if not path.exists():
        return {}
    try:
        data = yaml_io.load(path.read_text(encoding="utf-8")) or {}
    except yaml_io.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise SettingsError({"__all__": f"{path} cannot be read{where}: {problem}. Fix the "
                             "file by hand; the page will not overwrite it."}) from exc
    if not isinstance(data, dict) or not isinstance(data.get("notifications") or {}, dict):
        raise SettingsError({"__all__": f"{path} must hold a 'notifications:' mapping. Fix "
                             "the file by hand; the page will not overwrite it."})
    return copy.deepcopy(data.get("notifications") or {})


def channel_fields(channel_type: str) -> list[str]:
    """The form fields of a channel type, required ones first, then the common ones."""
    _, required, optional = CHANNEL_TYPES[channel_type]
    common = [k for k in CHANNEL_COMMON_KEYS if k not in ("type", "enabled")]
    if channel_type == "inbox":
        return []
    return [*required, *optional, *common]


def required_fields(channel_type: str) -> tuple[str, ...]:
    """Keys a channel of this type must have."""
    return CHANNEL_TYPES[channel_type][1]


def masked(key: str, value: Any) -> str:
    """A stored value as the form may show it (secrets masked)."""
    if value in (None, "", [], {}):
        return ""
    if key in ("webhook_url", "url"):
        return mask_url(str(value))
    if key == "urls":
        return "\n".join(private_url(str(u)) if not str(u).startswith("${") else str(u)
                         for u in value)
    if key == "headers":
        return "\n".join(f"{k}: {mask(str(v))}" for k, v in dict(value).items())
    if key in SECRET_KEYS:
        return mask(str(value))
    return form_value(key, value)


def form_value(key: str, value: Any) -> str:
    """A non-secret stored value as form text."""
    if value is None:
        return ""
    if key in LIST_KEYS:
        return "\n".join(str(v) for v in value)
    if key == "headers":
        return "\n".join(f"{k}: {v}" for k, v in dict(value).items())
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


@dataclass
class ChannelRow:
    """One channel on the settings page."""

    name: str
    type: str
    family: str
    enabled: bool
    target: str
    via_apprise: bool
    implicit: bool = False


def channel_rows() -> list[ChannelRow]:
    """The configured channels for the table (targets masked)."""
    settings = current_settings().notifications
    rows = []
    for name, channel in configured_channels(settings).items():
        client = build_channel(name, channel)
        try:
            target = client.target()
        except Exception as exc:  # noqa: BLE001 - a page must show even a broken channel
            target = f"(cannot show: {exc})"
        rows.append(ChannelRow(name, channel.type, channel.family, channel.enabled, target,
                               client.via_apprise, implicit=name not in settings.channels))
    return rows


def channel_form(name: str | None, channel_type: str | None) -> dict[str, Any]:
    """What the channel form shows: name, type, enabled and each field (secrets masked)."""
    raw = (raw_section().get("channels") or {}).get(name or "", None) if name else None
    stored = raw or {}
    channel_type = channel_type or stored.get("type") or "feishu"
    if channel_type not in CHANNEL_TYPES:
        channel_type = "feishu"
    defaults = ChannelSettings()
    fields = []
    for key in channel_fields(channel_type):
        label, help_text = FIELD_LABELS.get(key, (key, ""))
        present = key in stored
        value = stored.get(key, getattr(defaults, key))
        secret = key in SECRET_KEYS and present and value not in ("", [], {})
        fields.append({
            "key": key, "label": label, "help": help_text,
            "required": key in required_fields(channel_type),
            "secret": key in SECRET_KEYS, "stored": masked(key, value) if secret else "",
            "value": "" if key in SECRET_KEYS else form_value(key, value),
            "kind": _kind(key), "choices": CHOICES.get(key),
        })
    return {"name": name or "", "original_name": name or "", "type": channel_type,
            "enabled": stored.get("enabled", True), "fields": fields,
            "types": list(CHANNEL_TYPES), "exists": raw is not None}


def _kind(key: str) -> str:
    if key in CHOICES:
        return "select"
    if key in BOOL_KEYS:
        return "checkbox"
    if key in LIST_KEYS or key in ("headers", "body_template"):
        return "textarea"
    if key in INT_KEYS or key in FLOAT_KEYS:
        return "number"
    if key in SECRET_KEYS:
        return "password"
    return "text"


# ------------------------------------------------------------------------------ parsing


def _split_list(text: str) -> list[str]:
    return [p.strip() for p in text.replace(",", "\n").splitlines() if p.strip()]


def _parse_value(key: str, text: str, errors: dict[str, str]) -> Any:
    text = text.strip()
    if key in INT_KEYS:
        try:
            return int(text)
        except ValueError:
            errors[key] = f"must be a whole number, got {text!r}"
    elif key in FLOAT_KEYS:
        try:
            return float(text)
        except ValueError:
            errors[key] = f"must be a number, got {text!r}"
    elif key == "urls":
        return [line.strip() for line in text.splitlines() if line.strip()]
    elif key in LIST_KEYS:
        return _split_list(text)
    elif key == "headers":
        headers = {}
        for line in text.splitlines():
            if not line.strip():
                continue
            name, sep, value = line.partition(":")
            if not sep or not name.strip():
                errors[key] = f"each line must be 'Name: value', got {line.strip()!r}"
                break
            headers[name.strip()] = value.strip()
        return headers
    elif key in CHOICES:
        value = text.upper() if key == "method" else text.lower()
        if value not in CHOICES[key]:
            errors[key] = f"must be one of {', '.join(CHOICES[key])}"
        return value
    else:
        return text
    return None


def parse_channel_form(form: Mapping[str, str]) -> tuple[str, str, dict]:
    """(name, original name, raw channel entry) from the form; SettingsError on bad fields."""
    errors: dict[str, str] = {}
    name = (form.get("name") or "").strip()
    original = (form.get("original_name") or "").strip()
    channel_type = (form.get("type") or "").strip()
    if not name:
        errors["name"] = "required"
    if channel_type not in CHANNEL_TYPES:
        errors["type"] = f"must be one of {', '.join(CHANNEL_TYPES)}"
        raise SettingsError(errors)
    stored = (raw_section().get("channels") or {}).get(original or name) or {}
    if stored and stored.get("type") != channel_type:
        stored = {}  # a type change starts from scratch (old keys may not apply)
    entry: dict[str, Any] = {"type": channel_type, "enabled": form.get("enabled") in
                             ("1", "on", "true", "yes")}
    defaults = ChannelSettings()
    for key in channel_fields(channel_type):
        if key in BOOL_KEYS:
            entry[key] = form.get(key) in ("1", "on", "true", "yes")
            if entry[key] == getattr(defaults, key) and key not in stored:
                entry.pop(key)
            continue
        text = form.get(key, "")
        if key in SECRET_KEYS:
            if form.get(f"clear_{key}"):
                continue
            if not text.strip():
                if key in stored:
                    entry[key] = stored[key]  # unchanged (may be a ${ENV} reference)
                continue
        elif not text.strip():
            continue
        value = _parse_value(key, text, errors)
        if key not in errors and value is not None:
            entry[key] = value
    for key in required_fields(channel_type):
        if entry.get("enabled") and entry.get(key) in (None, "", [], 0) and key not in errors:
            errors[key] = "required"
    for key in ("webhook_url", "base_url", "url"):
        value = entry.get(key)
        if isinstance(value, str) and value and not value.startswith(("http://", "https://",
                                                                      "${")):
            errors[key] = "must start with http:// or https://"
    if name and not _NAME_RE.match(name):
        errors["name"] = "1-32 of a-z, 0-9, _ and -, starting with a letter or digit"
    if errors:
        raise SettingsError(errors)
    return name, original, entry


# ------------------------------------------------------------------------------ writing


def _field_of(key: str) -> str:
    """A loader key (notifications.channels.x.secret) as a form field name (secret)."""
    parts = key.split(".")
    if parts[:2] == ["notifications", "channels"] and len(parts) >= 4:
        return parts[3].split("[")[0]
    if parts[:2] == ["notifications", "channels"] and len(parts) == 3:
        return "name"
    tail = [p for p in parts[1:]]
    if tail and tail[0] in ("rate_limiting", "templates"):
        return tail[-1].split("[")[0]
    if tail and tail[0] in ("priorities", "time_slots") and len(tail) >= 3:
        return f"{tail[1]}_{tail[2].split('[')[0]}"
    return tail[-1] if tail else "__all__"


def render_file(path: Path, section: dict[str, Any]) -> str:
    """The file's new text: the `notifications:` block replaced by `section`.

    The file is edited in place with ruamel.yaml's round trip, so the owner's comments, key
    order and list styles survive a save from the page; a missing or empty file is written
    fresh under HEADER (an unreadable one never gets here: raw_section() refuses it).
    """
    rt = yaml_io.round_trip()
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    document = rt.load(text) if text.strip() else None
    out = io.StringIO()
    if not isinstance(document, CommentedMap):
        document = CommentedMap()
        out.write(HEADER)
    if isinstance(document.get("notifications"), CommentedMap):
        _merge_into(document["notifications"], section)
    else:
        document["notifications"] = section
    rt.dump(document, out)
    return out.getvalue()


def _merge_into(node: Any, new: dict[str, Any]) -> None:
    """Make the round-trip mapping `node` equal `new`, keeping what is unchanged (and so its
    comments) and updating lists in place (so their flow or block style stays)."""
    for key in [k for k in node if k not in new]:
        del node[key]
    for key, value in new.items():
        old = node.get(key)
        if isinstance(value, dict) and isinstance(old, dict):
            _merge_into(old, value)
        elif isinstance(value, list) and isinstance(old, list):
            if list(old) != value:
                old[:] = value
        elif old != value or isinstance(old, bool) != isinstance(value, bool):
            node[key] = value


def save_section(section: dict[str, Any]) -> None:
    """Validate the whole block with the loader, write it atomically, reload everywhere."""
    folder = Path(current_settings().config_dir)
    text = render_file(folder / FILE, section)
    with tempfile.TemporaryDirectory(prefix="btcw-notify-") as scratch:
        for other in ("system.yml", "proxy.yml"):
            if (folder / other).exists():
                shutil.copy(folder / other, Path(scratch) / other)
        (Path(scratch) / FILE).write_text(text, encoding="utf-8")
        try:
            load_settings(scratch)
        except ConfigError as exc:
            raise SettingsError({_field_of(exc.key): exc.problem}) from exc
    target = folder / FILE
    fd, tmp = tempfile.mkstemp(prefix=".notifications.", suffix=".yml", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        if target.exists():
            shutil.copymode(target, tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:
        reload_settings()
    except ConfigError as exc:  # another file went bad meanwhile: say so, keep our write
        raise SettingsError({"__all__": f"saved, but the reload was refused: {exc}"}) from exc


def save_channel(form: Mapping[str, str]) -> str:
    """Add or update a channel from the form; its name."""
    name, original, entry = parse_channel_form(form)
    section = raw_section()
    channels = dict(section.get("channels") or {})
    if name != original and name in channels:
        raise SettingsError({"name": f"a channel named {name!r} exists already"})
    if original and original != name:
        channels.pop(original, None)
    channels[name] = entry
    section["channels"] = channels
    save_section(section)
    return name


def delete_channel(name: str) -> None:
    """Remove a channel from the file (its history stays)."""
    section = raw_section()
    channels = dict(section.get("channels") or {})
    if name not in channels:
        raise NotFound(f"No channel named {name!r} in {FILE}.")
    channels.pop(name)
    section["channels"] = channels
    _drop_references(section, name)
    save_section(section)


def _drop_references(section: dict, name: str) -> None:
    """A deleted channel's name leaves the priority and time-slot lists."""
    if name in CHANNEL_TYPES or name in CHANNEL_FAMILIES:
        return
    for rule in (section.get("priorities") or {}).values():
        if isinstance(rule, dict) and name in (rule.get("channels") or []):
            rule["channels"] = [c for c in rule["channels"] if c != name]
    for slot in (section.get("time_slots") or {}).values():
        if isinstance(slot, dict) and name in (slot.get("enabled_channels") or []):
            slot["enabled_channels"] = [c for c in slot["enabled_channels"] if c != name]


def rules_form(submitted=None) -> dict[str, Any]:
    """The rules as the form shows them: the live settings, or what was just submitted."""
    s = current_settings().notifications
    if submitted is not None:
        return {
            "timezone": submitted.get("timezone", ""),
            **{k: submitted.get(k, "") for k in ("same_pair_interval", "global_max_per_minute",
                                                  "batch_interval")},
            "priorities": {name: {"name": submitted.get(f"{name}_name", ""),
                                  "delay_seconds": submitted.get(f"{name}_delay_seconds", ""),
                                  "channels": submitted.get(f"{name}_channels", ""),
                                  "digest": submitted.get(f"{name}_digest") in ("1", "on")}
                           for name in s.priorities},
            "time_slots": {name: {
                "start_time": submitted.get(f"{name}_start_time", ""),
                "end_time": submitted.get(f"{name}_end_time", ""),
                "enabled_priorities": submitted.getlist(f"{name}_enabled_priorities"),
                "enabled_channels": submitted.get(f"{name}_enabled_channels", "")}
                for name in s.time_slots},
        }
    return {
        "timezone": s.timezone,
        "same_pair_interval": s.rate_limiting.same_pair_interval,
        "global_max_per_minute": s.rate_limiting.global_max_per_minute,
        "batch_interval": s.rate_limiting.batch_interval,
        "priorities": {name: {"name": p.name, "delay_seconds": p.delay_seconds,
                              "channels": ", ".join(p.channels), "digest": p.digest}
                       for name, p in s.priorities.items()},
        "time_slots": {name: {"start_time": t.start_time, "end_time": t.end_time,
                              "enabled_priorities": list(t.enabled_priorities),
                              "enabled_channels": ", ".join(t.enabled_channels)}
                       for name, t in s.time_slots.items()},
    }


def _int_field(form, key: str, errors: dict, minimum: int = 0) -> int | None:
    text = (form.get(key) or "").strip()
    try:
        value = int(text)
    except ValueError:
        errors[key] = f"must be a whole number, got {text!r}"
        return None
    if value < minimum:
        errors[key] = f"must be at least {minimum}"
        return None
    return value


def save_rules(form, getlist) -> None:
    """Priorities, rate limits, time slots and time zone from the form."""
    errors: dict[str, str] = {}
    section = raw_section()
    timezone = (form.get("timezone") or "").strip()
    if not timezone:
        errors["timezone"] = "required"
    limits = {}
    for key, minimum in (("same_pair_interval", 0), ("global_max_per_minute", 1),
                         ("batch_interval", 10)):
        value = _int_field(form, key, errors, minimum)
        if value is not None:
            limits[key] = value
    priorities = {}
    for name in current_settings().notifications.priorities:
        delay = _int_field(form, f"{name}_delay_seconds", errors, 0)
        priorities[name] = {
            "name": (form.get(f"{name}_name") or "").strip() or name,
            "delay_seconds": delay if delay is not None else 0,
            "channels": _split_list(form.get(f"{name}_channels") or ""),
            "digest": form.get(f"{name}_digest") in ("1", "on"),
        }
    slots = {}
    for name in current_settings().notifications.time_slots:
        slots[name] = {
            "start_time": (form.get(f"{name}_start_time") or "").strip(),
            "end_time": (form.get(f"{name}_end_time") or "").strip(),
            "enabled_priorities": [p for p in getlist(f"{name}_enabled_priorities")
                                   if p in ("P0", "P1", "P2")],
            "enabled_channels": _split_list(form.get(f"{name}_enabled_channels") or ""),
        }
    if errors:
        raise SettingsError(errors)
    section["timezone"] = timezone
    section["rate_limiting"] = {**(section.get("rate_limiting") or {}), **limits}
    section["priorities"] = priorities
    section["time_slots"] = slots
    save_section(section)


def templates_form() -> dict[str, Any]:
    """The template settings as the form shows them."""
    t = current_settings().notifications.templates
    return {"signal_template": t.signal_template, "custom_template": t.custom_template,
            "include_indicators": t.include_indicators,
            "include_chart_link": t.include_chart_link}


def save_templates(form) -> None:
    """Template choice and custom template; a custom template must render the sample."""
    errors: dict[str, str] = {}
    choice = (form.get("signal_template") or "").strip()
    if choice not in ("simple", "detailed", "custom"):
        errors["signal_template"] = "must be simple, detailed or custom"
    custom = (form.get("custom_template") or "").replace("\r\n", "\n")
    if choice == "custom":
        if not custom.strip():
            errors["custom_template"] = "required when the template is custom"
        else:
            try:
                render_custom(custom, sample_context(current_settings().system.web.public_url))
            except TemplateProblem as exc:
                errors["custom_template"] = str(exc)
    if errors:
        raise SettingsError(errors)
    section = raw_section()
    section["templates"] = {
        **(section.get("templates") or {}),
        "signal_template": choice, "custom_template": custom,
        "include_indicators": form.get("include_indicators") in ("1", "on"),
        "include_chart_link": form.get("include_chart_link") in ("1", "on"),
    }
    save_section(section)


def preview() -> tuple[str, str, str]:
    """The sample signal in the current template: (title, body, problem)."""
    settings = current_settings()
    rendered = render_signal(SampleSignal(), "DemoStrategy", settings.notifications,
                             settings.system.web.public_url)
    return rendered.title, rendered.body, rendered.render_error
