"""`flask backup …`: run, list, verify, restore and prune backups; `flask backup upgrade` is the
schema upgrade that backs up first."""

from __future__ import annotations

import json

import click
from flask import current_app
from flask.cli import AppGroup

from app.backups import service
from app.errors import AppError, cli_error

backup_cli = AppGroup("backup", help="Backups of the database, bot files and trade databases.")


def _size(value: int | None) -> str:
    return f"{value / 2**20:,.1f} MiB" if value else "—"


@backup_cli.command("run")
@click.option("--no-verify", is_flag=True, help="Skip the verification (not recommended).")
def backup_run(no_verify: bool) -> None:
    """Write a backup now, verify it and prune old ones; prints its name."""
    try:
        row = service.run_backup("manual", verify_after=not no_verify)
    except AppError as exc:
        raise cli_error(exc) from exc
    verified = "verified" if row.verified_at else "not verified"
    click.echo(f"{row.filename}  {_size(row.size_bytes)}  {verified}")
    click.echo(str(service.backups_dir() / row.filename))


@backup_cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def backup_list(as_json: bool) -> None:
    """Every backup, newest first: size, status, when it was verified."""
    rows = service.list_backups()
    if as_json:
        click.echo(json.dumps([service.backup_json(r) for r in rows], indent=2))
        return
    if not rows:
        click.echo("No backups yet (flask backup run makes one).")
    for row in rows:
        verified = f"verified {row.verified_at:%Y-%m-%d %H:%M}" if row.verified_at else \
            ("VERIFY FAILED" if row.verify_error else "not verified")
        click.echo(f"{row.filename:38} {row.status:8} {_size(row.size_bytes):>12}  {verified}"
                   + (f"  {row.error[:80]}" if row.error else ""))


@backup_cli.command("verify")
@click.argument("name")
def backup_verify(name: str) -> None:
    """Restore NAME into a scratch place and compare it with its manifest."""
    try:
        report = service.verify(_name(name))
    except AppError as exc:
        raise cli_error(exc) from exc
    click.echo(f"{report['name']}: OK — {report['tables']} tables, {report['rows']:,} rows, "
               f"{report['files']} files match the manifest")


@backup_cli.command("restore")
@click.argument("name")
@click.option("--into", default=None, metavar="URL",
              help="Copy the backup into this empty database instead (sqlite:///… or "
                   "postgresql://…): the way from SQLite to PostgreSQL and back.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def backup_restore(name: str, into: str | None, yes: bool) -> None:
    """Replace the database, strategy library, bot folders and trade databases with NAME."""
    name = _name(name)
    if into is None and not yes:
        engine = current_app.config["SQLALCHEMY_DATABASE_URI"].split(":", 1)[0]
        click.confirm(f"Replace the database ({engine}), the strategy library and every bot's "
                      f"files and trade database with {name}? Running bots are stopped and "
                      f"started again", abort=True)
    try:
        report = service.restore(name, into=into)
    except AppError as exc:
        raise cli_error(exc) from exc
    where = f" into {report['into']}" if into else ""
    click.echo(f"Restored {report['name']}{where}: {report['tables']} tables, "
               f"{report['rows']:,} rows identical to the backup"
               + (f"; started again: {report['restarted']}" if report.get("restarted") else ""))


@backup_cli.command("prune")
def backup_prune() -> None:
    """Delete backups past system.backups.retention_days (keeping the newest keep_last)."""
    removed = service.prune()
    click.echo(f"Removed {len(removed)} backups" + (f": {', '.join(removed)}" if removed else ""))


@backup_cli.command("upgrade")
def backup_upgrade() -> None:
    """Upgrade the database schema; a database holding data is backed up first."""
    try:
        message = service.upgrade_schema()
    except AppError as exc:
        raise cli_error(exc) from exc
    click.echo(message)


def _name(value: str) -> str:
    """A path given on the command line counts by its file name."""
    return value.rsplit("/", 1)[-1]
