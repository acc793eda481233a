"""flask commands: users, tokens, worker, cron, up; domains add their own groups here."""

from __future__ import annotations

import importlib
import json
import sys

import click
from flask import Flask, current_app
from flask.cli import AppGroup

users_cli = AppGroup("users", help="Manage users.")
tokens_cli = AppGroup("tokens", help="Manage API tokens.")


def _read_password(prompt: str = "Password") -> str:
    """Prompt twice on a terminal; read two lines when piped."""
    if sys.stdin.isatty():
        return click.prompt(prompt, hide_input=True, confirmation_prompt=True)
    first = sys.stdin.readline().rstrip("\n")
    second = sys.stdin.readline().rstrip("\n")
    if first != second:
        raise click.ClickException("The two passwords differ.")
    return first


@users_cli.command("create")
@click.argument("name")
def users_create(name: str) -> None:
    """Create a user (prompts for the password twice)."""
    from app.auth import service

    password = _read_password()
    try:
        user = service.create_user(name, password)
    except service.AuthError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Created user {user.username} (id {user.id}).")


@users_cli.command("passwd")
@click.argument("name")
def users_passwd(name: str) -> None:
    """Change a user's password, clear a lockout and end every session of the user."""
    from app.auth import service

    user = service.user_by_name(name)
    if user is None:
        raise click.ClickException(f"No user named {name!r}.")
    try:
        service.set_password(user, _read_password("New password"))
    except service.AuthError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Password of {name} changed.")


@tokens_cli.command("create")
@click.argument("name")
@click.option("--user", "username", default=None, help="Owner (default: the first admin).")
@click.option("--expires-days", type=int, default=None,
              help="Valid for this many days (default: until revoked).")
def tokens_create(name: str, username: str | None, expires_days: int | None) -> None:
    """Create an API token; the token is printed on the last line."""
    from app.auth import service

    user = service.user_by_name(username) if username else service.first_admin()
    if user is None:
        raise click.ClickException("No such user; create one with `flask users create NAME`.")
    try:
        token, plain = service.create_token(user, name, expires_days)
    except service.AuthError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Token {token.name} (id {token.id}) for {user.username}; shown only once:")
    click.echo(plain)


@tokens_cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON document.")
def tokens_list(as_json: bool) -> None:
    """Every API token: name, owner, created, last used, expiry and state (never the token)."""
    from app.auth import service

    rows = [service.token_json(t) for t in service.list_tokens()]
    if as_json:
        click.echo(json.dumps({"tokens": rows}, indent=2))
        return
    if not rows:
        click.echo("No API tokens.")
    for r in rows:
        click.echo(f"{r['id']:>4}  {r['name']:<24} {r['user']:<12} {r['state']:<8} "
                   f"created {r['created_at']}  last used {r['last_used_at'] or 'never'}  "
                   f"expires {r['expires_at'] or 'never'}")


@tokens_cli.command("revoke")
@click.argument("token_id", type=click.IntRange(1, 2**63 - 1))
def tokens_revoke(token_id: int) -> None:
    """Revoke an API token by its id (see `flask tokens list`)."""
    from app.auth import service
    from app.errors import NotFound

    try:
        token = service.revoke_token(token_id)
    except NotFound as exc:
        raise click.ClickException(exc.message) from exc
    click.echo(f"Token {token.name} (id {token.id}) revoked.")


@click.command("worker")
@click.argument("queues", nargs=-1)
@click.option("--burst", is_flag=True, help="Stop when the queues are empty.")
def worker_command(queues: tuple[str, ...], burst: bool) -> None:
    """Run an RQ worker (default: every queue) inside the app context."""
    from app.tasks.worker import run_worker

    run_worker(list(queues), burst=burst)


@click.group("cron")
def cron_cli() -> None:
    """Periodic jobs (RQ's cron scheduler)."""


@cron_cli.command("run")
def cron_run() -> None:
    """Enqueue the periodic jobs of app/tasks when they are due."""
    from app.tasks.worker import run_cron

    run_cron(current_app._get_current_object())


@cron_cli.command("list")
def cron_list() -> None:
    """Show the table of periodic jobs with their intervals."""
    from app.system.settings import current_settings
    from app.tasks import PERIODIC_JOBS, interval_of

    for path, queue, interval, timeout in PERIODIC_JOBS:
        seconds = interval_of(interval, current_settings())
        click.echo(f"{path:55} {queue:14} every {seconds:>5}s  timeout {timeout}s")


@click.command("up")
@click.option("--no-demo", is_flag=True, help="Do not seed and start the demo strategies.")
def up_command(no_demo: bool) -> None:
    """Run the whole system: Redis, web, gateway, supervisor, worker, cron, simulator."""
    from app.system.stack import run_stack

    run_stack(demo=not no_demo)


# Domain command groups: module path -> attribute (a click group). Missing ones are skipped
# while the domain is being built.
DOMAIN_COMMANDS = (
    ("app.strategies.cli", "strategies_cli"),
    ("app.runtime.cli", "supervisor_cli"),
    ("app.runtime.cli", "freqtrade_cli"),
    ("app.simulator.cli", "simulator_cli"),
    ("app.backups.cli", "backup_cli"),
    ("app.proxies.cli", "proxies_cli"),
    ("app.relay.cli", "relay_cli"),
    ("app.signals.cli", "signals_cli"),
    ("app.notifications.cli", "notifications_cli"),
    ("app.monitoring.cli", "monitoring_cli"),
)


def register_cli(app: Flask) -> None:
    """Attach every command group to the app."""
    for command in (users_cli, tokens_cli, worker_command, cron_cli, up_command):
        app.cli.add_command(command)
    for module_path, attr in DOMAIN_COMMANDS:
        try:
            module = importlib.import_module(module_path)
        except ModuleNotFoundError as exc:
            if exc.name == module_path:
                continue
            raise
        app.cli.add_command(getattr(module, attr))
