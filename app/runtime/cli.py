"""`flask supervisor …` (run the supervisor of this host, list the live supervisors) and
`flask freqtrade …` (FreqTrade versions side by side, upgrades with rollback)."""

from __future__ import annotations

import json
import logging
import time

import click
from flask import current_app
from flask.cli import AppGroup

from app.errors import AppError, cli_error
from app.extensions import redis_store
from app.monitoring.watchdog import Watchdog
from app.runtime import hosts, upgrades, versions
from app.runtime.supervisor import Supervisor

supervisor_cli = AppGroup("supervisor", help="The supervisor that runs this host's FreqTrade bots.")


@supervisor_cli.command("run")
@click.option("--host", default=None,
              help="Address of this host; its bots listen there (default system.runtime.host).")
@click.option("--keep-bots", is_flag=True,
              help="On SIGTERM leave the bots running for the next supervisor to adopt.")
@click.option("--log-level", default="INFO", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]))
def supervisor_run(host: str | None, keep_bots: bool, log_level: str) -> None:
    """Start, watch, restart and stop this host's bots until SIGTERM/Ctrl-C."""
    logging.basicConfig(level=getattr(logging, log_level),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    watchdog = Watchdog(watcher="supervisor")
    supervisor = Supervisor(current_app._get_current_object(), host=host, keep_bots=keep_bots,
                            on_tick=watchdog.maybe_run)
    click.echo(f"Supervisor of {supervisor.host} running (Ctrl-C stops it and its bots).")
    supervisor.run()


@supervisor_cli.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def supervisor_status(as_json: bool) -> None:
    """The live supervisors: host, pid, free memory, bots, queued commands."""
    client = redis_store.client
    rows = []
    for info in hosts.live_hosts(client):
        row = info.as_dict()
        row["queued_commands"] = int(client.llen(hosts.commands_key(info.host)))
        row["age_seconds"] = round(time.time() - info.updated_at, 1)
        rows.append(row)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("No supervisor is running (start one with `flask supervisor run`).")
        return
    for row in rows:
        click.echo(f"{row['host']:15} pid {row['pid']:<7} bots {row['running']:<4} "
                   f"free {row['free_memory'] / 2**30:6.2f} GiB  queued {row['queued_commands']}  "
                   f"seen {row['age_seconds']} s ago")


@supervisor_cli.command("hosts")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def supervisor_hosts(as_json: bool) -> None:
    """Every host: alive or lost, its bots, free memory, CPU, FreqTrade, room for bots."""
    import json

    from app.system.hosts import hosts_report

    report = hosts_report()
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    if not report["hosts"]:
        click.echo("No supervisor has registered (flask supervisor run --host ADDRESS).")
    for h in report["hosts"]:
        state = "alive" if h["alive"] else "LOST"
        memory = (f"{h['free_memory'] / 2**30:.1f}/{h['total_memory'] / 2**30:.1f} GiB free"
                  if h["alive"] else "")
        click.echo(f"{h['host']:18} {state:6} bots {h['running']:>4} running"
                   + (f", {h['lost']} lost" if h["lost"] else "")
                   + f"  {memory}  room {h.get('room_for_bots', '—')}  {h.get('freqtrade', '')}")


@supervisor_cli.command("forget")
@click.argument("host")
def supervisor_forget(host: str) -> None:
    """Take a host that is gone for good out of the register (/health stops naming it)."""
    client = redis_store.client
    if host not in hosts.registered_hosts(client):
        raise click.ClickException(f"no supervisor host named {host!r} is registered")
    if any(info.host == host for info in hosts.live_hosts(client)):
        raise click.ClickException(f"the supervisor of {host} is alive; stop it first")
    hosts.clear_heartbeat(client, host)
    click.echo(f"Forgot supervisor host {host}.")


freqtrade_cli = AppGroup("freqtrade", help="FreqTrade versions and upgrades.")


@freqtrade_cli.command("versions")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def versions_command(as_json: bool) -> None:
    """Installed FreqTrade versions, their size and the strategies on each."""
    rows = versions.installed()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        size = f"{row['size_bytes'] / 2**20:,.0f} MiB" if row.get("size_bytes") else "—"
        flag = " (default)" if row["default"] else ""
        click.echo(f"{row['version']:12}{flag:10} {size:>10}  strategies: "
                   f"{', '.join(map(str, row['strategies'])) or 'none'}")


@freqtrade_cli.command("install")
@click.argument("version")
def install_command(version: str) -> None:
    """Install a FreqTrade release from the package registry into its own environment."""
    try:
        row = versions.install(version, progress=lambda what: click.echo(f"  {what}"))
    except AppError as exc:
        raise cli_error(exc) from exc
    click.echo(f"FreqTrade {row['version']} installed in {row['path']}")


@freqtrade_cli.command("remove")
@click.argument("version")
def remove_command(version: str) -> None:
    """Remove a FreqTrade release no strategy uses."""
    try:
        versions.remove(version)
    except AppError as exc:
        raise cli_error(exc) from exc
    click.echo(f"FreqTrade {version} removed.")


@freqtrade_cli.command("upgrade")
@click.argument("version")
@click.option("--strategy", "strategy_ids", type=int, multiple=True,
              help="Only this strategy (repeat for several): a canary. Default: all.")
def upgrade_command(version: str, strategy_ids: tuple[int, ...]) -> None:
    """Move strategies to a FreqTrade release: install, verify each strategy on the simulator,
    then switch the bots one by one; any failure rolls back (trade databases included)."""
    try:
        row = upgrades.request_upgrade(version, list(strategy_ids) or None,
                                       requested_by="cli", enqueue=False)
    except AppError as exc:
        raise cli_error(exc) from exc
    click.echo(f"Upgrade #{row.id} to FreqTrade {row.target} of strategies {row.strategy_ids}")
    try:
        upgrades.run_upgrade(row.id)
    except AppError as exc:
        _print_steps(row)
        raise cli_error(exc) from exc
    _print_steps(row)
    click.echo(f"Done: {row.status}.")


def _print_steps(row) -> None:
    for step in row.steps:
        click.echo(f"  {step['seconds']:7.1f}s  {step['step']}"
                   + (f" — {step['detail']}" if step["detail"] else ""))
