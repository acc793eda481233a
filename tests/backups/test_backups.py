"""Backups: a round trip that brings back exactly what was backed up (database, files, bots'
trade databases), corrupted backups refused naming the part, names that cannot escape the
folder, SQLite → PostgreSQL with every row, free-disk refusal with an alert, retention and the
daily schedule."""

from __future__ import annotations

import io
import sqlite3
import tarfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import create_engine, func, select

from app.auth import service as auth
from app.backups import digest, schedule, service
from app.backups.models import Backup
from app.clock import utcnow
from app.extensions import db
from app.monitoring.models import Alert, MetricSample
from app.notifications.models import DeliveryAttempt, Notification, NotificationDelivery
from app.runtime import paths
from app.signals.models import Signal
from app.strategies.models import Strategy
from app.system.settings import current_settings

pytestmark = pytest.mark.both_databases


def _trade_db(path: Path, trades: int) -> None:
    """A FreqTrade-like trade database in WAL mode, with writes still in the WAL."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute("CREATE TABLE IF NOT EXISTS trades (id INTEGER PRIMARY KEY, pair TEXT, "
                 "amount REAL)")
    conn.executemany("INSERT INTO trades (pair, amount) VALUES (?, ?)",
                     [("BTC/USDT", 0.01 * i) for i in range(trades)])
    conn.commit()
    conn.close()


def _trades(path: Path) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT * FROM trades ORDER BY id").fetchall()
    finally:
        conn.close()


@pytest.fixture
def filled(app, system_settings, tmp_path):
    """Rows in every kind of table, a bot folder with config and trade database, a strategy
    library of its own (never the project's)."""
    system_settings("freqtrade", strategies_directory=str(tmp_path / "library"))
    user = auth.create_user("backup-owner", "correct-horse!1")
    auth.create_token(user, "cli")
    strategy = Strategy(name="KeepMe", strategy_class="MA_Cross_BTC", strategy_file="ma.py",
                        api_username="u", api_password="p", jwt_secret="j", ws_token="w",
                        webhook_token="t", pairs=["BTC/USDT"])
    db.session.add(strategy)
    db.session.flush()
    for n in range(50):
        db.session.add(Signal(strategy_id=strategy.id, dedupe_key=f"b-{n}", message_type="entry",
                              pair="BTC/USDT", action="entry", direction="long",
                              rate=65000.5 + n, strength_raw=0.9, strength_level="strong",
                              priority="P0", payload={"n": n, "nested": {"ü": [1, 2.5]}},
                              indicators={"rsi": 30.25}))
    db.session.flush()
    first = db.session.scalars(select(Signal).order_by(Signal.id)).first()
    note = Notification(kind="signal", priority="P0", signal_id=first.id, title="t", body="b",
                        data={"k": 1})
    db.session.add(note)
    db.session.flush()
    delivery = NotificationDelivery(notification_id=note.id, channel="inbox",
                                    channel_type="inbox", status="sent",
                                    idempotency_key=f"{note.id}:inbox")
    db.session.add(delivery)
    db.session.flush()
    db.session.add(DeliveryAttempt(delivery_id=delivery.id, number=1, outcome="ok"))
    db.session.add(Alert(kind="capacity", message="80 %", severity="warning"))
    db.session.add(MetricSample(kind="system", data={"cpu_percent": 12.5}))
    db.session.commit()
    bot = paths.bot_dir(strategy.id)
    bot.mkdir(parents=True, exist_ok=True)
    (bot / "config.json").write_text('{"dry_run": true}')
    _trade_db(bot / "tradesv3.sqlite", 20)
    library = paths.strategies_dir()
    library.mkdir(parents=True, exist_ok=True)
    (library / "Keep_Me.py").write_text("# a strategy\n")
    return strategy


def _live() -> dict:
    db.session.commit()
    with db.engine.connect() as conn:
        return digest.digest_database(conn)


def test_a_restore_brings_back_exactly_what_was_backed_up(app, filled):
    bot = paths.bot_dir(filled.id)
    before_trades = _trades(bot / "tradesv3.sqlite")
    before = _live()
    row = service.run_backup("manual")
    assert row.status == "ok" and row.verified_at is not None and not row.verify_error
    path = service.backups_dir() / row.filename
    assert path.stat().st_mode & 0o777 == 0o600
    with tarfile.open(path) as archive:
        names = set(archive.getnames())
    assert {"manifest.json", f"files/bots/{filled.id}/config.json",
            f"files/bots/{filled.id}/tradesv3.sqlite", "files/strategies/Keep_Me.py"} <= names
    assert any(n.startswith("database/btcw.") for n in names)
    assert not any(n.endswith("-wal") for n in names)

    # Change and delete rows and files.
    db.session.execute(db.delete(Signal).where(Signal.id > filled.id + 10))
    db.session.add(Alert(kind="extra", message="made after the backup"))
    db.session.commit()
    (bot / "config.json").write_text("changed")
    _trade_db(bot / "tradesv3.sqlite", 5)
    (paths.strategies_dir() / "Keep_Me.py").unlink()
    (paths.strategies_dir() / "New_One.py").write_text("# new\n")
    assert _live() != before

    report = service.restore(row.filename)
    db.session.remove()
    assert _live() == before
    assert report["rows"] == sum(t["rows"] for t in before.values())
    assert (bot / "config.json").read_text() == '{"dry_run": true}'
    assert _trades(bot / "tradesv3.sqlite") == before_trades
    assert (paths.strategies_dir() / "Keep_Me.py").exists()
    assert not (paths.strategies_dir() / "New_One.py").exists()


def _rewrite(path: Path, change) -> None:
    """Rewrite a backup archive, passing each (info, data) through `change` (None drops it)."""
    with tarfile.open(path) as archive:
        members = [(m, archive.extractfile(m).read()) for m in archive.getmembers()]
    with tarfile.open(path, "w") as archive:
        for info, data in members:
            changed = change(info, data)
            if changed is None:
                continue
            info.size = len(changed)
            archive.addfile(info, io.BytesIO(changed))


@pytest.mark.parametrize("damage", ["flipped byte", "missing file", "truncated"])
def test_a_corrupted_backup_fails_verify_and_restore_naming_the_part(app, filled, damage):
    row = service.run_backup("manual")
    path = service.backups_dir() / row.filename
    config = f"files/bots/{filled.id}/config.json"
    if damage == "flipped byte":
        _rewrite(path, lambda info, data: bytes([data[0] ^ 1]) + data[1:]
                 if info.name == config else data)
        expect = config
    elif damage == "missing file":
        _rewrite(path, lambda info, data: None if info.name == config else data)
        expect = f"{config}: missing"
    else:
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        expect = "truncated"
    before = _live()
    with pytest.raises(service.BackupError) as failed:
        service.verify(row.filename)
    assert expect in failed.value.message
    db.session.refresh(row)
    assert row.verified_at is None and expect in row.verify_error
    (paths.bot_dir(filled.id) / "config.json").write_text("current")
    with pytest.raises(service.BackupError) as refused:
        service.restore(row.filename)
    assert expect in refused.value.message
    assert _live() == before, "a refused restore changed nothing"
    assert (paths.bot_dir(filled.id) / "config.json").read_text() == "current"


@pytest.mark.parametrize("name", ["../btcw.db", "btcw-20260101-000000.tar/../../x",
                                  "/etc/passwd", "secret_key", "btcw-2026.tar", ""])
def test_backup_names_cannot_escape_the_folder(app, client, api_token, name):
    with pytest.raises(service.BackupError) as bad:
        service.path_of(name)
    assert bad.value.status == 400
    headers = {"Authorization": f"Bearer {api_token}"}
    for url in (f"/api/v1/backups/{name}/verify", f"/api/v1/backups/{name}/restore"):
        response = client.post(url, headers=headers)
        assert response.status_code in (400, 404, 405), (url, response.status_code)
    response = client.post("/api/v1/backups/..%2Fbtcw.db/verify", headers=headers)
    assert response.status_code in (400, 404)
    unknown = client.post("/api/v1/backups/btcw-20200101-000000.tar/verify", headers=headers)
    assert unknown.status_code == 404 and "btcw-20200101-000000.tar" in unknown.get_json()[
        "message"]


def test_not_enough_disk_refuses_with_an_alert_and_leaves_no_file(app, filled, system_settings):
    system_settings("backups", min_free_mb=10**9)
    with pytest.raises(service.BackupError, match="Not enough free disk"):
        service.run_backup("manual")
    assert not list(service.backups_dir().glob("*.tar*"))
    row = db.session.scalars(select(Backup).order_by(Backup.id.desc())).first()
    assert row.status == "failed" and "min_free_mb" in row.error
    alert = db.session.scalars(select(Alert).where(Alert.kind == "backup_failed")).first()
    assert alert is not None and "Not enough free disk" in alert.message


def test_retention_keeps_the_newest_and_prunes_the_old(app, filled, system_settings):
    system_settings("backups", keep_last=1, retention_days=30)
    old = service.run_backup("manual", prune_after=False)
    old.created_at = datetime(2020, 1, 1)
    db.session.commit()
    new = service.run_backup("manual")
    names = {r.filename for r in service.list_backups()}
    assert new.filename in names and old.filename not in names
    assert not (service.backups_dir() / old.filename).exists()


def test_the_daily_backup_runs_once_after_its_time(app, filled, system_settings):
    zone = ZoneInfo(current_settings().notifications.timezone)
    now = utcnow()
    local = now.replace(tzinfo=UTC).astimezone(zone)
    if local.hour == 0 and local.minute < 2:
        local -= timedelta(minutes=2)  # keep the test inside one local day
    earlier, later = local - timedelta(minutes=1), local + timedelta(minutes=2)
    system_settings("backups", daily_at=later.strftime("%H:%M"))
    assert schedule.due_since(now) is None and schedule.run_if_due(now) == "not due"
    system_settings("backups", daily_at=earlier.strftime("%H:%M"))
    assert schedule.run_if_due(now).endswith(": verified")
    assert schedule.run_if_due(now) == "done today"
    system_settings("backups", enabled=False)
    assert schedule.run_if_due(now) == "not due"


def test_api_lists_backups_and_queues_work(app, client, api_token, filled):
    headers = {"Authorization": f"Bearer {api_token}"}
    row = service.run_backup("manual")
    listing = client.get("/api/v1/backups", headers=headers).get_json()
    assert listing["backups"][0]["name"] == row.filename
    assert listing["backups"][0]["verified_at"] and listing["backups"][0]["rows"]["signals"] == 50
    queued = client.post(f"/api/v1/backups/{row.filename}/verify", headers=headers)
    assert queued.status_code == 202 and queued.get_json()["job_id"]
    page = client.get("/backups/", headers=headers)
    assert page.status_code == 200 and row.filename.encode() in page.data
    download = client.get(f"/backups/{row.filename}/download", headers=headers)
    assert download.status_code == 200
    with tarfile.open(fileobj=io.BytesIO(download.data)) as archive:
        assert "manifest.json" in archive.getnames()


@pytest.mark.usefixtures("filled")
def test_a_sqlite_backup_restored_into_postgresql_keeps_every_row(app, postgres_server):
    if not app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        pytest.skip("the SQLite pass covers SQLite → PostgreSQL")
    row = service.run_backup("manual")
    target = postgres_server.create_database(f"into_{row.id}_{id(row) % 10**6}")
    before = _live()
    report = service.restore(row.filename, into=target)
    assert report["rows"] == sum(t["rows"] for t in before.values())
    engine = create_engine(target)
    try:
        with engine.connect() as conn:
            assert digest.digest_database(conn) == before
        with engine.begin() as conn:
            top = conn.execute(select(func.max(Signal.id))).scalar()
            fresh = conn.execute(Signal.__table__.insert().values(
                strategy_id=1, dedupe_key="after-move", message_type="entry", pair="ETH/USDT",
                action="entry", direction="long", strength_level="weak", priority="P2",
                payload={}, indicators={}, received_at=datetime(2026, 12, 6))
                .returning(Signal.id)).scalar()
        assert fresh == top + 1
    finally:
        engine.dispose()
    with pytest.raises(service.BackupError, match="empty database"):
        service.restore(row.filename, into=target)
