"""`flask monitoring …`: run the monitoring jobs by hand and read capacity from the terminal."""

from __future__ import annotations

import json

import click
from flask.cli import AppGroup

from app.extensions import db
from app.monitoring import capacity, overview
from app.monitoring.bot_status import cached_status, sweep_strategies
from app.monitoring.gateway_status import check_gateway
from app.monitoring.system_status import sample_system
from app.strategies.models import Strategy

monitoring_cli = AppGroup("monitoring", help="Host status, bot health, stalls and capacity.")


def _echo_json(data) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


@monitoring_cli.command("health")
@click.option("--part", type=click.Choice(["database", "redis", "workers", "cron", "supervisor"]),
              default=None, help="Check one part only (a container's healthcheck).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def health_command(part: str | None, as_json: bool) -> None:
    """What /health says: database, Redis, RQ workers, cron and bot supervisor; exit 1 if any
    (or the --part) is failing."""
    report, ok = overview.system_health()
    checks = report["checks"]
    if part:
        checks = {part: checks[part]}
        ok = checks[part]["status"] == "ok"
    if as_json:
        _echo_json({"status": "ok" if ok else "error", "checks": checks})
    else:
        for name, check in checks.items():
            click.echo(f"{name:11} {check['status']:6} {check.get('error', '')}".rstrip())
    if not ok:
        raise SystemExit(1)


@monitoring_cli.command("sweep")
@click.option("--json", "as_json", is_flag=True, help="Print every bot's status as JSON.")
def sweep_command(as_json: bool) -> None:
    """Probe every running bot now: health scores and stall detection."""
    summary = sweep_strategies()
    if as_json:
        ids = db.session.scalars(db.select(Strategy.id).where(
            Strategy.deleted_at.is_(None), Strategy.port.is_not(None))).all()
        _echo_json({"summary": summary, "strategies": {i: cached_status(i) for i in ids}})
        return
    count = summary["total_strategies"]
    click.echo(f"{count} bot{'' if count == 1 else 's'} in {summary['sweep_seconds']:.2f} s: "
               f"{summary['healthy_strategies']} healthy, {summary['stalled_strategies']} "
               f"stalled, {summary['unreachable_strategies']} unreachable, "
               f"{summary['error_strategies']} error, {summary['timeout_strategies']} timeout; "
               f"average score {summary['average_health_score']}")
    for sid in summary["newly_stalled"]:
        click.echo(f"  strategy {sid}: now stalled")
    for sid in summary["recovered"]:
        click.echo(f"  strategy {sid}: recovered")


@monitoring_cli.command("system")
def system_command() -> None:
    """Sample the host now (and cache it like the periodic job)."""
    s = sample_system()
    click.echo(f"{s['hostname']}: CPU {s['cpu_percent']}% of {s['cpu_count']} cores, memory "
               f"{s['memory_percent']}%, disk {s['disk_percent']}%, up "
               f"{s['uptime_seconds'] / 3600:.1f} h")


@monitoring_cli.command("capacity")
@click.option("--json", "as_json", is_flag=True, help="The detailed JSON of the API.")
@click.option("--record", is_flag=True, help="Also store a history sample (like the job).")
def capacity_command(as_json: bool, record: bool) -> None:
    """Capacity now: slots, what the bots use, how many more fit, recommendations."""
    if record:
        capacity.record_capacity()
    detail = capacity.detailed()
    if as_json:
        _echo_json(detail)
        return
    cap, fit = detail["capacity"], detail["resources"]["bots_that_fit"]
    bots = detail["resources"]["bots"]
    click.echo(f"{cap['running_strategies']} of {cap['max_strategies']} running "
               f"({cap['utilization_percent']}% of slots); effective "
               f"{cap['effective_utilization_percent']}% [{cap['level']}]")
    click.echo(f"bots use {bots['memory_pss'] / 2**20:.0f} MiB PSS "
               f"({bots['average_bot_memory'] / 2**20:.0f} MiB each, {bots['average_basis']}); "
               f"{cap['bots_that_fit']} more fit (memory {fit['by_memory']}, ports "
               f"{fit['by_ports']}, slots {fit['by_slots']})")
    for rec in detail["recommendations"]:
        click.echo(f"  [{rec['level']}] {rec['message']}")


@monitoring_cli.command("threshold")
@click.argument("value", required=False)
def threshold_command(value: str | None) -> None:
    """Show the capacity alert threshold, or set it (0-100)."""
    if value is None:
        click.echo(f"{capacity.alert_threshold():g}")
        return
    try:
        click.echo(capacity.set_alert_threshold(value)["message"])
    except capacity.ThresholdError as exc:
        raise click.ClickException(str(exc)) from exc


@monitoring_cli.command("gateway")
def gateway_command() -> None:
    """Check the gateway's health now (alerts like the periodic job)."""
    _echo_json(check_gateway())
