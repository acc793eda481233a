"""Row counts and a checksum of every table.

Two kinds, both reading each table ordered by its primary key:

- `native_digests` (what a backup's manifest holds, what verify and restore compare): SQLite's
  tables hashed by its own shell's `sha3_query()` (in C, beside the Python process),
  PostgreSQL's rows as `row::text` hashed in batches. The same data on the same engine gives
  the same digest; a million rows cost a couple of seconds. The same data on the same engine gives
  the same digest.
- `digest_database` (portable, for a restore `--into` the other engine): every value through the
  model's column type (JSON parsed, times as datetimes) written canonically (JSON with sorted
  keys, ISO times, floats by repr), columns in name order, so SQLite and PostgreSQL holding the
  same rows give the same digest. Slower: it parses every JSON value.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import sqlite3
import subprocess
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

from sqlalchemy import MetaData, Table, inspect, select
from sqlalchemy.engine import Connection

from app.extensions import db

# Alembic's own table, and the catalog of backup files (it describes the backup folder, not the
# data: a restore keeps the live catalog).
SKIP = frozenset({"alembic_version", "backups"})
BATCH = 5000


def _plain(value):
    """A value as JSON-able, engine-independent data."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=None).isoformat(timespec="microseconds")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    if isinstance(value, Decimal):
        return repr(float(value))
    if isinstance(value, bytes | memoryview):
        return bytes(value).hex()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def table_of(name: str, reflected: MetaData) -> Table:
    """The model's table when there is one (its types parse JSON and times), else the
    reflected one."""
    model = db.metadata.tables.get(name)
    return model if model is not None else reflected.tables[name]


def table_names(conn: Connection) -> list[str]:
    """Every table of the database but Alembic's own."""
    return sorted(n for n in inspect(conn).get_table_names() if n not in SKIP)


def digest_table(conn: Connection, table: Table, columns: list[str]) -> dict:
    """{"rows": n, "sha256": hex} of one table over `columns`."""
    cols = [table.c[c] for c in sorted(columns)]
    keys = list(table.primary_key.columns) or cols
    digest = hashlib.sha256()
    rows = 0
    result = conn.execution_options(yield_per=BATCH).execute(select(*cols).order_by(*keys))
    for row in result:
        digest.update(json.dumps(_plain(list(row)), sort_keys=True,
                                 separators=(",", ":")).encode())
        digest.update(b"\n")
        rows += 1
    return {"rows": rows, "sha256": digest.hexdigest()}


def digest_database(conn: Connection, progress: Callable[[str], None] | None = None) -> dict:
    """{table: {"rows", "sha256"}} for every table of the database behind `conn`."""
    reflected = MetaData()
    names = table_names(conn)
    reflected.reflect(conn, only=names)
    found = {}
    for name in names:
        if progress:
            progress(name)
        table = table_of(name, reflected)
        present = {c.name for c in reflected.tables[name].columns}
        found[name] = digest_table(conn, table, [c for c in present if c in table.c])
    return found


def _order_by(conn: Connection, name: str) -> str:
    keys = inspect(conn).get_pk_constraint(name).get("constrained_columns") or []
    if keys:
        return ", ".join(f'"{k}"' for k in keys)
    return "rowid" if conn.dialect.name == "sqlite" else "1"


def native_digests(conn: Connection) -> dict:
    """{table: {"rows", "sha256"}} from the rows as the engine stores them (same engine only):
    SQLite's through its command-line shell's sha3_query() (C, no row reaches Python);
    PostgreSQL's `row::text` read in batches."""
    if conn.dialect.name == "sqlite":
        return sqlite_file_digests(Path(conn.engine.url.database))
    found = {}
    raw = conn.connection.driver_connection
    for number, name in enumerate(table_names(conn)):
        order = _order_by(conn, name)
        digest = hashlib.sha256()
        rows = 0
        cursor = raw.cursor(name=f"btcw_digest_{number}")
        cursor.itersize = BATCH
        cursor.execute(f'SELECT t::text FROM "{name}" t ORDER BY {order}')  # noqa: S608
        try:
            while batch := cursor.fetchmany(BATCH):
                digest.update("\n".join([r[0] for r in batch]).encode())
                digest.update(b"\n")
                rows += len(batch)
        finally:
            cursor.close()
        found[name] = {"rows": rows, "sha256": digest.hexdigest()}
    return found


def sqlite_command() -> str:
    """Debian's sqlite3 shell (it has sha3_query built in)."""
    found = shutil.which("sqlite3")
    if found is None:
        raise RuntimeError("the sqlite3 shell is not installed (Debian: apt-get install sqlite3)")
    return found


def sqlite_digest_script(path: Path) -> str:
    """The SQL that prints `table|rows|sha3-256` for every table of a SQLite file."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        names = sorted(r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'")
            if r[0] not in SKIP)
        lines = []
        for name in names:
            keys = [r[1] for r in sorted(conn.execute(f'PRAGMA table_info("{name}")'),
                                         key=lambda r: r[5]) if r[5]]
            order = ", ".join(f'"{k}"' for k in keys) or "rowid"
            query = f'SELECT * FROM "{name}" ORDER BY {order}'.replace("'", "''")  # noqa: S608
            lines.append(f"SELECT '{name}', (SELECT count(*) FROM \"{name}\"), "  # noqa: S608
                         f"lower(hex(sha3_query('{query}', 256)));")
        return "\n".join(lines)
    finally:
        conn.close()


def sqlite_file_digests(path: Path, proc: subprocess.Popen | None = None) -> dict:
    """Digests of a SQLite file (or the output of a process `start_sqlite_digests` began)."""
    proc = proc or start_sqlite_digests(path)
    out, err = proc.communicate(timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"sqlite3 could not read {path.name}: {err.strip()[-300:]}")
    found = {}
    for line in out.splitlines():
        name, rows, sha = line.rsplit("|", 2)
        found[name] = {"rows": int(rows), "sha256": sha}
    return found


def start_sqlite_digests(path: Path) -> subprocess.Popen:
    """Begin the digests of a SQLite file in a sqlite3 process (runs beside this one)."""
    proc = subprocess.Popen(  # noqa: S603 - Debian's sqlite3 on our own file
        [sqlite_command(), "-readonly", "-batch", "-noheader", "-list", str(path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdin.write(sqlite_digest_script(path))
    proc.stdin.close()
    proc.stdin = None
    return proc


def compare(expected: dict, actual: dict) -> list[str]:
    """What differs between two table digests, as messages naming the table."""
    problems = []
    for name in sorted(set(expected) | set(actual)):
        want, got = expected.get(name), actual.get(name)
        if want is None:
            problems.append(f"table {name}: not in the backup's manifest")
        elif got is None:
            problems.append(f"table {name}: missing")
        elif want["rows"] != got["rows"]:
            problems.append(f"table {name}: {got['rows']} rows, the manifest says {want['rows']}")
        elif want["sha256"] != got["sha256"]:
            problems.append(f"table {name}: same row count but the contents differ")
    return problems
