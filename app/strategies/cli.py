"""`flask strategies …`: the same service functions as the pages and the JSON API."""

from __future__ import annotations

import json
from pathlib import Path

import click
from flask.cli import AppGroup

from app.errors import AppError, cli_error
from app.rendering import mebibytes
from app.runtime.control import RuntimeControlError
from app.strategies import library, service
from app.system.settings import current_settings

strategies_cli = AppGroup("strategies", help="Create, run and inspect strategies (FreqTrade bots).")


def _service():
    return service


def _lookup(ref: str):
    try:
        return _service().find_strategy(ref)
    except RuntimeControlError as exc:
        raise click.ClickException(str(exc)) from exc




def _echo_json(data) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


@strategies_cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--status", default=None, help="Only strategies with this status.")
def list_command(as_json: bool, status: str | None) -> None:
    """List strategies with their status, port, pid, CPU, memory and profit."""
    service = _service()
    try:
        strategies = service.list_strategies(status)
    except service.ServiceError as exc:
        raise cli_error(exc) from exc
    rows = service.list_rows(strategies)
    if as_json:
        _echo_json({"strategies": rows, "count": len(rows)})
        return
    if not rows:
        click.echo("No strategies. Create one with `flask strategies create`.")
        return

    click.echo(f"{'ID':>4}  {'NAME':20} {'CLASS':18} {'TF':4} {'STATUS':9} {'PORT':>5} "
               f"{'PID':>7} {'CPU%':>5} {'MEM (PSS)':>10} {'PROFIT':>12}  PAIRS")
    for row in rows:
        proc = row["process"] or {}
        bot = row["bot"] or {}
        profit = bot.get("profit_all_coin")
        cpu = proc.get("cpu_percent")
        click.echo(
            f"{row['id']:>4}  {row['name'][:20]:20} {row['strategy_class'][:18]:18} "
            f"{row['timeframe']:4} {row['status']:9} {row['port'] or '-':>5} "
            f"{row['pid'] or '-':>7} {'-' if cpu is None else f'{cpu:.1f}':>5} "
            f"{mebibytes(proc.get('memory_pss')):>10} "
            f"{(f'{profit:.4f}' if isinstance(profit, int | float) else '-'):>12}  "
            f"{','.join(row['pairs'])}")


@strategies_cli.command("create")
@click.argument("name")
@click.option("--class", "strategy_class", required=True, help="The IStrategy class to run.")
@click.option("--file", "strategy_file", default=None,
              help="Library file defining the class (found from the class when omitted).")
@click.option("--pairs", required=True, help="Comma separated, e.g. BTC/USDT,ETH/USDT.")
@click.option("--exchange", default="simulator", show_default=True)
@click.option("--timeframe", default="1m", show_default=True)
@click.option("--stake-currency", default="USDT", show_default=True)
@click.option("--stake-amount", default="unlimited", show_default=True)
@click.option("--wallet", "dry_run_wallet", default="1000", show_default=True,
              help="Dry-run wallet.")
@click.option("--max-open-trades", default="3", show_default=True)
@click.option("--strong", "strong_threshold", default="0.8", show_default=True)
@click.option("--medium", "medium_threshold", default="0.6", show_default=True)
@click.option("--weak", "weak_threshold", default="0.4", show_default=True)
@click.option("--proxy-id", default=None, help="Proxy id (direct connection when omitted).")
@click.option("--description", default="")
@click.option("--start", "start_now", is_flag=True, help="Start the bot right away.")
def create_command(name: str, start_now: bool, **fields) -> None:
    """Create a strategy from a class of the strategy library."""
    service = _service()
    data = {"name": name, **{k: v for k, v in fields.items() if v is not None}}
    try:
        strategy = service.create_strategy(data)
    except service.ValidationFailed as exc:
        for field, message in exc.errors.items():
            click.echo(f"  {field}: {message}", err=True)
        raise click.ClickException("Strategy not created.") from exc
    click.echo(f"Created strategy {strategy.name} (id {strategy.id}).")
    if start_now:
        _run(strategy.id, "start", wait=0)


def _run(strategy_id: int, command: str, wait: float) -> None:
    service = _service()
    try:
        result = service.run_command(strategy_id, command, wait=wait)
    except service.StartFailed as exc:
        raise click.ClickException(exc.message) from exc
    except (service.ServiceError, RuntimeControlError) as exc:
        raise cli_error(exc) from exc
    line = result["message"]
    if result.get("port") and result["strategy_status"] == "running":
        line += f" Port {result['port']}, pid {result['pid']}."
    click.echo(line)
    if result["status"] == "pending":
        raise click.ClickException("Timed out waiting.")


def _wait_option(func):
    func = click.option("--timeout", default=None, type=float,
                        help="Seconds to wait with --wait (default: startup timeout + 15).")(func)
    return click.option("--wait", is_flag=True,
                        help="Wait until the bot runs or fails (stops, for stop).")(func)


def _wait_seconds(wait: bool, timeout: float | None) -> float:
    if not wait:
        return 0
    if timeout is not None:
        return timeout

    ft = current_settings().system.freqtrade
    return float(max(ft.startup_timeout, ft.shutdown_timeout) + 15)


@strategies_cli.command("start")
@click.argument("ref")
@_wait_option
def start_command(ref: str, wait: bool, timeout: float | None) -> None:
    """Start a strategy's bot (REF: id or name); --wait prints FreqTrade's error on failure."""
    _run(_lookup(ref).id, "start", _wait_seconds(wait, timeout))


@strategies_cli.command("stop")
@click.argument("ref")
@_wait_option
def stop_command(ref: str, wait: bool, timeout: float | None) -> None:
    """Stop a strategy's bot."""
    _run(_lookup(ref).id, "stop", _wait_seconds(wait, timeout))


@strategies_cli.command("restart")
@click.argument("ref")
@_wait_option
def restart_command(ref: str, wait: bool, timeout: float | None) -> None:
    """Restart a strategy's bot (applies edited settings)."""
    _run(_lookup(ref).id, "restart", _wait_seconds(wait, timeout))


@strategies_cli.command("reload-config")
@click.argument("ref")
def reload_command(ref: str) -> None:
    """Rewrite a running bot's config and let it reload (no restart)."""
    _run(_lookup(ref).id, "reload_config", 0)


@strategies_cli.command("status")
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status_command(ref: str, as_json: bool) -> None:
    """Detailed status: record, process and what the bot reports."""
    service = _service()
    data = service.detailed_status(_lookup(ref).id)
    if as_json:
        _echo_json(data)
        return
    basic, proc, bot = data["basic_status"], data["process"] or {}, data["detailed_data"]
    click.echo(f"{basic['name']} (id {basic['id']}): {basic['status']}"
               + (f" — {basic['status_message']}" if basic["status_message"] else ""))
    click.echo(f"  class {basic['strategy_class']} from {basic['strategy_file']}, "
               f"{basic['exchange']} {basic['timeframe']} {','.join(basic['pairs'])}")
    if basic["port"]:
        click.echo(f"  bot {basic['host']}:{basic['port']} pid {basic['pid']}")
    if proc:
        cpu = "—" if proc["cpu_percent"] is None else f"{proc['cpu_percent']:.1f}%"
        click.echo(f"  cpu {cpu}  memory {mebibytes(proc['memory_pss'])} PSS · "
                   f"{mebibytes(proc['memory_rss'])} RSS  uptime {proc['uptime_seconds'] or 0} s"
                   + ("" if proc["measured_at"] else "  (not measured yet)"))
    if bot.get("bot") == "reachable":
        profit = bot.get("profit") or {}
        balance = bot.get("balance") or {}
        count = bot.get("count") or {}
        click.echo(f"  profit {profit.get('profit_all_coin')} {basic['stake_currency']} "
                   f"({profit.get('trade_count')} trades), balance {balance.get('total')}, "
                   f"open trades {count.get('current')}")
    else:
        click.echo(f"  bot {bot.get('bot')}: {bot.get('message')}")


@strategies_cli.command("logs")
@click.argument("ref")
@click.option("-n", "--limit", default=100, show_default=True, help="Lines (1-1000).")
def logs_command(ref: str, limit: int) -> None:
    """The bot's last log lines (from its API, or its log file when it is down)."""
    service = _service()
    try:
        result = service.strategy_logs(_lookup(ref).id, service.parse_limit(limit))
    except service.ServiceError as exc:
        raise cli_error(exc) from exc
    if result["note"]:
        click.echo(f"# {result['note']}", err=True)
    for line in result["logs"]:
        prefix = f"{line['time']} {line['level']} {line['logger']}: " if line["time"] else ""
        click.echo(prefix + line["message"])


@strategies_cli.command("move")
@click.argument("strategy_id", type=int)
@click.argument("host")
def move_command(strategy_id: int, host: str) -> None:
    """Move a strategy to another host: stop, carry its trade database, start there."""
    try:
        moved = service.move_strategy(strategy_id, host)
    except AppError as exc:
        raise cli_error(exc) from exc
    click.echo(f"Strategy {moved['strategy_id']} moved from {moved['from'] or '—'} to "
               f"{moved['to']}" + (" and started there." if moved["started"] else "."))


@strategies_cli.command("delete")
@click.argument("ref")
@click.option("--yes", is_flag=True, help="Do not ask.")
def delete_command(ref: str, yes: bool) -> None:
    """Soft-delete a strategy: stop its bot and hide it; its signals are kept."""
    strategy = _lookup(ref)
    if not yes:
        click.confirm(f"Delete {strategy.name} (id {strategy.id})?", abort=True)
    _service().delete_strategy(strategy.id)
    click.echo(f"Deleted {strategy.name}; its signals are kept.")


@strategies_cli.command("upload")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", default=None, help="File name in the library (default: the file's).")
@click.option("--overwrite", is_flag=True, help="Replace a library file of the same name.")
def upload_command(path: Path, name: str | None, overwrite: bool) -> None:
    """Copy a strategy file into the strategy library (checked first)."""
    try:
        saved = library.save_upload(name or path.name, path.read_bytes(), overwrite=overwrite)
    except library.LibraryError as exc:
        raise click.ClickException(exc.message) from exc
    click.echo(f"Uploaded {saved.name}: {', '.join(saved.classes)}.")


@strategies_cli.command("library")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def library_command(as_json: bool) -> None:
    """List the strategy library's files and their strategy classes."""
    files = library.scan()
    if as_json:
        _echo_json([f.to_dict() for f in files])
        return
    for f in files:
        what = f.error or (", ".join(f.classes) if f.classes else "(helper module)")
        click.echo(f"{f.name:32} {what}")
