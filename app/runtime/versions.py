"""FreqTrade versions side by side: the one this app was installed with, and others in venvs.

The default version is the `freqtrade` of this app's own environment (requirements.txt). Any
other release is installed from the package registry into its own virtual environment,
`<system.freqtrade.versions_directory>/<version>/` (`pip install freqtrade==X` with its
dependencies; pip's cache makes a second install fast). A version counts as installed only once
its `.installed` marker is written, after `import freqtrade` and `freqtrade --version` both
answered with that version; a failed install removes its folder, so nothing is left half-done.
A strategy names its version (`strategies.freqtrade_version`, NULL = the default); a version no
strategy names can be removed.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from importlib.metadata import version as package_version
from pathlib import Path

from sqlalchemy import func, select

from app.errors import AppError, Conflict, NotFound
from app.extensions import db
from app.runtime import paths
from app.strategies.models import Strategy
from app.system.settings import current_settings

log = logging.getLogger(__name__)

VERSION_RE = re.compile(r"^20\d{2}\.\d{1,2}(\.\d{1,3})?$")
MARKER = ".installed"
INSTALL_TIMEOUT = 1800


class VersionError(AppError):
    """A version that cannot be used, installed or removed, and why."""

    status = 422


def default_version() -> str:
    """The FreqTrade release of this app's own environment."""
    return package_version("freqtrade")


def versions_dir() -> Path:
    """Where other releases get their virtual environments."""
    folder = paths.resolve_path(current_settings().system.freqtrade.versions_directory)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    return folder


def parse(text: object) -> str:
    """A release string like 2026.8 or 2026.8.1; VersionError naming the problem otherwise."""
    if not isinstance(text, str) or not VERSION_RE.match(text.strip()):
        raise VersionError(f"{text!r} is not a FreqTrade release (like 2026.9 or 2026.8.1).",
                           status=400, field="version")
    return text.strip()


def key(version: str) -> tuple[int, ...]:
    """Sortable form of a release."""
    return tuple(int(p) for p in version.split("."))


def effective(version: str | None) -> str:
    """A strategy's version: its own, or the default when it names none."""
    return version or default_version()


def env_dir(version: str) -> Path:
    return versions_dir() / version


def is_installed(version: str) -> bool:
    return version == default_version() or (env_dir(version) / MARKER).is_file()


def executable(version: str | None) -> Path:
    """The `freqtrade` command of a version (VersionError when it is not installed)."""
    version = effective(version)
    if version == default_version():
        return paths.freqtrade_executable()
    command = env_dir(version) / "bin" / "freqtrade"
    if not is_installed(version) or not command.exists():
        raise VersionError(f"FreqTrade {version} is not installed (flask freqtrade install "
                           f"{version}).")
    return command


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def usage() -> dict[str, list[int]]:
    """Strategy ids per effective version."""
    found: dict[str, list[int]] = {}
    for strategy_id, version in db.session.execute(
            select(Strategy.id, Strategy.freqtrade_version).where(Strategy.deleted_at.is_(None))):
        found.setdefault(effective(version), []).append(strategy_id)
    return found


def installed() -> list[dict]:
    """Every installed version: version, default?, path, size, strategies using it."""
    used = usage()
    rows = [{"version": default_version(), "default": True, "path": str(sys.prefix),
             "size_bytes": None, "strategies": used.get(default_version(), [])}]
    for folder in sorted(versions_dir().iterdir(), key=lambda p: p.name):
        if folder.is_dir() and (folder / MARKER).is_file() and folder.name != default_version():
            info = json.loads((folder / MARKER).read_text() or "{}")
            rows.append({"version": folder.name, "default": False, "path": str(folder),
                         "size_bytes": info.get("size_bytes"),
                         "installed_at": info.get("installed_at"),
                         "strategies": used.get(folder.name, [])})
    return sorted(rows, key=lambda r: key(r["version"]), reverse=True)


def _run(argv: list[str], timeout: float = INSTALL_TIMEOUT) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,  # noqa: S603
                            check=False, env={k: v for k, v in os.environ.items()
                                              if not k.startswith(("PYTEST_", "FREQTRADE__"))})
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-6:]
        raise VersionError(" ".join(tail)[-800:] or f"{argv[0]} failed")
    return result.stdout


def install(version: str, progress: Callable[[str], None] | None = None) -> dict:
    """Install a release into its own venv (a no-op when it is there); its row of installed()."""
    version = parse(version)
    say = progress or (lambda what: log.info("freqtrade %s: %s", version, what))
    if is_installed(version):
        return next(r for r in installed() if r["version"] == version)
    folder = env_dir(version)
    shutil.rmtree(folder, ignore_errors=True)  # a half-installed leftover
    started = time.monotonic()
    try:
        say("creating the virtual environment")
        _run([sys.executable, "-m", "venv", str(folder)])
        python = folder / "bin" / "python"
        say(f"pip install freqtrade=={version}")
        try:
            # aiohttp-socks: ccxt's socksProxy in FreqTrade's async client (SOCKS5 proxies).
            _run([str(python), "-m", "pip", "install", "--disable-pip-version-check",
                  "--no-input", f"freqtrade=={version}", "aiohttp-socks"])
        except VersionError as exc:
            raise VersionError(f"FreqTrade {version} could not be installed from the package "
                               f"registry: {exc.message}") from exc
        say("checking the install")
        found = _run([str(python), "-c", "import freqtrade; print(freqtrade.__version__)"],
                     300).strip()
        reported = _run([str(folder / "bin" / "freqtrade"), "--version"], 300)
        if found != version or version not in reported:
            raise VersionError(f"the install of FreqTrade {version} reports {found!r}")
        info = {"version": version, "installed_at": time.time(), "size_bytes": _size(folder),
                "seconds": round(time.monotonic() - started, 1)}
        (folder / MARKER).write_text(json.dumps(info))
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    say(f"installed in {info['seconds']} s")
    return next(r for r in installed() if r["version"] == version)


def remove(version: str) -> None:
    """Delete a version no strategy uses (never the default)."""
    version = parse(version)
    if version == default_version():
        raise Conflict(f"FreqTrade {version} is the default version (requirements.txt); it "
                       f"cannot be removed.")
    if not is_installed(version):
        raise NotFound(f"FreqTrade {version} is not installed.")
    users = usage().get(version, [])
    if users:
        raise Conflict(f"FreqTrade {version} is used by strategies {users}; move them to "
                       f"another version first.")
    shutil.rmtree(env_dir(version))


def check_target(version: str, strategy_ids: list[int]) -> str:
    """Refuse a move to `version` that FreqTrade cannot do: its trade-database migrations go
    only forward, so no strategy may go back to a release older than the one it runs now."""
    version = parse(version)
    current = dict(db.session.execute(select(Strategy.id, Strategy.freqtrade_version)
                                      .where(Strategy.id.in_(strategy_ids))).all())
    missing = sorted(set(strategy_ids) - set(current))
    if missing:
        raise NotFound(f"No strategies with ids {missing}.")
    older = {sid: effective(v) for sid, v in current.items() if key(effective(v)) > key(version)}
    if older:
        raise VersionError(
            f"FreqTrade {version} is older than what strategies {sorted(older)} run now "
            f"({', '.join(sorted(set(older.values())))}): FreqTrade's trade-database "
            f"migrations only go forward, so that would be a downgrade past a migration.")
    return version


def strategies_on(version: str) -> int:
    return db.session.scalar(select(func.count(Strategy.id)).where(
        Strategy.deleted_at.is_(None), Strategy.freqtrade_version == version)) or 0
