"""Fixtures for notification tests: loopback receivers, channel settings swapped into the app,
a fake clock, and strategies/signals to notify about."""

from __future__ import annotations

import dataclasses
import itertools
import os
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from config import yaml_io
from config.loader import ChannelSettings, load_settings
from tests.notifications.receivers import HttpReceiver, SmtpReceiver

ZONE = "Asia/Shanghai"


def local(text: str, zone: str = ZONE) -> datetime:
    """'2026-01-05 23:00' in the owner's zone as naive UTC (how the app stores times)."""
    value = datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone))
    return value.astimezone(UTC).replace(tzinfo=None)


class FakeClock:
    """An injectable clock: call it for now; advance() moves it."""

    def __init__(self, start: datetime):
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


@pytest.fixture
def http_receiver():
    receiver = HttpReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture
def smtp_receiver():
    receiver = SmtpReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture
def configure(app):
    """configure(channels={...}, rate_limiting={...}, templates={...}, ...) for one test.

    Swaps the app's live NotificationSettings (what every service reads), restored afterwards.
    Nested sections are given as dicts of the fields to change.
    """
    holder = app.extensions["btcw_settings"]
    original = holder.settings

    def apply(channels: dict[str, ChannelSettings] | None = None, **sections):
        settings = holder.settings
        notifications = settings.notifications
        changes = {}
        for name, values in sections.items():
            current = getattr(notifications, name)
            if dataclasses.is_dataclass(current) and isinstance(values, dict):
                changes[name] = dataclasses.replace(current, **values)
            else:
                changes[name] = values
        if channels is not None:
            changes["channels"] = channels
        notifications = dataclasses.replace(notifications, **changes)
        holder.settings = dataclasses.replace(settings, notifications=notifications)
        return notifications

    yield apply
    holder.settings = original


@pytest.fixture
def config_file(app, config_dir):
    """The session's notifications.yml, restored (and reloaded) after the test."""
    from app.system.settings import reload_settings

    path = config_dir / "notifications.yml"
    original = path.read_text()
    yield path
    path.write_text(original)
    reload_settings()


_counter = itertools.count(1)


@pytest.fixture
def strategy(app):
    from app.extensions import db
    from app.strategies.models import Strategy

    row = Strategy(name="TrendBot", strategy_class="MA_Cross_BTC", strategy_file="ma.py",
                   api_username="u", api_password="p", jwt_secret="j", ws_token="w",
                   webhook_token="t")
    db.session.add(row)
    db.session.commit()
    return row


@pytest.fixture
def make_signal(app, strategy):
    """make_signal(pair, priority='P0', **columns) -> a stored Signal."""
    from app.extensions import db
    from app.signals.models import Signal

    levels = {"P0": "strong", "P1": "medium", "P2": "weak", "IGNORE": "ignore"}

    def make(pair: str = "BTC/USDT", priority: str = "P0", **columns) -> Signal:
        n = next(_counter)
        values = {"strategy_id": strategy.id, "dedupe_key": f"test-{n}",
                  "message_type": "entry", "pair": pair, "action": "entry",
                  "direction": "long", "rate": 65000.0 + n, "strength_raw": 0.9,
                  "strength_level": levels[priority], "priority": priority,
                  "indicators": {"rsi": 27.5}}
        values.update(columns)
        signal = Signal(**values)
        db.session.add(signal)
        db.session.commit()
        return signal

    return make


def http_channel(kind: str, receiver: HttpReceiver, **values) -> ChannelSettings:
    """A channel of `kind` pointed at the receiver through base_url (quick retries)."""
    defaults = {
        "feishu": {"webhook_url": "https://open.feishu.cn/open-apis/bot/v2/hook/hook-1"},
        "lark": {"webhook_url": "https://open.larksuite.com/open-apis/bot/v2/hook/hook-2"},
        "wecom_bot": {"webhook_url":
                      "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=wecom-key"},
        "wecom_app": {"corp_id": "corp1", "corp_secret": "corp-secret", "agent_id": 1000002},
        "dingtalk": {"webhook_url": "https://oapi.dingtalk.com/robot/send?access_token=ding-1"},
        "telegram": {"bot_token": "123:ABC", "chat_id": "-1001"},
        "discord": {"webhook_url": "https://discord.com/api/webhooks/42/disc-token"},
        "webhook": {"webhook_url": "https://hooks.example.com/btcw"},
        "sms_gateway": {"url": f"{receiver.url}/sms/send", "to": ["+8613800000000"]},
    }[kind]
    values = {"base_url": receiver.url, "timeout": 3.0, "retry_backoff": 0.0, **defaults,
              **values}
    if kind == "sms_gateway":
        values.pop("base_url")
    return ChannelSettings(type=kind, **values)


def smtp_channel(receiver: SmtpReceiver, **values) -> ChannelSettings:
    """An email channel pointed at the SMTP receiver."""
    values = {"host": "127.0.0.1", "port": receiver.port, "security": "none",
              "from_addr": "watcher@example.com", "to": ["owner@example.com"],
              "timeout": 5.0, "retry_backoff": 0.0, **values}
    return ChannelSettings(type="email", **values)


INBOX = ChannelSettings(type="inbox")


@pytest.fixture
def worker_world(app, app_config, config_dir, var_dir, tmp_path, http_receiver):
    """A config folder whose notifications.yml sends P0 to a webhook on the receiver at any
    hour; this process uses it too. Yields (env for a worker subprocess, log path)."""
    folder = tmp_path / "config"
    folder.mkdir()
    for name in ("system.yml", "proxy.yml"):
        (folder / name).write_text((config_dir / name).read_text())
    section = {
        "channels": {"inbox": {"type": "inbox"},
                     "hook": {"type": "webhook", "webhook_url": f"{http_receiver.url}/hook",
                              "timeout": 3, "retry_backoff": 0.5, "max_attempts": 5}},
        "priorities": {"P0": {"name": "Immediate", "delay_seconds": 0, "channels": ["hook"]}},
        "time_slots": {"always": {"start_time": "00:00", "end_time": "00:00",
                                  "enabled_priorities": ["P0", "P1", "P2"],
                                  "enabled_channels": ["all"]}},
    }
    (folder / "notifications.yml").write_text(yaml_io.dump({"notifications": section}))
    holder = app.extensions["btcw_settings"]
    original = holder.settings
    holder.settings = load_settings(folder)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FREQTRADE__")}
    env.update({"DATABASE_URL": app_config["SQLALCHEMY_DATABASE_URI"],
                "REDIS_URL": app_config["REDIS_URL"], "BTCW_CONFIG_DIR": str(folder),
                "BTCW_VAR_DIR": str(var_dir), "SECRET_KEY": "worker-test-secret",
                "PYTHONUNBUFFERED": "1"})
    yield env, tmp_path / "worker.log"
    holder.settings = original
