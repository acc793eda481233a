"""Where the runtime keeps each bot's files: config, database, user_data folder and log.

Configured folders (system.freqtrade.*_directory) are resolved like this: an absolute path is
used as is; a path starting with `var/` lives under the app's VAR_DIR ($BTCW_VAR_DIR, so tests
and second installs keep their own); anything else is relative to the project folder.
"""

from __future__ import annotations

import sys
from pathlib import Path

from flask import current_app

from app.system.settings import current_settings
from config.loader import PROJECT_ROOT


def resolve_path(configured: str) -> Path:
    """A configured folder as an absolute path (see the module docstring)."""
    path = Path(configured)
    if path.is_absolute():
        return path
    if path.parts and path.parts[0] == "var":
        return Path(current_app.config["VAR_DIR"]).joinpath(*path.parts[1:])
    return PROJECT_ROOT / path


def bots_dir() -> Path:
    """The folder holding one sub-folder per bot."""
    return resolve_path(current_settings().system.freqtrade.config_directory)


def bot_dir(strategy_id: int) -> Path:
    """The folder of one strategy's bot: config.json, tradesv3.sqlite, user_data/."""
    return bots_dir() / str(int(strategy_id))


def config_path(strategy_id: int) -> Path:
    """The generated FreqTrade config of a strategy's bot."""
    return bot_dir(strategy_id) / "config.json"


def logs_dir() -> Path:
    """The folder of the bots' log files."""
    return resolve_path(current_settings().system.freqtrade.logs_directory)


def log_path(strategy_id: int) -> Path:
    """The log file of a strategy's bot (FreqTrade's --logfile); kept across restarts."""
    return logs_dir() / f"strategy_{int(strategy_id)}.log"


def strategies_dir() -> Path:
    """The strategy library folder (FreqTrade's strategy_path)."""
    return resolve_path(current_settings().system.freqtrade.strategies_directory)


def freqtrade_executable() -> Path:
    """The `freqtrade` command of the Python environment this app runs in."""
    return Path(sys.executable).parent / "freqtrade"
