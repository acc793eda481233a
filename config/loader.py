"""Load config/system.yml, notifications.yml and proxy.yml into typed, validated settings.

Every key has a typed default (the dataclasses below); a file only overrides what it names.
A bad file raises ConfigError naming the file, the key and the problem.
"""

from __future__ import annotations

import dataclasses
import os
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from config import yaml_io

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CONFIG_FILES = ("system", "notifications", "proxy")


class ConfigError(ValueError):
    """A configuration file is missing, unreadable or holds a bad value."""

    def __init__(self, file: str, key: str, problem: str):
        self.file, self.key, self.problem = file, key, problem
        where = f"{file}: {key}" if key else file
        super().__init__(f"{where}: {problem}")


# ----------------------------------------------------------------------------- system.yml


@dataclass(frozen=True)
class MonitoringSettings:
    system_status_interval: int = 30
    strategy_status_interval: int = 30
    gateway_health_interval: int = 60
    capacity_interval: int = 300
    proxy_health_interval: int = 3600
    system_status_cache_ttl: int = 30
    strategy_status_cache_ttl: int = 30
    chart_data_cache_ttl: int = 600
    capacity_history_days: int = 7
    stall_minutes: int = 5
    restart_stalled: bool = False
    gateway_alert_below: int = 80
    status_timeout: float = 6.0  # seconds per bot API call in the status sweep
    status_concurrency: int = 64  # bots probed at once by the status sweep


@dataclass(frozen=True)
class PerformanceSettings:
    db_pool_min_size: int = 5
    db_pool_max_size: int = 20
    db_command_timeout: int = 60
    redis_max_connections: int = 20
    redis_retry_attempts: int = 3


@dataclass(frozen=True)
class SecuritySettings:
    session_expire_hours: int = 24
    max_login_attempts: int = 5
    lockout_duration_minutes: int = 30
    min_password_length: int = 8
    require_special_chars: bool = True
    cors_origins: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class BackupSettings:
    auto_backup_enabled: bool = True
    backup_interval_hours: int = 24
    backup_retention_days: int = 90
    backup_directory: str = "var/backups"


@dataclass(frozen=True)
class FreqtradeSettings:
    version: str = "2026.9"
    config_directory: str = "var/bots"
    strategies_directory: str = "user_data/strategies"
    logs_directory: str = "var/logs"
    data_directory: str = "var/freqtrade_data"
    startup_timeout: int = 60
    shutdown_timeout: int = 30
    health_check_interval: int = 30


@dataclass(frozen=True)
class CapacitySettings:
    max_strategies: int = 999
    port_range_start: int = 8081
    port_range_end: int = 9080
    alert_threshold: int = 80


@dataclass(frozen=True)
class RuntimeSettings:
    host: str = "127.0.0.1"
    supervisor_check_interval: float = 1.0
    max_crashes: int = 5
    crash_window_minutes: int = 10
    backoff_max_seconds: int = 60
    launcher: str = "fork"  # fork (bots forked from a preloaded zygote) | subprocess


@dataclass(frozen=True)
class GatewaySettings:
    host: str = "127.0.0.1"  # 0.0.0.0 to serve other machines (docker-compose does)
    port: int = 8080
    timeout: float = 10.0
    connect_timeout: float = 2.0
    route_cache_seconds: float = 5.0
    workers: int = 2


@dataclass(frozen=True)
class WebSettings:
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 2
    public_url: str = "http://127.0.0.1:8000"


@dataclass(frozen=True)
class SimulatorSettings:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 9999
    seed: int = 42
    pairs: list[str] = field(
        default_factory=lambda: ["BTC/USDT", "ETH/USDT", "SOL/USDT", "ADA/USDT", "DOT/USDT"]
    )
    replay: list[str] = field(default_factory=list)  # "PAIR=path/to.csv": replay real candles


@dataclass(frozen=True)
class SystemSettings:
    monitoring: MonitoringSettings = field(default_factory=MonitoringSettings)
    performance: PerformanceSettings = field(default_factory=PerformanceSettings)
    security: SecuritySettings = field(default_factory=SecuritySettings)
    backup: BackupSettings = field(default_factory=BackupSettings)
    freqtrade: FreqtradeSettings = field(default_factory=FreqtradeSettings)
    capacity: CapacitySettings = field(default_factory=CapacitySettings)
    runtime: RuntimeSettings = field(default_factory=RuntimeSettings)
    gateway: GatewaySettings = field(default_factory=GatewaySettings)
    web: WebSettings = field(default_factory=WebSettings)
    simulator: SimulatorSettings = field(default_factory=SimulatorSettings)


# ---------------------------------------------------------------------- notifications.yml


@dataclass(frozen=True)
class RateLimitSettings:
    same_pair_interval: int = 300
    global_max_per_minute: int = 5
    batch_interval: int = 300


@dataclass(frozen=True)
class PrioritySettings:
    name: str = ""
    delay_seconds: int = 0  # the latest a notification of this priority goes out
    channels: list[str] = field(default_factory=list)
    digest: bool = False  # held and sent in the next digest instead of one by one


def _default_priorities() -> dict[str, PrioritySettings]:
    return {
        "P0": PrioritySettings("Immediate", 0, ["sms", "feishu", "wechat"]),
        "P1": PrioritySettings("Within a minute", 60, ["feishu", "wechat", "email"]),
        "P2": PrioritySettings("Digest", 300, ["email"], digest=True),
    }


@dataclass(frozen=True)
class TimeSlotSettings:
    start_time: str = "09:00"
    end_time: str = "18:00"
    enabled_priorities: list[str] = field(default_factory=list)
    enabled_channels: list[str] = field(default_factory=list)


def _default_time_slots() -> dict[str, TimeSlotSettings]:
    return {
        "work_hours": TimeSlotSettings("09:00", "18:00", ["P0", "P1", "P2"], ["all"]),
        "rest_hours": TimeSlotSettings("18:00", "09:00", ["P0"], ["sms"]),
    }


@dataclass(frozen=True)
class TemplateSettings:
    signal_template: str = "simple"
    custom_template: str = ""
    include_indicators: bool = True
    include_chart_link: bool = True
    include_chart_screenshot: bool = False


# Channel types: type -> (family, required keys, optional keys). A family ("sms", "wechat", ...)
# is what priorities and time slots usually name; they may also name a type, a channel, or "all".
CHANNEL_COMMON_KEYS = ("type", "enabled", "timeout", "max_attempts", "retry_backoff",
                       "verify_tls")
CHANNEL_TYPES: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "inbox": ("inbox", (), ()),
    "sms": ("sms", ("urls",), ()),
    "sms_gateway": ("sms", ("url",), ("method", "headers", "body_template", "content_type",
                                       "to")),
    "feishu": ("feishu", ("webhook_url",), ("secret", "base_url")),
    "lark": ("feishu", ("webhook_url",), ("secret", "base_url")),
    "wecom_bot": ("wechat", ("webhook_url",), ("base_url",)),
    "wecom_app": ("wechat", ("corp_id", "corp_secret", "agent_id"), ("to_user", "base_url")),
    "email": ("email", ("host", "from_addr", "to"), ("port", "security", "username",
                                                     "password")),
    "telegram": ("telegram", ("bot_token", "chat_id"), ("base_url",)),
    "discord": ("discord", ("webhook_url",), ("base_url",)),
    "dingtalk": ("dingtalk", ("webhook_url",), ("secret", "base_url")),
    "webhook": ("webhook", ("webhook_url",), ("secret", "headers", "base_url")),
    "apprise": ("apprise", ("urls",), ()),
}
CHANNEL_FAMILIES = tuple(sorted({family for family, _, _ in CHANNEL_TYPES.values()}))


@dataclass(frozen=True)
class ChannelSettings:
    """One notification channel; which keys apply depends on `type` (CHANNEL_TYPES)."""

    type: str = "inbox"
    enabled: bool = True
    timeout: float = 10.0  # seconds per request
    max_attempts: int = 5  # sends tried before the delivery is marked failed
    retry_backoff: float = 5.0  # seconds before the 2nd attempt, doubled each time (max 300)
    verify_tls: bool = True  # check the server's certificate (https, SMTP TLS)
    base_url: str = ""  # replaces the scheme and host of the vendor URL (relays, tests)
    webhook_url: str = ""
    secret: str = ""  # signing secret (feishu, lark, dingtalk, webhook)
    bot_token: str = ""
    chat_id: str = ""
    corp_id: str = ""
    corp_secret: str = ""
    agent_id: int = 0
    to_user: str = "@all"
    host: str = ""
    port: int = 0  # 0: 587 for starttls, 465 for ssl, 25 for none
    security: str = "starttls"  # starttls | ssl | none
    username: str = ""
    password: str = ""
    from_addr: str = ""
    to: list[str] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)  # apprise URLs
    url: str = ""  # generic SMS gateway endpoint (may use {{ to }} / {{ message }})
    method: str = "POST"
    headers: dict[str, str] = field(default_factory=dict)
    body_template: str = ""
    content_type: str = "application/json"

    @property
    def family(self) -> str:
        """The family priorities and time slots name (sms, feishu, wechat, email, ...)."""
        return CHANNEL_TYPES.get(self.type, (self.type, (), ()))[0]


def _default_channels() -> dict[str, ChannelSettings]:
    return {"inbox": ChannelSettings(type="inbox")}


@dataclass(frozen=True)
class NotificationSettings:
    timezone: str = "Asia/Shanghai"
    rate_limiting: RateLimitSettings = field(default_factory=RateLimitSettings)
    priorities: dict[str, PrioritySettings] = field(default_factory=_default_priorities)
    time_slots: dict[str, TimeSlotSettings] = field(default_factory=_default_time_slots)
    templates: TemplateSettings = field(default_factory=TemplateSettings)
    channels: dict[str, ChannelSettings] = field(default_factory=_default_channels)


# ------------------------------------------------------------------------------ proxy.yml


@dataclass(frozen=True)
class ProxyHealthSettings:
    success_rate_threshold: int = 90
    max_latency_ms: int = 500
    max_consecutive_failures: int = 3
    test_url: str = "https://api.binance.com/api/v3/ping"


@dataclass(frozen=True)
class ProxyFailoverSettings:
    enable_direct_connection: bool = True
    auto_recovery_check_interval: int = 600
    recovery_success_count: int = 3


@dataclass(frozen=True)
class ProxyMonitoringSettings:
    metrics_retention_hours: int = 24
    alert_on_degradation: bool = True
    latency_spike_threshold: int = 200


@dataclass(frozen=True)
class ProxySettings:
    health_check: ProxyHealthSettings = field(default_factory=ProxyHealthSettings)
    failover: ProxyFailoverSettings = field(default_factory=ProxyFailoverSettings)
    monitoring: ProxyMonitoringSettings = field(default_factory=ProxyMonitoringSettings)


# ----------------------------------------------------------------------------- the whole


@dataclass(frozen=True)
class Settings:
    """All three files, validated; `sources` says which file each part came from."""

    system: SystemSettings = field(default_factory=SystemSettings)
    notifications: NotificationSettings = field(default_factory=NotificationSettings)
    proxy: ProxySettings = field(default_factory=ProxySettings)
    config_dir: str = ""
    raw: dict[str, dict] = field(default_factory=dict)


# Extra checks beyond the type: (section path, key) -> (predicate, message)
_RANGES: dict[str, tuple[typing.Callable[[Any], bool], str]] = {
    "system.capacity.max_strategies": (lambda v: 1 <= v <= 100_000, "must be 1..100000"),
    "system.capacity.port_range_start": (lambda v: 1024 <= v <= 65535, "must be 1024..65535"),
    "system.capacity.port_range_end": (lambda v: 1024 <= v <= 65535, "must be 1024..65535"),
    "system.capacity.alert_threshold": (lambda v: 0 <= v <= 100, "must be 0..100"),
    "system.gateway.port": (lambda v: 1 <= v <= 65535, "must be 1..65535"),
    "system.web.port": (lambda v: 1 <= v <= 65535, "must be 1..65535"),
    "system.simulator.port": (lambda v: 1 <= v <= 65535, "must be 1..65535"),
    "system.freqtrade.startup_timeout": (lambda v: 1 <= v <= 3600, "must be 1..3600 seconds"),
    "system.freqtrade.shutdown_timeout": (lambda v: 1 <= v <= 3600, "must be 1..3600 seconds"),
    "system.security.min_password_length": (lambda v: 1 <= v <= 128, "must be 1..128"),
    "system.security.max_login_attempts": (lambda v: v >= 1, "must be at least 1"),
    "system.monitoring.gateway_alert_below": (lambda v: 0 <= v <= 100, "must be 0..100"),
    "system.monitoring.status_timeout": (lambda v: 0.1 <= v <= 60, "must be 0.1..60 seconds"),
    "system.monitoring.status_concurrency": (lambda v: 1 <= v <= 1000, "must be 1..1000"),
    "notifications.rate_limiting.global_max_per_minute": (lambda v: v >= 1, "must be >= 1"),
    "proxy.health_check.success_rate_threshold": (lambda v: 0 <= v <= 100, "must be 0..100"),
}
_TIME_RE = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, file: str, key: str) -> Any:
    """Convert one YAML value to the annotated type, or raise ConfigError naming the key."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(file, key, f"must be a mapping, got {type(value).__name__}")
        return _build(tp, value, file, key)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(file, key, f"must be a list, got {type(value).__name__}")
        (item_tp,) = typing.get_args(tp)
        return [_convert(v, item_tp, file, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(file, key, f"must be a mapping, got {type(value).__name__}")
        _, val_tp = typing.get_args(tp)
        return {str(k): _convert(v, val_tp, file, f"{key}.{k}") for k, v in value.items()}
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(file, key, f"must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(file, key, f"must be a whole number, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(file, key, f"must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(file, key, f"must be text, got {value!r}")
        return value
    raise ConfigError(file, key, f"unsupported type {_type_name(tp)}")  # pragma: no cover


def _build(cls: type, data: dict, file: str, prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for k, v in data.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if k not in names or k in ("config_dir", "raw"):
            raise ConfigError(file, key, "unknown key")
        if v is None:
            continue  # an empty value keeps the default
        converted = _convert(v, hints[k], file, key)
        check = _RANGES.get(key)
        if check and not check[0](converted):
            raise ConfigError(file, key, f"{check[1]}, got {v!r}")
        kwargs[k] = converted
    return cls(**kwargs)


def _read_yaml(path: Path) -> dict:
    name = path.name
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(name, "", f"cannot be read: {exc}") from exc
    try:
        data = yaml_io.load(text)
    except yaml_io.YAMLError as exc:
        where, problem = yaml_io.error_location(exc)
        raise ConfigError(name, "", f"is not valid YAML{where}: {problem}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(name, "", "must hold a mapping at the top level")
    return data


_ENV_RE = re.compile(r"\$\{([A-Z0-9_]+)\}")


def _expand_env(value: Any) -> Any:
    """Replace ${NAME} in strings with the environment variable (secrets stay out of files)."""
    if isinstance(value, str):
        return _ENV_RE.sub(lambda m: os.environ.get(m.group(1), ""), value)
    if isinstance(value, list):
        return [_expand_env(v) for v in value]
    if isinstance(value, dict):
        return {k: _expand_env(v) for k, v in value.items()}
    return value


def _section(file: str, data: dict, top: str) -> dict:
    unknown = [k for k in data if k != top]
    if unknown:
        raise ConfigError(file, str(unknown[0]), f"unknown key (the file holds one '{top}:' block)")
    section = data.get(top) or {}
    if not isinstance(section, dict):
        raise ConfigError(file, top, "must be a mapping")
    return section


def _validate_whole(s: Settings) -> None:
    cap = s.system.capacity
    if cap.port_range_end < cap.port_range_start:
        raise ConfigError(
            "system.yml", "system.capacity.port_range_end", "must not be below port_range_start"
        )
    if s.system.runtime.launcher not in ("subprocess", "fork"):
        raise ConfigError(
            "system.yml", "system.runtime.launcher",
            f"must be subprocess or fork, got {s.system.runtime.launcher!r}",
        )
    for name, slot in s.notifications.time_slots.items():
        for k in ("start_time", "end_time"):
            if not _TIME_RE.match(getattr(slot, k)):
                raise ConfigError(
                    "notifications.yml",
                    f"notifications.time_slots.{name}.{k}",
                    f"must be HH:MM, got {getattr(slot, k)!r}",
                )
    for name in s.notifications.priorities:
        if name not in ("P0", "P1", "P2"):
            raise ConfigError(
                "notifications.yml", f"notifications.priorities.{name}", "must be P0, P1 or P2"
            )
    try:
        import zoneinfo

        zoneinfo.ZoneInfo(s.notifications.timezone)
    except Exception as exc:  # noqa: BLE001 - any failure means the zone is unusable
        raise ConfigError(
            "notifications.yml",
            "notifications.timezone",
            f"unknown time zone {s.notifications.timezone!r}",
        ) from exc
    if s.notifications.templates.signal_template not in ("simple", "detailed", "custom"):
        raise ConfigError(
            "notifications.yml",
            "notifications.templates.signal_template",
            "must be simple, detailed or custom",
        )
    _validate_channels(s)


_CHANNEL_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


def _validate_channels(s: Settings) -> None:
    """Channel types, the keys each type takes, and the channel names rules refer to."""
    file = "notifications.yml"
    raw = (s.raw.get("notifications") or {}).get("notifications") or {}
    raw_channels = raw.get("channels") or {}
    for name, channel in s.notifications.channels.items():
        key = f"notifications.channels.{name}"
        if not _CHANNEL_NAME_RE.match(name):
            raise ConfigError(file, key, "channel names are 1-32 of a-z, 0-9, _ and -, "
                              "starting with a letter or digit")
        if raw_channels.get(name) is not None and "type" not in raw_channels[name]:
            raise ConfigError(file, f"{key}.type", "required: one of " + ", ".join(CHANNEL_TYPES))
        if channel.type not in CHANNEL_TYPES:
            raise ConfigError(file, f"{key}.type", f"unknown channel type {channel.type!r}; "
                              f"one of {', '.join(CHANNEL_TYPES)}")
        _, required, optional = CHANNEL_TYPES[channel.type]
        allowed = set(CHANNEL_COMMON_KEYS) | set(required) | set(optional)
        for given in raw_channels.get(name) or {}:
            if given not in allowed:
                raise ConfigError(file, f"{key}.{given}",
                                  f"not used by a {channel.type} channel")
        if channel.enabled:
            for needed in required:
                if getattr(channel, needed) in ("", [], 0):
                    raise ConfigError(file, f"{key}.{needed}",
                                      f"required for a {channel.type} channel")
        if channel.timeout <= 0 or channel.timeout > 300:
            raise ConfigError(file, f"{key}.timeout", "must be more than 0 and at most 300")
        if not 1 <= channel.max_attempts <= 50:
            raise ConfigError(file, f"{key}.max_attempts", "must be 1..50")
        if channel.retry_backoff < 0:
            raise ConfigError(file, f"{key}.retry_backoff", "must not be negative")
        if channel.security not in ("starttls", "ssl", "none"):
            raise ConfigError(file, f"{key}.security", "must be starttls, ssl or none")
        if channel.method.upper() not in ("GET", "POST", "PUT"):
            raise ConfigError(file, f"{key}.method", "must be GET, POST or PUT")
        for url_key in ("base_url", "webhook_url", "url"):
            value = getattr(channel, url_key)
            if value and not value.startswith(("http://", "https://")):
                raise ConfigError(file, f"{key}.{url_key}", "must start with http:// or https://")
    known = set(s.notifications.channels) | set(CHANNEL_TYPES) | set(CHANNEL_FAMILIES) | {"all"}
    rules = [(f"notifications.priorities.{n}.channels", p.channels)
             for n, p in s.notifications.priorities.items()]
    rules += [(f"notifications.time_slots.{n}.enabled_channels", t.enabled_channels)
              for n, t in s.notifications.time_slots.items()]
    for key, names in rules:
        for i, name in enumerate(names):
            if name not in known:
                raise ConfigError(file, f"{key}[{i}]", f"{name!r} is neither a channel, a "
                                  f"channel type nor a family ({', '.join(CHANNEL_FAMILIES)})")
    for name, slot in s.notifications.time_slots.items():
        for i, p in enumerate(slot.enabled_priorities):
            if p not in ("P0", "P1", "P2"):
                raise ConfigError(file, f"notifications.time_slots.{name}.enabled_priorities[{i}]",
                                  f"must be P0, P1 or P2, got {p!r}")
    if s.notifications.rate_limiting.batch_interval < 10:
        raise ConfigError(file, "notifications.rate_limiting.batch_interval",
                          "must be at least 10 seconds")
    if s.notifications.rate_limiting.same_pair_interval < 0:
        raise ConfigError(file, "notifications.rate_limiting.same_pair_interval",
                          "must not be negative")


def config_dir() -> Path:
    """The folder holding the three files: $BTCW_CONFIG_DIR or the project's config/."""
    return Path(os.environ.get("BTCW_CONFIG_DIR") or PROJECT_ROOT / "config")


def load_settings(directory: str | os.PathLike | None = None) -> Settings:
    """Read and validate all three files; raise ConfigError on the first problem."""
    folder = Path(directory) if directory else config_dir()
    raw = {name: _read_yaml(folder / f"{name}.yml") for name in CONFIG_FILES}
    system = _build(SystemSettings, _section("system.yml", raw["system"], "system"),
                    "system.yml", "system")
    notifications = _build(
        NotificationSettings,
        _expand_env(_section("notifications.yml", raw["notifications"], "notifications")),
        "notifications.yml",
        "notifications",
    )
    proxy = _build(ProxySettings, _section("proxy.yml", raw["proxy"], "proxy"),
                   "proxy.yml", "proxy")
    settings = Settings(system, notifications, proxy, str(folder), raw)
    _validate_whole(settings)
    return settings


def as_dict(obj: Any) -> Any:
    """Settings (or a part) as plain JSON-ready data."""
    if dataclasses.is_dataclass(obj):
        return {f.name: as_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                if f.name != "raw"}
    if isinstance(obj, dict):
        return {k: as_dict(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [as_dict(v) for v in obj]
    return obj


__all__ = ["ConfigError", "Settings", "load_settings", "as_dict", "config_dir", "PROJECT_ROOT",
           "CHANNEL_TYPES", "CHANNEL_FAMILIES", "ChannelSettings"]
