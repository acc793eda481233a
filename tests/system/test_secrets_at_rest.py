"""Files that hold secrets are their owner's alone: var/ 0700, the database and keys 0600."""

from __future__ import annotations

import stat
from pathlib import Path

from sqlalchemy import text

from app import create_app


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _app(folder: Path, app_config: dict):
    config = {k: v for k, v in app_config.items() if k not in ("SQLALCHEMY_DATABASE_URI",
                                                                 "SECRET_KEY")}
    return create_app({**config, "VAR_DIR": str(folder),
                       "SQLALCHEMY_DATABASE_URI": f"sqlite:///{folder / 'btcw.db'}"})


def test_a_new_var_folder_is_created_for_its_owner_only(tmp_path, app_config, monkeypatch):
    monkeypatch.delenv("SECRET_KEY", raising=False)
    folder = tmp_path / "var"
    application = _app(folder, app_config)
    from app.extensions import db

    with application.app_context():
        db.session.execute(text("CREATE TABLE t (x INTEGER)"))
        db.session.execute(text("INSERT INTO t VALUES (1)"))
        db.session.commit()
        db.engine.dispose()
    assert _mode(folder) == 0o700
    assert _mode(folder / "btcw.db") == 0o600
    assert _mode(folder / "secret_key") == 0o600
    for extra in ("btcw.db-wal", "btcw.db-shm"):
        if (folder / extra).exists():
            assert _mode(folder / extra) == 0o600, extra


def test_an_existing_open_var_folder_is_tightened(tmp_path, app_config):
    folder = tmp_path / "var"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    database = folder / "btcw.db"
    database.touch()
    database.chmod(0o644)
    _app(folder, app_config)
    assert _mode(folder) == 0o700 and _mode(database) == 0o600
