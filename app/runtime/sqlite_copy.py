"""Consistent copies of SQLite databases that may be in use (a bot's trade database in WAL
mode, the app's own): SQLite's online backup API, never a file copy."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def copy_database(source: Path, target: Path, self_contained: bool = False) -> None:
    """Copy `source` into `target` in one transaction on the target (other connections to the
    target see the old or the new contents, never a mix). `self_contained` leaves the copy in
    rollback-journal mode: one file, no -wal beside it."""
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
    dst = sqlite3.connect(target, timeout=60)
    try:
        with dst:
            src.backup(dst)
        if self_contained:
            dst.execute("PRAGMA journal_mode=DELETE")
    finally:
        src.close()
        dst.close()
