"""Notification channels: one class per type of config/notifications.yml `channels:`.

Through apprise: email, sms (apprise's SMS providers), apprise (any apprise URL).
Own thin clients (requests): feishu, lark, wecom_bot, wecom_app, dingtalk, telegram, discord,
webhook, sms_gateway. inbox is local: the delivery row is the message.
"""

from __future__ import annotations

from app.notifications.channels.apprise_channels import (
    AppriseChannel,
    AppriseSmsChannel,
    EmailChannel,
)
from app.notifications.channels.base import Channel, Message, SendError, SendResult
from app.notifications.channels.chat import (
    DingTalkChannel,
    DiscordChannel,
    FeishuChannel,
    LarkChannel,
    TelegramChannel,
    WeComBotChannel,
)
from app.notifications.channels.webhook import SmsGatewayChannel, WebhookChannel
from app.notifications.channels.wecom_app import WeComAppChannel
from config.loader import CHANNEL_TYPES, ChannelSettings, NotificationSettings


class InboxChannel(Channel):
    """The in-app inbox: storing the delivery is the send (the bell counts unread ones)."""

    type = "inbox"
    dedupes = True

    def send(self, message: Message, parts_done: tuple[str, ...] = ()) -> SendResult:
        """Nothing to transmit: the delivery row is the inbox entry."""
        return SendResult(detail="in the inbox")

    def target(self) -> str:
        """The bell in the page header."""
        return "the bell in the page header"


CHANNEL_CLASSES: dict[str, type[Channel]] = {
    cls.type: cls
    for cls in (InboxChannel, AppriseSmsChannel, SmsGatewayChannel, FeishuChannel, LarkChannel,
                WeComBotChannel, WeComAppChannel, EmailChannel, TelegramChannel, DiscordChannel,
                DingTalkChannel, WebhookChannel, AppriseChannel)
}
if set(CHANNEL_CLASSES) != set(CHANNEL_TYPES):  # pragma: no cover - a developer mistake
    raise RuntimeError(f"channel classes {sorted(CHANNEL_CLASSES)} do not match config types "
                       f"{sorted(CHANNEL_TYPES)}")


def configured_channels(settings: NotificationSettings) -> dict[str, ChannelSettings]:
    """The channels of the settings, plus the inbox when no inbox channel is configured."""
    channels = dict(settings.channels)
    if not any(c.type == "inbox" for c in channels.values()) and "inbox" not in channels:
        channels["inbox"] = ChannelSettings(type="inbox")
    return channels


def build_channel(name: str, settings: ChannelSettings, redis=None) -> Channel:
    """The channel object for a configured channel."""
    try:
        cls = CHANNEL_CLASSES[settings.type]
    except KeyError:
        raise ValueError(f"channel {name!r} has unknown type {settings.type!r}") from None
    return cls(name, settings, redis)


__all__ = ["CHANNEL_CLASSES", "Channel", "Message", "SendError", "SendResult", "build_channel",
           "configured_channels"]
