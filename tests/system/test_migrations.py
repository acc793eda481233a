"""The migration creates exactly the schema the models describe, from empty."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

# Depends on the database dialect: runs on SQLite and on PostgreSQL.
pytestmark = pytest.mark.both_databases

ROOT = Path(__file__).resolve().parents[2]


def _upgrade(url: str, tmp_path: Path) -> None:
    env = {"DATABASE_URL": url, "BTCW_VAR_DIR": str(tmp_path), "PATH": "/usr/bin:/bin",
           "REDIS_URL": "redis://127.0.0.1:1/0"}
    result = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "flask", "--app", "app", "db", "upgrade"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]


def _diff(url: str) -> list:
    from app import import_models
    from app.extensions import db

    import_models()
    engine = create_engine(url)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(ctx, db.metadata)
    engine.dispose()
    return diff


def test_upgrade_from_empty_matches_models(tmp_path, request):
    import os

    if os.environ.get("BTCW_TEST_DB") == "postgres":
        server = request.getfixturevalue("postgres_server")
        url = server.create_database("migrations_check")
    else:
        url = f"sqlite:///{tmp_path / 'fresh.db'}"
    _upgrade(url, tmp_path)
    engine = create_engine(url)
    tables = set(inspect(engine).get_table_names())
    engine.dispose()
    assert {"users", "strategies", "signals", "notifications", "alerts", "backups"} <= tables
    assert _diff(url) == []
