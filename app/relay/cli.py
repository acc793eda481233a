"""`flask relay …`: the exchange relays' figures from the terminal."""

from __future__ import annotations

import json

import click
from flask.cli import AppGroup

from app.relay import service

relay_cli = AppGroup("relay", help="The exchange relay: shared market data, one rate budget.")


@relay_cli.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status_command(as_json: bool) -> None:
    """Every live relay: hit rate, added latency, and per upstream IP or proxy its state,
    requests/min, weight used vs budget and 429/418 seen."""
    report = service.access_report()
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    if not report["enabled"]:
        click.echo("The exchange relay is off (system.exchange_relay.enabled): bots go direct.")
    if not report["relays"]:
        click.echo("No relay has reported (make run starts one per host).")
    for r in report["relays"]:
        overhead = r["overhead_ms"]
        click.echo(f"Relay on {r['host']} (updated {r['age']} s ago): {r['counts']['requests']} "
                   f"requests, hit rate {r['hit_rate'] if r['hit_rate'] is not None else '—'} %, "
                   f"added latency p50 {overhead['p50']} ms / p99 {overhead['p99']} ms")
        for u in r["upstreams"]:
            blocked = f" for {u['blocked_for']} s" if u["blocked_for"] else ""
            click.echo(f"  {u['name']:16} {u['state'] + blocked:22} {u['requests_per_min']:>6}/min"
                       f"  weight {u['weight_used']}/{u['weight_budget']}"
                       f"  429 {u['429']}  418 {u['418']}  errors {u['errors']}")
