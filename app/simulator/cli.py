"""``flask simulator …``: run the market simulator (also ``python -m app.simulator``)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import click
from flask.cli import AppGroup

from app.simulator.market import DEFAULT_PAIRS
from app.simulator.server import create_simulator_app, parse_replay, serve_simulator

simulator_cli = AppGroup("simulator", help="The offline market simulator (a Binance look-alike).")


def simulator_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options of ``simulator run``, shared by the flask command and ``python -m``."""
    options = [
        click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind."),
        click.option("--port", default=9999, show_default=True, type=int, help="Port to bind."),
        click.option("--seed", default=42, show_default=True, type=int, help="Market seed."),
        click.option(
            "--pairs",
            default=",".join(DEFAULT_PAIRS),
            show_default=True,
            help="Comma-separated pairs, e.g. BTC/USDT,ETH/USDT.",
        ),
        click.option(
            "--replay",
            multiple=True,
            metavar="PAIR=CSV",
            help="Replay a CSV (timestamp_ms,open,high,low,close,volume) as PAIR's 1m path.",
        ),
        click.option(
            "--weight-limit",
            default=6000,
            show_default=True,
            type=click.IntRange(0, 10**7),
            help="Binance's request weight per IP per minute (429, then 418 bans); 0 = no limit.",
        ),
        click.option(
            "--ban-seconds",
            default=120,
            show_default=True,
            type=click.IntRange(1, 10**6),
            help="The first 418 ban; each repeat doubles it.",
        ),
        click.option(
            "--level",
            multiple=True,
            metavar="PAIR=PRICE",
            help="Price level of a pair (replays are rescaled to end at it).",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def run_simulator(
    host: str, port: int, seed: int, pairs: str, replay: tuple[str, ...], level: tuple[str, ...],
    weight_limit: int = 6000, ban_seconds: int = 120,
) -> None:
    """Build the simulator from command-line values and serve it until interrupted."""
    try:
        replays = dict(parse_replay(item) for item in replay)
        levels = {pair: float(price) for pair, price in (parse_replay(item) for item in level)}
        app = create_simulator_app(
            {
                "seed": seed,
                "pairs": [p for p in pairs.split(",") if p.strip()],
                "replay": replays,
                "price_levels": levels,
                "weight_limit": weight_limit,
                "ban_seconds": ban_seconds,
            }
        )
    except (OSError, ValueError) as exc:
        raise click.BadParameter(str(exc)) from exc
    market = app.extensions["btcw_market"]
    click.echo(
        f"Market simulator on http://{host}:{port} (seed {seed}, "
        f"pairs {', '.join(market.profiles)}"
        + (f", replaying {', '.join(market.replays)}" if market.replays else "")
        + ")"
    )
    serve_simulator(app, host, port)


@simulator_cli.command("run")
@simulator_options
def run_command(**values: Any) -> None:
    """Serve the simulated exchange (Binance spot public REST API) for dry-run bots.

    Options not given on the command line come from the `simulator:` block of system.yml.
    """
    from click.core import ParameterSource

    from app.system.settings import current_settings

    logging.basicConfig(level=logging.INFO)
    configured = current_settings().system.simulator
    from_config = {
        "host": configured.host,
        "port": configured.port,
        "seed": configured.seed,
        "pairs": ",".join(configured.pairs),
        "replay": tuple(configured.replay),
        "weight_limit": configured.weight_limit,
        "ban_seconds": configured.ban_seconds,
    }
    ctx = click.get_current_context()
    for name, value in from_config.items():
        if ctx.get_parameter_source(name) in (ParameterSource.DEFAULT, None):
            values[name] = value
    run_simulator(**values)


@click.command("simulator")
@simulator_options
def standalone_command(**values: Any) -> None:
    """Serve the simulated exchange without loading the BTC Watcher app."""
    logging.basicConfig(level=logging.INFO)
    run_simulator(**values)
