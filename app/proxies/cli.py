"""`flask proxies …`: exchange proxies from the terminal."""

from __future__ import annotations

import json

import click
from flask.cli import AppGroup

from app.errors import AppError, cli_error
from app.proxies import service

proxies_cli = AppGroup("proxies", help="Exchange proxies: list, add, remove, check.")


@proxies_cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_command(as_json: bool) -> None:
    """Every proxy with its status (credentials masked)."""
    rows = [service.proxy_json(p) for p in service.list_proxies()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("No proxies (flask proxies add NAME URL).")
    for row in rows:
        latency = f"{row['last_latency_ms']} ms" if row["last_latency_ms"] is not None else "—"
        click.echo(f"{row['id']:>4} {row['name']:16} {row['status']:8} {latency:>8}  "
                   f"{row['url']}  group {row['group'] or '—'}  strategies {row['strategies']}")


@proxies_cli.command("add")
@click.argument("name")
@click.argument("url")
@click.option("--group", default=None, help="Failover moves bots between proxies of a group.")
def add_command(name: str, url: str, group: str | None) -> None:
    """Add a proxy (http://, https://, socks5://, socks5h://) and check it."""
    try:
        proxy = service.create({"name": name, "url": url, "group": group})
    except AppError as exc:
        raise cli_error(exc) from exc
    row = service.check(proxy)
    click.echo(f"Proxy {proxy.id} {proxy.name} added ({service.mask(proxy.url)}); check "
               + ("passed" if row.ok else f"failed: {row.error}"))


@proxies_cli.command("remove")
@click.argument("proxy_id", type=int)
def remove_command(proxy_id: int) -> None:
    """Remove a proxy no strategy uses."""
    try:
        service.remove(proxy_id)
    except AppError as exc:
        raise cli_error(exc) from exc
    click.echo(f"Proxy {proxy_id} removed.")


@proxies_cli.command("check")
@click.argument("proxy_id", type=int, required=False)
def check_command(proxy_id: int | None) -> None:
    """Check one proxy (or all, then fail strategies over)."""
    try:
        if proxy_id is not None:
            row = service.check(service.get(proxy_id))
            click.echo(("ok" if row.ok else "failed") + f" {row.latency_ms} ms {row.error}")
            return
        click.echo(json.dumps(service.check_all(), indent=2))
    except AppError as exc:
        raise cli_error(exc) from exc
