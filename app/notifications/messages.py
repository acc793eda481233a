"""The text of a notification: signals (simple / detailed / custom), alerts, digests.

A message is rendered once, when the notification is created, and stored; every channel sends
that text (shortened where the channel has a limit). Custom templates run in Jinja's
SandboxedEnvironment with StrictUndefined, so a typo is an error, not an empty string; a custom
template that fails at send time falls back to the detailed text and the problem is stored on
the notification.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from config.loader import NotificationSettings

MAX_CUSTOM_OUTPUT = 4000
DIGEST_MAX_ITEMS = 50
_sandbox = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False,
                                trim_blocks=True, lstrip_blocks=True)


class TemplateProblem(ValueError):
    """A custom template that does not compile or render; the message says where."""


@dataclass(frozen=True)
class RenderedMessage:
    """Title, body, link and structured data of one notification."""

    title: str
    body: str
    link: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    render_error: str = ""


def _number(value: float | None, digits: int = 8) -> str:
    if value is None:
        return "—"
    return f"{value:.{digits}f}".rstrip("0").rstrip(".") or "0"


def local_time(value: datetime | None, zone: str) -> str:
    """A naive-UTC time in the owner's time zone, 'YYYY-MM-DD HH:MM:SS TZ'."""
    if value is None:
        return "—"
    local = value.replace(tzinfo=UTC).astimezone(ZoneInfo(zone))
    return local.strftime("%Y-%m-%d %H:%M:%S %Z")


def signal_context(signal, strategy_name: str, public_url: str) -> dict[str, Any]:
    """What a signal template may use: signal, strategy, priority, level, indicators, link."""
    link = f"{public_url.rstrip('/')}/signals/{signal.id}"
    data = {
        "id": signal.id,
        "strategy_id": signal.strategy_id,
        "message_type": signal.message_type,
        "pair": signal.pair,
        "action": signal.action or signal.message_type,
        "direction": signal.direction,
        "rate": signal.rate,
        "profit_ratio": signal.profit_ratio,
        "profit_amount": signal.profit_amount,
        "trade_id": signal.trade_id,
        "open_date": signal.open_date.isoformat() if signal.open_date else None,
        "close_date": signal.close_date.isoformat() if signal.close_date else None,
        "enter_tag": signal.enter_tag,
        "exit_reason": signal.exit_reason,
        "strength": signal.strength_raw,
        "level": signal.strength_level,
        "priority": signal.priority,
        "received_at": signal.received_at.isoformat() + "Z" if signal.received_at else None,
    }
    return {
        "signal": data,
        "strategy": {"id": signal.strategy_id, "name": strategy_name},
        "priority": signal.priority,
        "level": signal.strength_level,
        "indicators": dict(signal.indicators or {}),
        "link": link,
    }


def render_custom(template_text: str, context: dict[str, Any]) -> str:
    """Render a custom template in the sandbox, or raise TemplateProblem saying what is wrong."""
    try:
        text = _sandbox.from_string(template_text).render(**context)
    except TemplateError as exc:
        line = getattr(exc, "lineno", None)
        where = f" (line {line})" if line else ""
        raise TemplateProblem(f"custom template{where}: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - a sandboxed template may raise anything
        raise TemplateProblem(f"custom template: {type(exc).__name__}: {exc}") from exc
    return text.strip()[:MAX_CUSTOM_OUTPUT]


def trade_action(action: str | None, direction: str | None) -> str:
    """'entry long', 'exit short', … from a signal's action (enter_long, exit_short, …) and
    direction; other actions as words (a status message: 'status')."""
    verb, _, side = (action or "").partition("_")
    if verb in ("enter", "entry", "exit") and side in ("long", "short", ""):
        verb = "entry" if verb in ("enter", "entry") else "exit"
        return f"{verb} {side or direction or ''}".strip()
    words = (action or "signal").replace("_", " ")
    return f"{words} {direction}" if direction and direction not in words else words


def _strength(ctx: dict[str, Any]) -> str:
    """'strong, 0.83' (level and raw strength) or just the level."""
    s = ctx["signal"]
    level = ctx["level"] or "ungraded"
    return level + (f", {s['strength']:.2f}" if s["strength"] is not None else "")


def _signal_title(ctx: dict[str, Any]) -> str:
    """'[P1] MA_Cross_BTC: exit long ADA/USDT @ 0.7096 (strong, 0.83)'."""
    s = ctx["signal"]
    rate = f" @ {_number(s['rate'])}" if s["rate"] is not None else ""
    return (f"[{ctx['priority']}] {ctx['strategy']['name']}: "
            f"{trade_action(s['action'], s['direction'])} {s['pair']}{rate} "
            f"({_strength(ctx)})")[:255]


def _indicator_line(indicators: dict[str, Any]) -> str:
    parts = []
    for key, value in sorted(indicators.items()):
        shown = _number(value, 4) if isinstance(value, float) else str(value)
        parts.append(f"{key}={shown}")
    return ", ".join(parts)


def _simple_body(ctx: dict[str, Any], templates) -> str:
    s = ctx["signal"]
    strength = f"{ctx['level']}" + (f" {_number(s['strength'], 3)}" if s["strength"] is not None
                                    else "")
    lines = [f"{ctx['strategy']['name']}: {trade_action(s['action'], s['direction'])} "
             f"{s['pair']} at {_number(s['rate'])} (strength {strength})"]
    if s["profit_ratio"] is not None:
        lines.append(f"Profit {s['profit_ratio'] * 100:.2f} %")
    if ctx.get("track_record"):
        lines.append(f"Track record: {ctx['track_record']}")
    if templates.include_indicators and ctx["indicators"]:
        lines.append(_indicator_line(ctx["indicators"]))
    if templates.include_chart_link:
        lines.append(ctx["link"])
    return "\n".join(lines)


def _detailed_body(ctx: dict[str, Any], templates, zone: str) -> str:
    s = ctx["signal"]
    lines = [
        f"Strategy: {ctx['strategy']['name']} (#{ctx['strategy']['id']})",
        f"Pair: {s['pair']}",
        f"Action: {trade_action(s['action'], s['direction'])} "
        f"({s['action']}, message {s['message_type']})",
        f"Rate: {_number(s['rate'])}",
    ]
    if s["profit_ratio"] is not None:
        amount = f" ({_number(s['profit_amount'], 4)})" if s["profit_amount"] is not None else ""
        lines.append(f"Profit: {s['profit_ratio'] * 100:.2f} %{amount}")
    if s["trade_id"] is not None:
        lines.append(f"Trade: #{s['trade_id']}")
    if s["enter_tag"]:
        lines.append(f"Entry tag: {s['enter_tag']}")
    if s["exit_reason"]:
        lines.append(f"Exit reason: {s['exit_reason']}")
    strength = _number(s["strength"], 3) if s["strength"] is not None else "—"
    lines.append(f"Strength: {ctx['level']} ({strength}), priority {ctx['priority']}")
    if ctx.get("track_record"):
        lines.append(f"Track record: {ctx['track_record']}")
    received = datetime.fromisoformat(s["received_at"][:-1]) if s["received_at"] else None
    lines.append(f"Received: {local_time(received, zone)}")
    if templates.include_indicators and ctx["indicators"]:
        lines.append(f"Indicators: {_indicator_line(ctx['indicators'])}")
    if templates.include_chart_link:
        lines.append(f"Chart: {ctx['link']}")
    return "\n".join(lines)


def render_signal(signal, strategy_name: str, settings: NotificationSettings,
                  public_url: str, track_record: str = "") -> RenderedMessage:
    """The message for a graded signal, in the configured template; `track_record` (how often
    the strategy's signals of this level were right) goes under the signal line."""
    ctx = signal_context(signal, strategy_name, public_url)
    ctx["track_record"] = track_record
    templates = settings.templates
    title = _signal_title(ctx)
    error = ""
    if templates.signal_template == "custom" and templates.custom_template.strip():
        try:
            body = render_custom(templates.custom_template, ctx)
        except TemplateProblem as exc:
            error = str(exc)
            body = _detailed_body(ctx, templates, settings.timezone)
    elif templates.signal_template == "detailed":
        body = _detailed_body(ctx, templates, settings.timezone)
    else:
        body = _simple_body(ctx, templates)
    data = {**ctx["signal"], "strategy": ctx["strategy"], "indicators": ctx["indicators"],
            "track_record": track_record}
    return RenderedMessage(title, body, ctx["link"], data, error)


def render_consensus(row, strategies: str, public_url: str) -> RenderedMessage:
    """The message of a consensus signal: which strategies agree on what."""
    link = f"{public_url.rstrip('/')}/signals/?view=consensus&pair={row.pair}"
    way = "up" if row.direction == "up" else "down"
    title = f"[{row.priority}] Consensus {row.pair} {way} ({row.level})"
    body = (f"{len(row.strategy_ids or [])} strategies agree: {row.pair} {way} "
            f"({trade_action(row.action, 'short' if 'short' in row.action else 'long')}) "
            f"at {_number(row.rate)}\nStrategies: {strategies}\n{link}")
    data = {"consensus_id": row.id, "pair": row.pair, "direction": row.direction,
            "level": row.level, "strategy_ids": row.strategy_ids}
    return RenderedMessage(title, body, link, data, "")


def render_alert(alert, strategy_name: str | None, priority: str,
                 settings: NotificationSettings, public_url: str) -> RenderedMessage:
    """The message for a system alert (bot crashed, gateway unhealthy, ...)."""
    kind = alert.kind.replace("_", " ")
    title = f"[{priority}] {alert.severity}: {kind}"
    if strategy_name:
        title += f" ({strategy_name})"
    link = (f"{public_url.rstrip('/')}/strategies/{alert.strategy_id}" if alert.strategy_id
            else f"{public_url.rstrip('/')}/system/")
    lines = [alert.message, f"Source: {alert.source or 'system'}",
             f"At: {local_time(alert.created_at, settings.timezone)}"]
    if settings.templates.include_chart_link:
        lines.append(link)
    data = {"alert_id": alert.id, "kind": alert.kind, "severity": alert.severity,
            "source": alert.source, "strategy_id": alert.strategy_id, "message": alert.message,
            "created_at": alert.created_at.isoformat() + "Z"}
    return RenderedMessage(title[:255], "\n".join(lines), link, data)


def render_digest(items: list, channel: str, priority: str, settings: NotificationSettings,
                  public_url: str) -> RenderedMessage:
    """One message for the notifications held back for a channel (oldest first)."""
    zone = settings.timezone
    first = local_time(items[0].created_at, zone)[11:16]
    last = local_time(items[-1].created_at, zone)[11:16]
    title = f"[{priority}] Digest: {len(items)} notification{'s' * (len(items) != 1)} " \
            f"({first}–{last})"
    lines = []
    for item in items[:DIGEST_MAX_ITEMS]:
        at = local_time(item.created_at, zone)[11:16]
        line = f"• {at} {item.title}"
        if item.link and settings.templates.include_chart_link:
            line += f" — {item.link}"
        lines.append(line)
    if len(items) > DIGEST_MAX_ITEMS:
        lines.append(f"… and {len(items) - DIGEST_MAX_ITEMS} more")
    link = f"{public_url.rstrip('/')}/notifications/"
    lines.append(f"History: {link}")
    data = {"channel": channel, "items": [i.id for i in items]}
    return RenderedMessage(title, "\n".join(lines), link, data)


class SampleSignal:
    """A made-up strong BTC/USDT entry, to preview and validate templates."""

    id = 0
    strategy_id = 1
    message_type = "entry"
    pair = "BTC/USDT"
    action = "entry"
    direction = "long"
    rate = 65000.5
    profit_ratio = None
    profit_amount = None
    trade_id = 17
    open_date = None
    close_date = None
    enter_tag = "breakout"
    exit_reason = None
    strength_raw = 0.87
    strength_level = "strong"
    priority = "P0"
    indicators = {"rsi": 28.4, "volume_ratio": 2.1}  # noqa: RUF012 - read-only sample
    received_at = datetime(2026, 1, 5, 2, 30)


def sample_context(public_url: str) -> dict[str, Any]:
    """The template context of SampleSignal."""
    return signal_context(SampleSignal(), "DemoStrategy", public_url)
