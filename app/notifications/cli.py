"""flask notifications …: channels, test sends, history, digests, due deliveries, resend."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from app.clock import isoformat
from app.notifications import service
from app.notifications.settings_editor import channel_rows

notifications_cli = AppGroup("notifications", help="Notification channels and history.")


@notifications_cli.command("channels")
def channels_command() -> None:
    """List the configured channels (targets masked) and which go through apprise."""
    for row in channel_rows():
        client = "apprise" if row.via_apprise else ("local" if row.type == "inbox" else "own")
        state = "on " if row.enabled else "off"
        click.echo(f"{row.name:16} {row.type:12} {state} {client:8} {row.target}")


@notifications_cli.command("test")
@click.argument("channel")
def test_command(channel: str) -> None:
    """Send a test message on CHANNEL now and report the outcome."""
    try:
        notification, outcome, detail = service.send_test(channel)
    except LookupError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"notification {notification.id}: {outcome} — {detail}")
    if outcome != "sent":
        raise SystemExit(1)


@notifications_cli.command("list")
@click.option("--status", default="", help="queued, sent, failed, suppressed or batched")
@click.option("--channel", default="", help="A channel name.")
@click.option("--priority", default="", help="P0, P1 or P2.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 500))
def list_command(status: str, channel: str, priority: str, limit: int) -> None:
    """The newest notifications with each channel's status."""
    try:
        filters = service.parse_filters({"status": status, "channel": channel,
                                         "priority": priority})
    except service.FilterError as exc:
        raise click.BadParameter(str(exc), param_hint=f"--{exc.param}") from exc
    items, _ = service.history(filters, None, limit)
    for n in items:
        channels = " ".join(f"{d.channel}={d.status}" for d in n.deliveries) or "-"
        click.echo(f"{n.id:>6} {isoformat(n.created_at)} {n.priority} {n.kind:6} "
                   f"{n.title[:60]:60} {channels}")


@notifications_cli.command("send-digests")
def send_digests_command() -> None:
    """Send the digests of everything batched now (what the periodic job does)."""
    digests = service.send_digests()
    click.echo(f"{len(digests)} digest(s) queued")


@notifications_cli.command("deliver-due")
def deliver_due_command() -> None:
    """Enqueue every due queued delivery that no job holds (what the periodic job does)."""
    click.echo(f"{service.deliver_due()} delivery job(s) enqueued")


@notifications_cli.command("resend")
@click.argument("delivery_id", type=int)
def resend_command(delivery_id: int) -> None:
    """Queue a failed or suppressed delivery again."""
    try:
        delivery = service.resend(delivery_id)
    except (LookupError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"delivery {delivery.id} on {delivery.channel} queued again")
