"""`flask signals …`: signal outcomes (what the market did next) and quality."""

from __future__ import annotations

import json

import click
from flask.cli import AppGroup

from app.errors import AppError
from app.signals import outcomes

signals_cli = AppGroup("signals", help="Signal outcomes and quality.")


@signals_cli.command("outcomes")
@click.option("--backfill", is_flag=True, help="Score every old signal too (in batches).")
def outcomes_command(backfill: bool) -> None:
    """Score the signals whose 1/4/24-candle horizons have passed."""
    result = outcomes.backfill() if backfill else outcomes.compute()
    click.echo(f"done {result['done']}, pending {result['pending']}, unavailable "
               f"{result['unavailable']}; {result['requests']} klines requests")


@signals_cli.command("quality")
@click.argument("strategy_id", type=int, required=False)
@click.option("--horizon", type=int, default=4, show_default=True, help="1, 4 or 24 candles.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def quality_command(strategy_id: int | None, horizon: int, as_json: bool) -> None:
    """Hit rate and returns by strength level and decile, and the information coefficient."""
    try:
        report = outcomes.quality(strategy_id, horizon)
    except AppError as exc:
        raise click.ClickException(exc.message) from exc
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(f"{report['signals']} scored signals, {horizon}-candle returns")
    for level, stats in report["by_level"].items():
        if stats["count"]:
            click.echo(f"  {level:7} n={stats['count']:<6} right {stats['hit_rate']:.0%}  "
                       f"mean {stats['mean']:+.4%}  median {stats['median']:+.4%}")
        else:
            click.echo(f"  {level:7} n=0")
    ic = report["information_coefficient"]
    click.echo(f"  IC {ic['ic']:+.3f} (t {ic['t']:+.2f}, n={ic['n']})" if ic["ic"] is not None
               else f"  IC: too few signals (n={ic['n']})")


@signals_cli.command("calibrate")
@click.argument("strategy_id", type=int)
@click.option("--horizon", type=int, default=None, help="1, 4 or 24 candles (default: config).")
@click.option("--apply", "apply_", is_flag=True, help="Set the suggested thresholds.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def calibrate_command(strategy_id: int, horizon: int | None, apply_: bool, as_json: bool) -> None:
    """Suggested strong/medium/weak thresholds from the strategy's scored signals."""
    try:
        report = outcomes.calibration(strategy_id, horizon)
        applied = outcomes.apply_calibration(strategy_id, horizon, by="cli") if apply_ else None
    except AppError as exc:
        raise click.ClickException(exc.message) from exc
    if as_json:
        click.echo(json.dumps({"suggestion": report, "applied": applied}, indent=2))
        return
    click.echo(f"{report['n']} scored signals, {report['horizon']}-candle returns; now "
               f"{report['current']}")
    if report["reason"]:
        click.echo(f"  no suggestion: {report['reason']}")
    for level, s in report["levels"].items():
        if s.get("threshold") is None:
            click.echo(f"  {level:7} — {s['reason']}")
        else:
            click.echo(f"  {level:7} ≥ {s['threshold']:.4f}: {s['hit_rate']:.0%} right "
                       f"(95 % CI {s['ci_low']:.0%}–{s['ci_high']:.0%}, n = {s['n']}, "
                       f"target {s['target']} %)")
    if applied:
        click.echo(f"Applied: {applied['before']} → {applied['after']}")


@signals_cli.command("consensus")
@click.option("--pair", default=None, help="Only this pair, e.g. BTC/USDT.")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def consensus_command(pair: str | None, limit: int, as_json: bool) -> None:
    """The latest consensus signals: several strategies agreeing on a pair and direction."""
    from app.signals import consensus

    rows = [consensus.consensus_json(r) for r in consensus.recent(limit, pair)]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("No consensus signals yet.")
    for c in rows:
        outcome = " / ".join("…" if c["outcome"][f"return_{h}"] is None
                             else f"{c['outcome'][f'return_{h}']:+.3%}" for h in (1, 4, 24))
        click.echo(f"#{c['id']:<5} {c['pair']:10} {c['direction']:4} {c['level']:6} "
                   f"{c['priority']}  strategies {c['strategy_ids']}  after 1/4/24: {outcome}")
