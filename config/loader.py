"""Load config/system.yml, notifications.yml and proxy.yml into typed, validated settings.

Every key has a typed default (the dataclasses below); a file only overrides what it names.
A bad file raises ConfigError naming the file, the key and the problem.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import re
import typing
from dataclasses import field
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    with_config,
)

from config import yaml_io

log = logging.getLogger(__name__)
PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Strict field types (a quoted "5" is not a number, "yes" is not true) and no unknown keys.
_STRICT = ConfigDict(extra="forbid")
Port = Annotated[StrictInt, Field(ge=1, le=65535)]
Port1024 = Annotated[StrictInt, Field(ge=1024, le=65535)]
Percent = Annotated[StrictInt, Field(ge=0, le=100)]
Origin = Annotated[StrictStr, StringConstraints(pattern=r"^https?://[A-Za-z0-9.\-\[\]:]+$")]


def dataclass(cls=None, /, **kwargs):
    """A frozen settings dataclass that pydantic validates strictly."""
    def wrap(c):
        return with_config(_STRICT)(dataclasses.dataclass(frozen=True)(c))
    return wrap if cls is None else wrap(cls)

CONFIG_FILES = ("system", "notifications", "proxy")


class ConfigError(ValueError):
    """A configuration file is missing, unreadable or holds a bad value."""

    def __init__(self, file: str, key: str, problem: str):
        self.file, self.key, self.problem = file, key, problem
        where = f"{file}: {key}" if key else file
        super().__init__(f"{where}: {problem}")


# ----------------------------------------------------------------------------- system.yml


@dataclass
class MonitoringSettings:
    system_status_interval: StrictInt = 30
    strategy_status_interval: StrictInt = 30
    gateway_health_interval: StrictInt = 60
    capacity_interval: StrictInt = 300
    system_status_cache_ttl: StrictInt = 30
    strategy_status_cache_ttl: StrictInt = 30
    capacity_history_days: StrictInt = 7
    stall_minutes: StrictInt = 5
    restart_stalled: StrictBool = False
    gateway_alert_below: Percent = 80
    # seconds per bot API call in the status sweep, and bots probed at once by it
    status_timeout: Annotated[StrictFloat, Field(ge=0.1, le=60)] = 6.0
    status_concurrency: Annotated[StrictInt, Field(ge=1, le=1000)] = 64
    # a worker, cron, supervisor or Redis down this long raises a P0 alert (and its return one)
    part_down_alert_after: Annotated[StrictFloat, Field(ge=0, le=3600)] = 15.0
    # /health fails when the oldest job waiting in a queue has waited longer than this
    queue_wait_limit: Annotated[StrictInt, Field(ge=5, le=86400)] = 120


@dataclass
class PerformanceSettings:
    db_pool_min_size: StrictInt = 5
    db_pool_max_size: StrictInt = 20
    redis_max_connections: StrictInt = 20


@dataclass
class SecuritySettings:
    session_expire_hours: StrictInt = 24
    max_login_attempts: Annotated[StrictInt, Field(ge=1)] = 5  # per account and source address
    account_lockout_attempts: Annotated[StrictInt, Field(ge=1)] = 50  # all sources together
    lockout_duration_minutes: StrictInt = 30
    min_password_length: Annotated[StrictInt, Field(ge=1, le=128)] = 8
    require_special_chars: StrictBool = True
    # origins (scheme://host[:port]) whose pages may call the gateway from a browser
    cors_origins: list[Origin] = field(default_factory=list)


@dataclass
class FreqtradeSettings:
    version: StrictStr = "2026.9"
    config_directory: StrictStr = "var/bots"
    strategies_directory: StrictStr = "user_data/strategies"
    logs_directory: StrictStr = "var/logs"
    versions_directory: StrictStr = "var/freqtrade"  # venvs of releases besides the default
    startup_timeout: Annotated[StrictInt, Field(ge=1, le=3600)] = 60
    shutdown_timeout: Annotated[StrictInt, Field(ge=1, le=3600)] = 30
    health_check_interval: StrictInt = 30


@dataclass
class BackupSettings:
    directory: StrictStr = "var/backups"  # where backups are written (var/… = BTCW_VAR_DIR)
    daily_at: Annotated[StrictStr, StringConstraints(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")] = \
        "03:30"  # HH:MM in notifications.timezone; the daily backup
    enabled: StrictBool = True  # the daily backup; `flask backup run` works either way
    retention_days: Annotated[StrictInt, Field(ge=1, le=36500)] = 90
    keep_last: Annotated[StrictInt, Field(ge=1, le=1000)] = 7  # never pruned, however old
    min_free_mb: Annotated[StrictInt, Field(ge=0)] = 500  # left free after the backup


@dataclass
class CapacitySettings:
    max_strategies: Annotated[StrictInt, Field(ge=1, le=100_000)] = 999
    port_range_start: Port1024 = 8081
    port_range_end: Port1024 = 9080
    alert_threshold: Percent = 80


@dataclass
class RuntimeSettings:
    host: StrictStr = "127.0.0.1"
    supervisor_check_interval: StrictFloat = 1.0
    max_crashes: StrictInt = 5
    crash_window_minutes: StrictInt = 10
    backoff_max_seconds: StrictInt = 60
    launcher: StrictStr = "fork"  # fork (bots forked from a preloaded zygote) | subprocess
    max_bots_per_host: Annotated[StrictInt, Field(ge=0, le=10000)] = 0  # 0 = free memory decides
    reschedule_lost: StrictBool = False  # bots of a lost host start on another live host
    trade_copy_interval: Annotated[StrictInt, Field(ge=5, le=86400)] = 300  # trade DB copies


@dataclass
class GatewaySettings:
    host: StrictStr = "127.0.0.1"  # 0.0.0.0 to serve other machines (docker-compose does)
    port: Port = 8080
    timeout: StrictFloat = 10.0
    connect_timeout: StrictFloat = 2.0
    route_cache_seconds: StrictFloat = 5.0
    workers: StrictInt = 2
    public_url: StrictStr = ""  # "" = http://<host>:<port> (127.0.0.1 for 0.0.0.0)
    frequi_dir: StrictStr = ""  # a FreqUI build served at the gateway's / ("" = none)

    @property
    def browser_url(self) -> str:
        """Where a browser reaches the gateway."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host  # noqa: S104
        return f"http://{host}:{self.port}"


@dataclass
class WebSettings:
    host: StrictStr = "127.0.0.1"
    port: Port = 8000
    workers: StrictInt = 2
    public_url: StrictStr = "http://127.0.0.1:8000"


@dataclass
class SimulatorSettings:
    enabled: StrictBool = True
    host: StrictStr = "127.0.0.1"
    port: Port = 9999
    seed: StrictInt = 42
    pairs: list[StrictStr] = field(
        default_factory=lambda: ["BTC/USDT", "ETH/USDT", "SOL/USDT", "ADA/USDT", "DOT/USDT"]
    )
    replay: list[StrictStr] = field(default_factory=list)  # "PAIR=path/to.csv": replay real candles
    weight_limit: Annotated[StrictInt, Field(ge=0, le=10**7)] = 6000  # per IP per minute; 0 = off
    ban_seconds: Annotated[StrictInt, Field(ge=1, le=10**6)] = 120  # first 418 ban, then doubled


@dataclass
class ExchangeRelaySettings:
    enabled: StrictBool = True  # bots on binance/simulator fetch market data through the relay
    host: StrictStr = "127.0.0.1"
    port: Port = 9990
    weight_share: Annotated[StrictInt, Field(ge=1, le=100)] = 80  # % of each IP's limit used
    weight_limit: Annotated[StrictInt, Field(ge=1, le=10**7)] = 6000  # Binance's, per IP/minute
    use_direct: StrictBool = True  # this host's own IP is one upstream besides the proxies
    forming_ttl: Annotated[StrictFloat, Field(ge=0, le=60)] = 5.0  # latest candles, same candle
    ticker_ttl: Annotated[StrictFloat, Field(ge=0, le=60)] = 1.0  # tickers, order books, prices
    exchange_info_ttl: Annotated[StrictInt, Field(ge=0, le=86400)] = 300
    cache_mb: Annotated[StrictInt, Field(ge=1, le=4096)] = 64
    timeout: Annotated[StrictFloat, Field(ge=0.5, le=120)] = 10.0  # seconds per upstream call
    binance_url: StrictStr = "https://api.binance.com"


@dataclass
class CalibrationSettings:
    horizon: Annotated[StrictInt, Field(ge=1, le=24)] = 4  # candles (1, 4 or 24)
    min_signals: Annotated[StrictInt, Field(ge=1, le=10**7)] = 100  # scored, else no suggestion
    min_per_level: Annotated[StrictInt, Field(ge=1, le=10**7)] = 20  # above a cut-point
    strong_target: Percent = 60  # % right a cut-point must reach
    medium_target: Percent = 55
    weak_target: Percent = 50


@dataclass
class ConsensusSettings:
    enabled: StrictBool = True
    min_strategies: Annotated[StrictInt, Field(ge=2, le=999)] = 3  # distinct strategies...
    window_candles: Annotated[StrictInt, Field(ge=1, le=100)] = 3  # ...within this many candles
    raise_levels: Annotated[StrictInt, Field(ge=0, le=2)] = 1  # consensus level: raised, P0 top


@dataclass
class SignalQualitySettings:
    calibration: CalibrationSettings = field(default_factory=CalibrationSettings)
    consensus: ConsensusSettings = field(default_factory=ConsensusSettings)
    track_record_min: Annotated[StrictInt, Field(ge=0, le=10**6)] = 30  # scored signals of a
    # level before notifications carry its track record (0 = never)


@dataclass
class SystemSettings:
    monitoring: MonitoringSettings = field(default_factory=MonitoringSettings)
    performance: PerformanceSettings = field(default_factory=PerformanceSettings)
    security: SecuritySettings = field(default_factory=SecuritySettings)
    freqtrade: FreqtradeSettings = field(default_factory=FreqtradeSettings)
    capacity: CapacitySettings = field(default_factory=CapacitySettings)
    runtime: RuntimeSettings = field(default_factory=RuntimeSettings)
    gateway: GatewaySettings = field(default_factory=GatewaySettings)
    web: WebSettings = field(default_factory=WebSettings)
    simulator: SimulatorSettings = field(default_factory=SimulatorSettings)
    exchange_relay: ExchangeRelaySettings = field(default_factory=ExchangeRelaySettings)
    signals: SignalQualitySettings = field(default_factory=SignalQualitySettings)
    backups: BackupSettings = field(default_factory=BackupSettings)


# ---------------------------------------------------------------------- notifications.yml


@dataclass
class RateLimitSettings:
    same_pair_interval: StrictInt = 300
    global_max_per_minute: Annotated[StrictInt, Field(ge=1)] = 5
    batch_interval: StrictInt = 300


@dataclass
class PrioritySettings:
    name: StrictStr = ""
    delay_seconds: StrictInt = 0  # the latest a notification of this priority goes out
    channels: list[StrictStr] = field(default_factory=list)
    digest: StrictBool = False  # held and sent in the next digest instead of one by one


def _default_priorities() -> dict[str, PrioritySettings]:
    return {
        "P0": PrioritySettings("Immediate", 0, ["sms", "feishu", "wechat"]),
        "P1": PrioritySettings("Within a minute", 60, ["feishu", "wechat", "email"]),
        "P2": PrioritySettings("Digest", 300, ["email"], digest=True),
    }


@dataclass
class TimeSlotSettings:
    start_time: StrictStr = "09:00"
    end_time: StrictStr = "18:00"
    enabled_priorities: list[StrictStr] = field(default_factory=list)
    enabled_channels: list[StrictStr] = field(default_factory=list)


def _default_time_slots() -> dict[str, TimeSlotSettings]:
    return {
        "work_hours": TimeSlotSettings("09:00", "18:00", ["P0", "P1", "P2"], ["all"]),
        "rest_hours": TimeSlotSettings("18:00", "09:00", ["P0"], ["sms"]),
    }


@dataclass
class TemplateSettings:
    signal_template: StrictStr = "simple"
    custom_template: StrictStr = ""
    include_indicators: StrictBool = True
    include_chart_link: StrictBool = True


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


@dataclass
class ChannelSettings:
    """One notification channel; which keys apply depends on `type` (CHANNEL_TYPES)."""

    type: StrictStr = "inbox"
    enabled: StrictBool = True
    timeout: StrictFloat = 10.0  # seconds per request
    max_attempts: StrictInt = 5  # sends tried before the delivery is marked failed
    retry_backoff: StrictFloat = 5.0  # seconds before the 2nd attempt, doubled each time (max 300)
    verify_tls: StrictBool = True  # check the server's certificate (https, SMTP TLS)
    base_url: StrictStr = ""  # replaces the scheme and host of the vendor URL (relays, tests)
    webhook_url: StrictStr = ""
    secret: StrictStr = ""  # signing secret (feishu, lark, dingtalk, webhook)
    bot_token: StrictStr = ""
    chat_id: StrictStr = ""
    corp_id: StrictStr = ""
    corp_secret: StrictStr = ""
    agent_id: StrictInt = 0
    to_user: StrictStr = "@all"
    host: StrictStr = ""
    port: StrictInt = 0  # 0: 587 for starttls, 465 for ssl, 25 for none
    security: StrictStr = "starttls"  # starttls | ssl | none
    username: StrictStr = ""
    password: StrictStr = ""
    from_addr: StrictStr = ""
    to: list[StrictStr] = field(default_factory=list)
    urls: list[StrictStr] = field(default_factory=list)  # apprise URLs
    url: StrictStr = ""  # generic SMS gateway endpoint (may use {{ to }} / {{ message }})
    method: StrictStr = "POST"
    headers: dict[str, StrictStr] = field(default_factory=dict)
    body_template: StrictStr = ""
    content_type: StrictStr = "application/json"

    @property
    def family(self) -> str:
        """The family priorities and time slots name (sms, feishu, wechat, email, ...)."""
        return CHANNEL_TYPES.get(self.type, (self.type, (), ()))[0]


def _default_channels() -> dict[str, ChannelSettings]:
    return {"inbox": ChannelSettings(type="inbox")}


@dataclass
class NotificationSettings:
    timezone: StrictStr = "Asia/Shanghai"
    rate_limiting: RateLimitSettings = field(default_factory=RateLimitSettings)
    priorities: dict[str, PrioritySettings] = field(default_factory=_default_priorities)
    time_slots: dict[str, TimeSlotSettings] = field(default_factory=_default_time_slots)
    templates: TemplateSettings = field(default_factory=TemplateSettings)
    channels: dict[str, ChannelSettings] = field(default_factory=_default_channels)


# ------------------------------------------------------------------------------ proxy.yml


@dataclass
class ProxyHealthSettings:
    interval: Annotated[StrictInt, Field(ge=10, le=86400)] = 3600  # seconds between checks
    timeout: Annotated[StrictFloat, Field(ge=0.5, le=60)] = 5.0  # seconds per check request
    success_rate: Percent = 90  # % of the last `window` checks, else down
    max_latency_ms: Annotated[StrictInt, Field(ge=1, le=60000)] = 500
    failures_to_down: Annotated[StrictInt, Field(ge=1, le=100)] = 3
    successes_to_up: Annotated[StrictInt, Field(ge=1, le=100)] = 3
    window: Annotated[StrictInt, Field(ge=1, le=1000)] = 10
    url: StrictStr = ""  # what a check requests; "" = the exchange's ping


@dataclass
class ProxySwitchingSettings:
    allow_direct: StrictBool = False  # fail over to a direct connection when no proxy is up


@dataclass
class ProxySettings:
    """proxy.yml: health checks of the exchange proxies and failover."""

    health: ProxyHealthSettings = field(default_factory=ProxyHealthSettings)
    switching: ProxySwitchingSettings = field(default_factory=ProxySwitchingSettings)


# ----------------------------------------------------------------------------- the whole


@dataclass
class Settings:
    """All three files, validated; `sources` says which file each part came from."""

    system: SystemSettings = field(default_factory=SystemSettings)
    notifications: NotificationSettings = field(default_factory=NotificationSettings)
    proxy: ProxySettings = field(default_factory=ProxySettings)
    config_dir: StrictStr = ""
    raw: dict[str, dict] = field(default_factory=dict)


_TIME_RE = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
# Keys an earlier release read that do nothing now: a file that still has them loads, with a
# warning in the log, instead of failing on an unknown key.
RETIRED_KEYS = frozenset({
    "system.monitoring.proxy_health_interval", "system.monitoring.chart_data_cache_ttl",
    "system.performance.db_command_timeout", "system.performance.redis_retry_attempts",
    "system.backup", "system.freqtrade.data_directory",
    "notifications.templates.include_chart_screenshot",
    "proxy.health_check", "proxy.failover", "proxy.monitoring",
})


def _drop_retired_and_empty(data: Any, path: str) -> Any:
    """The file's data without retired keys (logged) and empty values (they keep the default)."""
    if not isinstance(data, dict):
        return data
    kept = {}
    for k, v in data.items():
        key = f"{path}.{k}"
        if key in RETIRED_KEYS:
            log.warning("config: %s is no longer used and is ignored; remove it", key)
        elif v is not None:
            kept[k] = _drop_retired_and_empty(v, key)
    return kept


def _problem(error: dict, low: float | None, high: float | None) -> str:
    """Today's wording of one pydantic error: what the value must be, and what it was."""
    kind, value = error["type"], error.get("input")
    if kind in ("unexpected_keyword_argument", "extra_forbidden"):
        return "unknown key"
    if kind in ("greater_than_equal", "less_than_equal"):
        if low is not None and high is not None:
            return f"must be {low:g}..{high:g}, got {value!r}"
        return f"must be at least {low:g}, got {value!r}"
    wanted = {
        "int_type": "a whole number", "int_from_float": "a whole number",
        "float_type": "a number", "bool_type": "true or false", "string_type": "text",
    }.get(kind)
    if wanted:
        return f"must be {wanted}, got {value!r}"
    if kind == "string_pattern_mismatch" and "://" in error.get("ctx", {}).get("pattern", ""):
        return f"must be an origin like http://host:8080 (scheme, host, port; no path), " \
               f"got {value!r}"
    if kind == "list_type":
        return f"must be a list, got {type(value).__name__}"
    if kind in ("dict_type", "dataclass_type", "dataclass_exact_type", "model_type"):
        return f"must be a mapping, got {type(value).__name__}"
    return error["msg"]


def _bounds(cls: type, loc: tuple) -> tuple[float | None, float | None]:
    """(ge, le) of the field a pydantic error location points at."""
    tp: Any = cls
    for part in loc:
        if dataclasses.is_dataclass(tp) and isinstance(part, str):
            tp = typing.get_type_hints(tp, include_extras=True).get(part)
        elif typing.get_origin(tp) in (list, dict):
            tp = typing.get_args(tp)[-1]
        else:
            return None, None
    low = high = None
    for constraint in getattr(tp, "__metadata__", ()):
        for item in getattr(constraint, "metadata", [constraint]):
            low = getattr(item, "ge", low)
            high = getattr(item, "le", high)
    return low, high


def _build(cls: type, data: dict, file: str, prefix: str) -> Any:
    """Validate one file's block with pydantic (strict types, no unknown keys, ranges) into the
    frozen dataclass `cls`; the first problem as a ConfigError naming file and key."""
    try:
        return _adapter(cls).validate_python(_drop_retired_and_empty(data, prefix))
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        loc = error["loc"]
        key = prefix + "".join(f"[{part}]" if isinstance(part, int) else f".{part}"
                               for part in loc)
        raise ConfigError(file, key, _problem(error, *_bounds(cls, loc))) from None


@functools.cache
def _adapter(cls: type) -> TypeAdapter:
    return TypeAdapter(cls)


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
    if s.system.signals.calibration.horizon not in (1, 4, 24):
        raise ConfigError("system.yml", "system.signals.calibration.horizon",
                          f"must be 1, 4 or 24, got {s.system.signals.calibration.horizon}")
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
