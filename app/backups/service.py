"""Backups: what one holds, how it is written, verified, restored and pruned (SPEC §11).

One backup is one tar file `btcw-YYYYmmdd-HHMMSS[-trigger].tar` in `system.backups.directory`:

    manifest.json               schema revision, FreqTrade version, engine, rows and sha256 of
                                every table, size and sha256 of every other member
    database/btcw.sqlite        SQLite: an online copy through SQLite's backup API, or
    database/btcw.pgdump        PostgreSQL: `pg_dump --format=custom`, in the same snapshot as
                                the manifest's table digests
    files/strategies/…          the strategy library
    files/bots/<id>/…           generated bot configs; each bot's trade database copied through
                                SQLite's backup API (consistent while the bot writes it)
    redis/dump.rdb              a Redis snapshot (when Redis keeps its files on this machine)

Both database forms are read without a server (a SQLite file; `pg_restore -f -` turns a dump into
SQL), so a backup of either engine restores into the other (`restore(..., into=URL)`).

A backup is written under `<name>.partial` and renamed once complete, so a failed one leaves no
file that looks complete; a failure raises a system alert. `verify` restores into a scratch
place and compares every table's digest and every member's sha256 with the manifest. `restore`
verifies first, stops the bots, replaces the database in one transaction (SQLite's backup API
onto the live file; `pg_restore --single-transaction --clean`), swaps the file folders by rename,
and starts the bots that were running again; anything failing before the swap leaves the
previous state as it was.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from flask import current_app
from redis.exceptions import RedisError
from sqlalchemy import create_engine, inspect, select, text
from sqlalchemy.engine import make_url

from app.backups import digest
from app.backups.models import Backup
from app.clock import utcnow
from app.errors import AppError, Conflict, NotFound
from app.extensions import db, redis_store
from app.monitoring.alerts import raise_alert
from app.runtime import control, paths
from app.runtime.sqlite_copy import copy_database
from app.strategies.models import Strategy
from app.system.settings import current_settings

log = logging.getLogger(__name__)

NAME_RE = re.compile(r"^btcw-\d{8}-\d{6}(-[a-z]+)?(-\d+)?\.tar$")
FORMAT = 1
PROGRESS_KEY = "btcw:backup:progress"
SKIP_FILES = (".sqlite-wal", ".sqlite-shm", ".sqlite-journal")
CHUNK = 1024 * 1024


class BackupError(AppError):
    """A backup, verify or restore that cannot be done, with the part that failed."""

    status = 422


# ------------------------------------------------------------------------------ places


def backups_dir() -> Path:
    """The backup folder (created 0700)."""
    folder = paths.resolve_path(current_settings().system.backups.directory)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    return folder


def path_of(name: str) -> Path:
    """The file of a backup name; 400 for anything that is not a plain backup name (no
    folders, no dots-dot, no other files of the folder)."""
    if not isinstance(name, str) or not NAME_RE.match(name) or "/" in name or "\\" in name:
        raise BackupError(f"{name!r} is not a backup name (btcw-YYYYmmdd-HHMMSS….tar).",
                          status=400, field="name")
    path = backups_dir() / name
    if not path.is_file():
        raise NotFound(f"No backup named {name}.")
    return path


def _engine_name(url: str) -> str:
    return "sqlite" if url.startswith("sqlite") else "postgresql"


def _sqlite_file(url: str) -> Path:
    database = make_url(url).database
    if not database or database == ":memory:":
        raise BackupError("An in-memory SQLite database cannot be backed up.")
    return Path(database)


def _pg_url(url: str) -> str:
    """A libpq URL (pg_dump, pg_restore) for an SQLAlchemy one."""
    return url.replace("postgresql+psycopg://", "postgresql://").replace(
        "postgresql+psycopg2://", "postgresql://")


def _pg_env(url: str) -> dict[str, str]:
    """The password in the environment, never on a command line a `ps` shows."""
    parts = make_url(url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    if parts.password:
        env["PGPASSWORD"] = str(parts.password)
    return env


def _pg_args(url: str) -> list[str]:
    parts = make_url(url)
    args = ["--dbname", str(parts.database or "")]
    if parts.host:
        args += ["--host", parts.host]
    if parts.port:
        args += ["--port", str(parts.port)]
    if parts.username:
        args += ["--username", parts.username]
    return args


def _tool(name: str) -> str:
    """pg_dump / pg_restore from Debian's postgresql-client (the newest installed version)."""
    found = shutil.which(name)
    if found is None:
        versions = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"),
                          key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0)
        found = str(versions[-1]) if versions else None
    if found is None:
        raise BackupError(f"{name} is not installed (Debian: apt-get install postgresql-client).")
    return found


def _sha256(path: Path) -> str:
    digest_ = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest_.update(chunk)
    return digest_.hexdigest()


def _revision(conn) -> str | None:
    """The Alembic revision of the database (None when it has no Alembic table)."""
    if "alembic_version" not in inspect(conn).get_table_names():
        return None
    return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


# ------------------------------------------------------------------------------ progress


class Progress:
    """Where a running backup, verify or restore is, in Redis for the page (best effort)."""

    def __init__(self, operation: str, name: str, steps: int):
        self.operation, self.name, self.steps, self.done = operation, name, steps, 0

    def step(self, what: str) -> None:
        self.done += 1
        log.info("%s %s: %s", self.operation, self.name, what)
        payload = {"operation": self.operation, "name": self.name, "step": what,
                   "done": min(self.done, self.steps), "steps": self.steps, "at": time.time()}
        with contextlib.suppress(RedisError, RuntimeError):
            redis_store.client.set(PROGRESS_KEY, json.dumps(payload), ex=3600)

    def finish(self) -> None:
        with contextlib.suppress(RedisError, RuntimeError):
            redis_store.client.delete(PROGRESS_KEY)


def progress() -> dict | None:
    """The operation running now, if any."""
    try:
        raw = redis_store.client.get(PROGRESS_KEY)
    except (RedisError, RuntimeError):
        return None
    return json.loads(raw) if raw else None


# ------------------------------------------------------------------------------ writing


def _copy_sqlite(source: Path, target: Path) -> None:
    """A consistent, self-contained copy of a live SQLite database (WAL included)."""
    copy_database(source, target, self_contained=True)


def _dump_database(url: str, folder: Path) -> tuple[Path, Callable[[], dict], str | None]:
    """The database into `folder`, from one consistent snapshot; (file, a call that returns
    its table digests, schema revision). SQLite's digests run in a sqlite3 process meanwhile."""
    if _engine_name(url) == "sqlite":
        target = folder / "btcw.sqlite"
        _copy_sqlite(_sqlite_file(url), target)
        conn = sqlite3.connect(f"file:{target}?mode=ro", uri=True)
        try:
            has_alembic = conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND "
                                       "name='alembic_version'").fetchone()
            revision = conn.execute("SELECT version_num FROM alembic_version").fetchone()[0] \
                if has_alembic else None
        finally:
            conn.close()
        proc = digest.start_sqlite_digests(target)
        return target, lambda: digest.sqlite_file_digests(target, proc), revision
    target = folder / "btcw.pgdump"
    engine = create_engine(url)
    try:
        with engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn:
            # One snapshot for pg_dump and the digests: rows arriving meanwhile are in neither.
            snapshot = conn.execute(text("SELECT pg_export_snapshot()")).scalar()
            dump = subprocess.Popen(  # noqa: S603
                [_tool("pg_dump"), "--format=custom", "--no-owner", "--no-privileges",
                 f"--snapshot={snapshot}", "--file", str(target), *_pg_args(url)],
                env=_pg_env(url), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            digests = digest.native_digests(conn)  # meanwhile, in the same snapshot
            _, errors = dump.communicate(timeout=3600)
            if dump.returncode != 0:
                raise BackupError(f"pg_dump failed: {errors.strip()[-500:]}")
            revision = _revision(conn)
            conn.rollback()
        return target, lambda: digests, revision
    finally:
        engine.dispose()


def _copy_tree(source: Path, target: Path, bots: bool) -> None:
    """Files of the library or the bots' folder; trade databases through the backup API."""
    if not source.is_dir():
        return
    for path in sorted(source.rglob("*")):
        if path.is_symlink() or not path.is_file() or path.name.endswith(SKIP_FILES):
            continue
        if "__pycache__" in path.parts:
            continue
        out = target / path.relative_to(source)
        out.parent.mkdir(parents=True, exist_ok=True)
        if bots and path.suffix == ".sqlite":
            _copy_sqlite(path, out)
        else:
            shutil.copy2(path, out)


def _redis_snapshot(target: Path) -> dict:
    """BGSAVE and copy Redis's file when it is on this machine; what was done."""
    try:
        client = redis_store.client
        with contextlib.suppress(RedisError):  # "already in progress": wait for that one
            client.bgsave()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            info = client.info("persistence")
            if not info.get("rdb_bgsave_in_progress"):
                break
            time.sleep(0.05)
        if info.get("rdb_last_bgsave_status", "ok") != "ok":
            return {"included": False, "reason": "Redis could not write its snapshot"}
        directory = client.config_get("dir").get("dir", "")
        name = client.config_get("dbfilename").get("dbfilename", "dump.rdb")
        source = Path(directory) / name
    except RedisError as exc:
        return {"included": False, "reason": f"Redis: {exc}"}
    if not source.is_file():
        return {"included": False, "reason": "Redis keeps its files on another machine"}
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source, target / "dump.rdb")
    return {"included": True}


def _free_space_check(folder: Path, database_url: str) -> None:
    """Refuse a backup that would leave less than min_free_mb free."""
    need = 0
    if _engine_name(database_url) == "sqlite":
        with contextlib.suppress(OSError):
            need += _sqlite_file(database_url).stat().st_size
    else:
        with contextlib.suppress(Exception):
            need += int(db.session.execute(text("SELECT pg_database_size(current_database())"))
                        .scalar() or 0)
    for tree in (paths.bots_dir(), paths.strategies_dir()):
        if tree.is_dir():
            need += sum(p.stat().st_size for p in tree.rglob("*") if p.is_file())
    free = shutil.disk_usage(folder).free
    reserve = current_settings().system.backups.min_free_mb * 1024 * 1024
    # Twice the data: the scratch copies and the archive exist at the same time.
    if free - 2 * need < reserve:
        raise BackupError(f"Not enough free disk in {folder}: {free // 2**20} MiB free, about "
                          f"{2 * need // 2**20} MiB needed plus "
                          f"{reserve // 2**20} MiB to keep free (system.backups.min_free_mb).")


def _name(trigger: str) -> str:
    stamp = utcnow().strftime("%Y%m%d-%H%M%S")
    name = f"btcw-{stamp}-{trigger}.tar"
    number = 1
    while (backups_dir() / name).exists():
        number += 1
        name = f"btcw-{stamp}-{trigger}-{number}.tar"
    return name


def _write_archive(name: str, trigger: str, steps: Progress) -> dict:
    """Write the backup file `name` (via `<name>.partial`); its manifest."""
    url = current_app.config["SQLALCHEMY_DATABASE_URI"]
    folder = backups_dir()
    partial = folder / f"{name}.partial"
    try:
        _free_space_check(folder, url)
        with tempfile.TemporaryDirectory(prefix=".btcw-backup-", dir=folder) as scratch:
            work = Path(scratch)
            steps.step("database")
            (work / "database").mkdir()
            dump, table_digests, revision = _dump_database(url, work / "database")
            steps.step("strategy library and bot folders")
            _copy_tree(paths.strategies_dir(), work / "files" / "strategies", bots=False)
            _copy_tree(paths.bots_dir(), work / "files" / "bots", bots=True)
            steps.step("Redis snapshot")
            redis_part = _redis_snapshot(work / "redis")
            steps.step("manifest and archive")
            files = {str(p.relative_to(work)): {"size": p.stat().st_size, "sha256": _sha256(p)}
                     for p in sorted(work.rglob("*")) if p.is_file()}
            tables = table_digests()
            manifest = {
                "format": FORMAT, "created_at": utcnow().isoformat() + "Z", "trigger": trigger,
                "engine": _engine_name(url), "schema_revision": revision,
                "freqtrade_version": current_settings().system.freqtrade.version,
                "database": str(dump.relative_to(work)), "tables": tables, "files": files,
                "redis": redis_part,
                "bots": sorted(int(p.name) for p in (work / "files" / "bots").glob("*")
                               if p.name.isdigit()),
            }
            (work / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
            with tarfile.open(partial, "w") as archive:
                archive.add(work / "manifest.json", "manifest.json")
                for member in files:
                    archive.add(work / member, member)
            with open(partial, "rb") as handle:
                os.fsync(handle.fileno())
            os.chmod(partial, 0o600)
            os.replace(partial, folder / name)
        return manifest
    finally:
        partial.unlink(missing_ok=True)


def _summary(manifest: dict) -> dict:
    """What the Backup row keeps of a manifest (the page and API show it)."""
    summary = {k: manifest.get(k) for k in ("engine", "schema_revision", "freqtrade_version",
                                             "redis", "bots")}
    summary["rows"] = {t: v["rows"] for t, v in manifest.get("tables", {}).items()}
    return summary


def _alert_failure(name: str, message: str) -> None:
    with contextlib.suppress(Exception):
        raise_alert("backup_failed", f"Backup {name} failed: {message}"[:1000], "warning",
                    source="backups")


def run_backup(trigger: str = "manual", verify_after: bool = True,
               prune_after: bool = True) -> Backup:
    """Write one backup (and by default verify it and prune old ones); the Backup row.

    Raises BackupError after recording the failure and raising an alert."""
    if trigger not in ("manual", "daily", "upgrade"):
        raise BackupError(f"unknown trigger {trigger!r}")
    name = _name(trigger)
    row = Backup(filename=name, status="running", trigger=trigger, parts=[])
    db.session.add(row)
    db.session.commit()
    steps = Progress("backup", name, 6 if verify_after else 5)
    try:
        manifest = _write_archive(name, trigger, steps)
        path = backups_dir() / name
        row.status, row.finished_at = "ok", utcnow()
        row.size_bytes, row.sha256 = path.stat().st_size, _sha256(path)
        row.manifest = _summary(manifest)
        row.parts = sorted({m.split("/")[0] for m in manifest["files"]} | {"manifest.json"})
        db.session.commit()
        if verify_after:
            steps.step("verify")
            verify(name)
        if prune_after:
            prune()
        return row
    except Exception as exc:
        db.session.rollback()
        message = exc.message if isinstance(exc, AppError) else f"{type(exc).__name__}: {exc}"
        failed = db.session.get(Backup, row.id)
        if failed is not None and failed.status != "ok":
            failed.status, failed.error, failed.finished_at = "failed", message[:2000], utcnow()
            db.session.commit()
        _alert_failure(name, message)
        if isinstance(exc, BackupError):
            raise
        raise BackupError(f"Backup {name} failed: {message}") from exc
    finally:
        steps.finish()


def upgrade_schema() -> str:
    """Bring the database schema to this release's revision; a database that holds data is
    backed up (and the backup verified) first. What was done, for the terminal."""
    from flask_migrate import upgrade as alembic_upgrade

    from app.backups.transfer import _head_revision

    head = _head_revision()
    with db.engine.connect() as conn:
        current = _revision(conn)
        names = set(digest.table_names(conn))
        holds_data = any(conn.execute(text(f'SELECT 1 FROM "{t}" LIMIT 1')).first()  # noqa: S608
                         for t in ("strategies", "signals", "notifications", "users")
                         if t in names)
    if current == head:
        return f"The database schema is up to date (revision {head})."
    note = ""
    if current is not None and holds_data:
        # The Backup model is of the new schema: record the backup once the upgrade is done.
        name = _name("upgrade")
        steps = Progress("backup", name, 6)
        try:
            manifest = _write_archive(name, "upgrade", steps)
            steps.step("verify")
            problems, _ = _verify_archive(name)
        except AppError as exc:
            _alert_failure(name, exc.message)
            raise BackupError(f"The schema was not upgraded: the backup before it failed "
                              f"({exc.message}).") from exc
        finally:
            steps.finish()
        if problems:
            raise BackupError("The schema was not upgraded: the backup before it failed "
                              "verification: " + "; ".join(problems))
        note = f"Backed up first to {backups_dir() / name} (verified). "
    alembic_upgrade()
    if note:
        path = backups_dir() / name
        db.session.add(Backup(filename=name, status="ok", trigger="upgrade",
                              size_bytes=path.stat().st_size, sha256=_sha256(path),
                              parts=sorted({m.split("/")[0] for m in manifest["files"]}),
                              manifest=_summary(manifest), finished_at=utcnow(),
                              verified_at=utcnow()))
        db.session.commit()
    return f"{note}Schema upgraded from {current or 'an empty database'} to {head}."


# ------------------------------------------------------------------------------ reading


@contextlib.contextmanager
def _opened(path: Path) -> Iterator[tuple[tarfile.TarFile, dict]]:
    """The archive and its manifest; BackupError naming what is wrong with it."""
    try:
        archive = tarfile.open(path, "r")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise BackupError(f"{path.name}: not a readable backup archive ({exc}).") from exc
    try:
        try:
            archive.getmembers()  # reads the whole index: a cut-off archive fails here
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise BackupError(f"{path.name}: the archive is truncated or damaged ({exc}).") \
                from exc
        try:
            member = archive.extractfile("manifest.json")
            manifest = json.loads(member.read()) if member else None
        except (KeyError, tarfile.TarError, EOFError, OSError, ValueError) as exc:
            raise BackupError(f"{path.name}: manifest.json is missing or unreadable.") from exc
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise BackupError(f"{path.name}: manifest.json is not a BTC Watcher backup manifest.")
        yield archive, manifest
    finally:
        archive.close()


def _extract_checked(archive: tarfile.TarFile, manifest: dict, target: Path,
                     name: str) -> list[str]:
    """Extract every member the manifest lists into `target`, checking size and sha256;
    the problems found (each naming the member)."""
    problems = []
    members = {m.name: m for m in archive.getmembers()}
    for member_name, expected in sorted(manifest.get("files", {}).items()):
        member = members.get(member_name)
        if member is None or not member.isfile():
            problems.append(f"{member_name}: missing from the archive")
            continue
        out = target / member_name
        if not out.resolve().is_relative_to(target.resolve()):
            problems.append(f"{member_name}: a path outside the backup")
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        sha = hashlib.sha256()
        try:
            source = archive.extractfile(member)
            with open(out, "wb") as handle:
                while chunk := source.read(CHUNK):
                    sha.update(chunk)
                    handle.write(chunk)
        except (tarfile.TarError, OSError, EOFError) as exc:
            problems.append(f"{member_name}: unreadable ({exc}); the archive is truncated?")
            continue
        if out.stat().st_size != expected["size"] or sha.hexdigest() != expected["sha256"]:
            problems.append(f"{member_name}: its checksum does not match the manifest")
    return problems


def _scratch_pg_database(url: str) -> tuple[str, Callable[[], None]]:
    """A fresh database on the same PostgreSQL server; (its URL, a dropper)."""
    name = f"btcw_scratch_{os.getpid()}_{int(time.time() * 1000) % 10**9}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    scratch = make_url(url).set(database=name).render_as_string(hide_password=False)

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return scratch, drop


def _pg_restore(dump: Path, url: str, clean: bool) -> None:
    args = [_tool("pg_restore"), "--no-owner", "--no-privileges", "--exit-on-error"]
    if clean:
        args += ["--clean", "--if-exists", "--single-transaction"]
    result = subprocess.run(  # noqa: S603
        [*args, *_pg_args(_pg_url(url)), str(dump)], env=_pg_env(url), capture_output=True,
        text=True, timeout=3600, check=False)
    if result.returncode != 0:
        raise BackupError(f"pg_restore failed: {result.stderr.strip()[-500:]}")


def _digests_of_dump(manifest: dict, work: Path, live_url: str) -> dict:
    """Table digests of the database in an extracted backup (a scratch restore for a dump)."""
    dump = work / manifest["database"]
    if manifest["engine"] == "sqlite":
        engine = create_engine(f"sqlite:///{dump}")
        try:
            with engine.connect() as conn:
                return digest.native_digests(conn)
        finally:
            engine.dispose()
    if _engine_name(live_url) != "postgresql":
        raise BackupError("This backup was made on PostgreSQL: verifying it needs a "
                          "PostgreSQL server (run it where DATABASE_URL is PostgreSQL).")
    scratch, drop = _scratch_pg_database(live_url)
    try:
        _pg_restore(dump, scratch, clean=False)
        engine = create_engine(scratch)
        try:
            with engine.connect() as conn:
                return digest.native_digests(conn)
        finally:
            engine.dispose()
    finally:
        drop()


def _check_trade_databases(work: Path) -> list[str]:
    problems = []
    for path in sorted((work / "files" / "bots").glob("*/*.sqlite")):
        try:
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                result = conn.execute("PRAGMA integrity_check").fetchone()[0]
            finally:
                conn.close()
        except sqlite3.DatabaseError as exc:
            result = str(exc)
        if result != "ok":
            problems.append(f"{path.relative_to(work)}: {result}")
    return problems


def _verify_archive(name: str) -> tuple[list[str], dict]:
    """(problems, manifest) of restoring a backup into a scratch place."""
    path = path_of(name)
    url = current_app.config["SQLALCHEMY_DATABASE_URI"]
    steps = Progress("verify", name, 3)
    manifest: dict = {}
    try:
        with _opened(path) as (archive, manifest), \
                tempfile.TemporaryDirectory(prefix=".btcw-verify-", dir=backups_dir()) as tmp:
            work = Path(tmp)
            steps.step("files and checksums")
            problems = _extract_checked(archive, manifest, work, name)
            if not problems:
                steps.step("database")
                problems += digest.compare(manifest["tables"],
                                           _digests_of_dump(manifest, work, url))
                steps.step("bots' trade databases")
                problems += _check_trade_databases(work)
    except BackupError as exc:
        problems = [exc.message]
    finally:
        steps.finish()
    return problems, manifest


def verify(name: str) -> dict:
    """Restore a backup into a scratch place and compare it with its manifest; the report.
    Raises BackupError naming every part that differs (and records it on the backup)."""
    problems, manifest = _verify_archive(name)
    row = db.session.scalar(select(Backup).where(Backup.filename == name))
    if row is not None:
        row.verified_at = utcnow() if not problems else None
        row.verify_error = "; ".join(problems)[:4000]
        db.session.commit()
    if problems:
        raise BackupError(f"Backup {name} failed verification: " + "; ".join(problems[:10]),
                          problems=problems)
    return {"name": name, "ok": True, "tables": len(manifest["tables"]),
            "rows": sum(t["rows"] for t in manifest["tables"].values()),
            "files": len(manifest["files"])}


# ------------------------------------------------------------------------------ restore


def _running_ids() -> list[int]:
    return list(db.session.scalars(select(Strategy.id).where(
        Strategy.deleted_at.is_(None), Strategy.desired_state == "running")))


def _stop_bots(ids: list[int], timeout: float = 120) -> None:
    for strategy_id in ids:
        with contextlib.suppress(AppError, LookupError, ValueError):
            control.request_stop(strategy_id)
    for strategy_id in ids:
        with contextlib.suppress(TimeoutError, AppError, LookupError):
            control.wait_for_status(strategy_id, ("stopped", "error", "crashed"), timeout)


def _restore_sqlite_file(source: Path, target_url: str) -> None:
    """Replace the live SQLite database with `source`, in one transaction (other processes'
    open connections see the new contents, never a half-written file)."""
    copy_database(source, _sqlite_file(target_url))


def _swap_tree(source: Path, live: Path) -> None:
    """Put `source` in place of `live` by renames (the old one removed after)."""
    live.parent.mkdir(parents=True, exist_ok=True)
    staged = live.with_name(f".{live.name}.restore-{os.getpid()}")
    shutil.rmtree(staged, ignore_errors=True)
    if source.is_dir():
        shutil.copytree(source, staged, symlinks=False)
    else:
        staged.mkdir()
    old = live.with_name(f".{live.name}.old-{os.getpid()}")
    if live.exists():
        os.replace(live, old)
    os.replace(staged, live)
    shutil.rmtree(old, ignore_errors=True)


def restore(name: str, into: str | None = None) -> dict:
    """Restore a backup over the live system (or into another database with `into`).

    Verified first; nothing changes when that fails. The bots are stopped while the database
    and files are replaced and the ones that were running are started again."""
    path = path_of(name)
    live_url = current_app.config["SQLALCHEMY_DATABASE_URI"]
    if into is not None and urlsplit(into).scheme.split("+")[0] not in ("sqlite", "postgresql"):
        raise BackupError("--into takes a sqlite:/// or postgresql:// database URL.",
                          status=400, field="into")
    steps = Progress("restore", name, 5)
    try:
        with _opened(path) as (archive, manifest), \
                tempfile.TemporaryDirectory(prefix=".btcw-restore-", dir=backups_dir()) as tmp:
            work = Path(tmp)
            steps.step("checking the backup")
            problems = _extract_checked(archive, manifest, work, name)
            problems += _check_trade_databases(work) if not problems else []
            if problems:
                raise BackupError(f"Backup {name} cannot be restored: " + "; ".join(problems),
                                  problems=problems)
            dump = work / manifest["database"]
            if into is not None:
                steps.step(f"copying every table into {make_url(into).render_as_string()}")
                from app.backups.transfer import copy_backup_into

                source, copied = copy_backup_into(manifest, dump, into)
                problems = digest.compare(source, copied)
                if problems:
                    raise BackupError("The copy differs from the backup: " + "; ".join(problems))
                return {"name": name, "into": make_url(into).render_as_string(),
                        "tables": len(copied), "rows": sum(t["rows"] for t in copied.values())}
            if manifest["engine"] != _engine_name(live_url):
                raise BackupError(f"This backup is of a {manifest['engine']} database and "
                                  f"DATABASE_URL is {_engine_name(live_url)}: restore it with "
                                  f"--into {live_url.split(':')[0]}://… instead.")
            running = _running_ids()
            steps.step(f"stopping {len(running)} bots")
            _stop_bots(running)
            steps.step("database")
            catalog = _catalog()
            db.session.remove()
            if manifest["engine"] == "sqlite":
                _restore_sqlite_file(dump, live_url)
            else:
                _pg_restore(dump, live_url, clean=True)
            db.engine.dispose()
            _put_catalog(catalog)
            steps.step("files")
            _swap_tree(work / "files" / "strategies", paths.strategies_dir())
            _swap_tree(work / "files" / "bots", paths.bots_dir())
        live = _live_digests()
        problems = digest.compare(manifest["tables"], live)
        restarted = _restart(running)
        if problems:
            raise BackupError("After the restore the database differs from the backup: "
                              + "; ".join(problems))
        return {"name": name, "tables": len(live),
                "rows": sum(t["rows"] for t in live.values()), "restarted": restarted}
    finally:
        steps.finish()


def _catalog() -> list[dict]:
    """The live list of backups (a restore keeps it: it describes the folder, not the data)."""
    table = Backup.__table__
    return [dict(r._mapping) for r in db.session.execute(select(table))]


def _put_catalog(rows: list[dict]) -> None:
    table = Backup.__table__
    db.session.execute(table.delete())
    if rows:
        db.session.execute(table.insert(), rows)
    db.session.commit()


def _live_digests() -> dict:
    with db.engine.connect() as conn:
        return digest.native_digests(conn)


def _restart(ids: list[int]) -> list[int]:
    """Start again the bots that were running before the restore (those that still exist)."""
    started = []
    for strategy_id in ids:
        strategy = db.session.get(Strategy, strategy_id)
        if strategy is None or strategy.deleted_at is not None:
            continue
        strategy.status, strategy.pid, strategy.port = "stopped", None, None
        db.session.commit()
        try:
            control.request_start(strategy_id)
            started.append(strategy_id)
        except (AppError, LookupError, ValueError) as exc:
            log.warning("restore: strategy %s not started again: %s", strategy_id, exc)
    return started


# ------------------------------------------------------------------------------ list, prune


def list_backups() -> list[Backup]:
    """Every recorded backup, newest first."""
    return list(db.session.scalars(select(Backup).order_by(Backup.id.desc())))


def backup_json(row: Backup) -> dict:
    return {"id": row.id, "name": row.filename, "status": row.status, "trigger": row.trigger,
            "size_bytes": row.size_bytes, "sha256": row.sha256, "parts": row.parts,
            "error": row.error, "created_at": _iso(row.created_at),
            "finished_at": _iso(row.finished_at), "verified_at": _iso(row.verified_at),
            "verify_error": row.verify_error, "rows": (row.manifest or {}).get("rows", {}),
            "schema_revision": (row.manifest or {}).get("schema_revision")}


def _iso(value) -> str | None:
    return value.isoformat() + "Z" if value else None


def prune(now=None) -> list[str]:
    """Delete backups past retention_days, keeping the newest keep_last verified ones."""
    settings = current_settings().system.backups
    now = now or utcnow()
    rows = [r for r in list_backups() if r.status == "ok"]  # newest first
    keep = {r.id for r in rows[: settings.keep_last]}
    removed = []
    for row in rows:
        if row.id in keep or row.created_at > now - timedelta(days=settings.retention_days):
            continue
        (backups_dir() / row.filename).unlink(missing_ok=True)
        db.session.delete(row)
        removed.append(row.filename)
    db.session.commit()
    return removed


def delete(name: str) -> None:
    """Remove one backup file and its record."""
    path = path_of(name)
    row = db.session.scalar(select(Backup).where(Backup.filename == name))
    if row is not None and row.status == "running":
        raise Conflict(f"Backup {name} is still being written.")
    path.unlink()
    if row is not None:
        db.session.delete(row)
        db.session.commit()



# ------------------------------------------------------------------------------ in the background

OPERATIONS = {"backup": "app.tasks.backups.manual_backup",
              "verify": "app.tasks.backups.verify_backup",
              "restore": "app.tasks.backups.restore_backup"}


def enqueue(operation: str, name: str | None = None) -> str:
    """Hand a backup, verify or restore to the backup worker; the RQ job id. One at a time."""
    if name is not None:
        path_of(name)  # 400 / 404 before anything is queued
    running = progress()
    if running is not None:
        raise Conflict(f"A {running['operation']} of {running['name']} is running "
                       f"({running['step']}); wait for it to finish.")
    args = (name,) if name is not None else ()
    try:
        job = redis_store.queue("backups").enqueue(OPERATIONS[operation], *args,
                                                   job_timeout=4 * 3600, result_ttl=86400,
                                                   failure_ttl=7 * 86400)
    except RedisError as exc:
        raise BackupError(f"Cannot queue the {operation}: Redis does not answer ({exc}).",
                          status=503) from exc
    return job.id
