"""A database made by the first release upgrades to this one with every row and value kept, and
`flask backup upgrade` backs a database that holds data up first (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import datetime

import pytest
import sqlalchemy as sa
from flask_migrate import upgrade

from app import create_app

pytestmark = pytest.mark.both_databases
BASELINE = "daae0ace9a1c"  # the first release's schema


def _value(column: sa.Column, row: int):
    """A representative value of a column's type (row 1 or 2)."""
    kind = column.type
    if column.foreign_keys:
        return row
    if isinstance(kind, sa.Boolean):
        return row == 1
    if isinstance(kind, sa.DateTime):
        return datetime(2026, 1, row + 1, 3, 4, 5, 678901)
    if isinstance(kind, sa.JSON):
        return {"kept": [row, "ü", 2.5, None], "nested": {"deep": {"n": row}}}
    if isinstance(kind, sa.BigInteger):
        return 2**40 + row
    if isinstance(kind, sa.Integer):
        return row
    if isinstance(kind, sa.Float | sa.Numeric):
        return 0.1 * row + 65000.25
    if isinstance(kind, sa.Text):
        return f"text {row} with ü and 'quotes'"
    if isinstance(kind, sa.String):
        return f"s{row}"[: kind.length or 32]
    raise AssertionError(f"no sample value for {column.table.name}.{column.name}: {kind!r}")


@pytest.fixture
def baseline_app(app_config, database_url, postgres_server, tmp_path, request):
    """An app on a fresh database at the baseline revision."""
    if database_url.startswith("sqlite"):
        url = f"sqlite:///{tmp_path / 'old.db'}"
    else:
        url = postgres_server.create_database(f"baseline_{abs(hash(request.node.name)) % 10**8}")
    application = create_app({**app_config, "SQLALCHEMY_DATABASE_URI": url,
                              "VAR_DIR": str(tmp_path / "var")})
    with application.app_context():
        upgrade(revision=BASELINE)
    yield application, url
    with application.app_context():
        from app.extensions import db

        db.engine.dispose()


def _fill(engine) -> dict[str, list[dict]]:
    """Two rows in every table of the baseline schema; what was written."""
    meta = sa.MetaData()
    meta.reflect(engine)
    written: dict[str, list[dict]] = {}
    with engine.begin() as conn:
        for table in meta.sorted_tables:
            if table.name == "alembic_version":
                continue
            rows = [{c.name: _value(c, n) for c in table.columns} for n in (1, 2)]
            conn.execute(table.insert(), rows)
            written[table.name] = rows
            if engine.dialect.name == "postgresql" and "id" in table.c:
                # Rows written with their ids, as the app's own inserts would have moved the
                # sequence.
                conn.execute(sa.text(f"SELECT setval(pg_get_serial_sequence('{table.name}', "
                                     f"'id'), 2)"))
    return written


def test_every_row_of_the_first_release_survives_the_upgrade(baseline_app):
    application, url = baseline_app
    engine = sa.create_engine(url)
    try:
        written = _fill(engine)
        assert {"strategies", "signals", "notifications", "users", "api_tokens",
                "metric_samples", "alerts", "strategy_events"} <= set(written)
        with application.app_context():
            upgrade()
        meta = sa.MetaData()
        meta.reflect(engine)
        with engine.connect() as conn:
            version = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
            for name, rows in written.items():
                table = meta.tables[name]
                pk = list(table.primary_key.columns)
                found = [dict(r._mapping) for r in conn.execute(sa.select(table).order_by(*pk))]
                assert len(found) == len(rows), name
                for want, got in zip(rows, found, strict=True):
                    for column, value in want.items():
                        stored = got[column]
                        if isinstance(value, float):
                            assert stored == pytest.approx(value), (name, column)
                        else:
                            assert stored == value, (name, column, stored, value)
        from alembic.script import ScriptDirectory

        with application.app_context():
            config = application.extensions["migrate"].migrate.get_config()
            assert version == ScriptDirectory.from_config(config).get_current_head()
    finally:
        engine.dispose()


def test_flask_backup_upgrade_backs_up_a_database_with_data_first(baseline_app):
    application, url = baseline_app
    engine = sa.create_engine(url)
    try:
        _fill(engine)
    finally:
        engine.dispose()
    runner = application.test_cli_runner()
    result = runner.invoke(args=["backup", "upgrade"])
    assert result.exit_code == 0, result.output
    assert "Backed up first to" in result.output and "(verified)" in result.output
    assert f"from {BASELINE} to" in result.output
    again = runner.invoke(args=["backup", "upgrade"])
    assert again.exit_code == 0 and "up to date" in again.output
    listed = runner.invoke(args=["backup", "list"])
    assert "-upgrade.tar" in listed.output and "verified" in listed.output
