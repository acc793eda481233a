"""A throwaway BTC Watcher app for the benches that fill a database and time it: its own temp
folder, Redis, and SQLite or a PostgreSQL server, migrated to the newest schema; everything
stopped afterwards."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Throwaway:
    app: object  # the Flask app
    base: Path  # its temp folder (the SQLite file is base / "btcw.db")
    pg: object | None  # the PostgresServer on the postgresql engine


@contextlib.contextmanager
def throwaway_app(engine: str, prefix: str, config_dir: Path | None = None):
    """Yield a Throwaway on `engine` ("sqlite" or "postgresql"), with `config_dir` (the project's
    config by default); its servers are stopped and its temp folder removed afterwards."""
    from flask_migrate import upgrade

    from app import create_app
    from tests.support.servers import PostgresServer, RedisServer

    base = Path(tempfile.mkdtemp(prefix=f"btcw-bench-{prefix}-{engine}-"))
    redis = RedisServer().start()
    pg = PostgresServer().start() if engine == "postgresql" else None
    try:
        url = pg.create_database("bench") if pg else f"sqlite:///{base / 'btcw.db'}"
        app = create_app({"SECRET_KEY": "bench", "SQLALCHEMY_DATABASE_URI": url,
                          "REDIS_URL": redis.url,
                          "CONFIG_DIR": str(config_dir or ROOT / "config"),
                          "VAR_DIR": str(base / "var")})
        with app.app_context():
            upgrade()
        yield Throwaway(app, base, pg)
    finally:
        if pg:
            pg.stop()
        redis.cleanup()
        shutil.rmtree(base, ignore_errors=True)
