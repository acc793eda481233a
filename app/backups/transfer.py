"""A backup's database copied into another database, of either engine (`restore --into`).

The source is the backup's own database: its SQLite file as it is, or its PostgreSQL dump
restored into a scratch database on the target's (or the live) PostgreSQL server. The target
must be empty; it gets the schema of the models (the backup must be of the current schema
revision), every row table by table in foreign-key order in one transaction, Alembic's revision
stamp, and on PostgreSQL its id sequences moved past the copied ids, so new rows get fresh ids.
Returns the portable table digests of the source and of the target, which must be equal.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine, insert, inspect, select, text
from sqlalchemy.engine import Engine, make_url

from app.backups import digest
from app.extensions import db

BATCH = 2000


def _head_revision() -> str | None:
    from alembic.script import ScriptDirectory
    from flask import current_app

    config = current_app.extensions["migrate"].migrate.get_config()
    return ScriptDirectory.from_config(config).get_current_head()


def _source_engine(manifest: dict, dump: Path, into: str) -> tuple[Engine, object]:
    """An engine on the backup's data; (engine, cleanup)."""
    if manifest["engine"] == "sqlite":
        engine = create_engine(f"sqlite:///{dump}")
        return engine, engine.dispose
    from flask import current_app

    from app.backups import service

    server = into if into.startswith("postgresql") else \
        current_app.config["SQLALCHEMY_DATABASE_URI"]
    if not server.startswith("postgresql"):
        raise service.BackupError("This backup was made on PostgreSQL: reading it needs a "
                                  "PostgreSQL server (DATABASE_URL or --into must be one).")
    scratch, drop = service._scratch_pg_database(server)
    service._pg_restore(dump, scratch, clean=False)
    engine = create_engine(scratch)

    def cleanup() -> None:
        engine.dispose()
        drop()

    return engine, cleanup


def copy_backup_into(manifest: dict, dump: Path, into: str) -> tuple[dict, dict]:
    """Copy every row of the backup's database into the empty database at `into`; the
    portable digests of (source, target)."""
    from app.backups.service import BackupError

    head = _head_revision()
    if manifest.get("schema_revision") not in (None, head):
        raise BackupError(f"This backup has schema revision {manifest['schema_revision']} and "
                          f"this BTC Watcher {head}: restore it on its own engine, let "
                          f"`flask backup upgrade` bring it up to date, and back up again.")
    target = create_engine(into)
    try:
        with target.connect() as conn:
            used = [n for n in inspect(conn).get_table_names() if n != "alembic_version"]
            for name in used:
                if conn.execute(text(f'SELECT 1 FROM "{name}" LIMIT 1')).first():  # noqa: S608
                    raise BackupError(f"--into needs an empty database; "
                                      f"{make_url(into).render_as_string()} has rows in {name}.")
        source, cleanup = _source_engine(manifest, dump, into)
        try:
            db.metadata.create_all(target)
            with source.connect() as src, target.begin() as dst:
                source_digests = digest.digest_database(src)
                present = set(inspect(src).get_table_names())
                for table in db.metadata.sorted_tables:
                    if table.name not in present:
                        continue
                    rows = src.execution_options(yield_per=BATCH).execute(select(table))
                    for batch in rows.mappings().partitions(BATCH):
                        dst.execute(insert(table), [dict(r) for r in batch])
                dst.execute(text("CREATE TABLE IF NOT EXISTS alembic_version "
                                 "(version_num VARCHAR(32) NOT NULL PRIMARY KEY)"))
                dst.execute(text("DELETE FROM alembic_version"))
                if head:
                    dst.execute(text("INSERT INTO alembic_version VALUES (:v)"), {"v": head})
                if target.dialect.name == "postgresql":
                    _advance_sequences(dst)
        finally:
            cleanup()
        with target.connect() as conn:
            return source_digests, digest.digest_database(conn)
    finally:
        target.dispose()


def _advance_sequences(conn) -> None:
    """Each serial id sequence past the largest copied id."""
    for table in db.metadata.sorted_tables:
        keys = list(table.primary_key.columns)
        if len(keys) != 1 or not keys[0].autoincrement or keys[0].type.python_type is not int:
            continue
        column = keys[0].name
        sequence = conn.execute(text("SELECT pg_get_serial_sequence(:t, :c)"),
                                {"t": table.name, "c": column}).scalar()
        if sequence:
            conn.execute(text(f'SELECT setval(:s, COALESCE((SELECT MAX("{column}") FROM '  # noqa: S608
                              f'"{table.name}"), 0) + 1, false)'), {"s": sequence})
