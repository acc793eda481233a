"""A backup taken while real bots trade and signals keep arriving is consistent: it verifies,
and holds each running bot's own trade database (WAL mode, written by FreqTrade meanwhile)."""

from __future__ import annotations

import json
import sqlite3
import tarfile
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from app.backups import service
from app.extensions import db
from app.strategies.models import Strategy

pytestmark = pytest.mark.bots


def _post_signals(url: str, stop: threading.Event, sent: list[int]) -> None:
    session, n = requests.Session(), 0
    base = datetime(2031, 1, 1, tzinfo=UTC)
    while not stop.is_set():
        message = {"btcw": 1, "kind": "signal", "strategy": "Live", "pair": "BTC/USDT",
                   "action": "enter_long", "signal_strength": 0.9, "rate": 64000.0,
                   "candle": (base + timedelta(minutes=n)).isoformat(), "timeframe": "1m",
                   "enter_tag": "live-backup"}
        try:
            answer = session.post(url, json={"type": "strategy_msg", "msg": json.dumps(message)},
                                  timeout=5)
            if answer.status_code == 200:
                sent.append(n)
                n += 1
        except requests.RequestException:
            pass
        time.sleep(0.02)


def test_a_backup_under_load_verifies_and_holds_the_bots_trade_databases(bots_ctx, bots_world,
                                                                          bots_web, demo_bots):
    bot = db.session.get(Strategy, demo_bots[0].id)
    url = (f"{bots_world.public_url}/api/v1/signals/webhook/{bot.id}"
           f"?token={bot.webhook_token}")
    stop, sent = threading.Event(), []
    poster = threading.Thread(target=_post_signals, args=(url, stop, sent), daemon=True)
    poster.start()
    try:
        deadline = time.monotonic() + 30
        while len(sent) < 20 and time.monotonic() < deadline:
            time.sleep(0.1)
        row = service.run_backup("manual")  # verified right after it is written
        during = len(sent)
    finally:
        stop.set()
        poster.join(10)
    assert row.status == "ok" and row.verified_at is not None, row.verify_error
    assert during > 20, "signals kept arriving while the backup ran"
    path = service.backups_dir() / row.filename
    with tarfile.open(path) as archive, tempfile.TemporaryDirectory() as tmp:
        for demo in demo_bots:
            member = f"files/bots/{demo.id}/tradesv3.dryrun.sqlite"
            archive.extract(member, tmp, filter="data")
            conn = sqlite3.connect(Path(tmp) / member)
            try:
                assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
                tables = {r[0] for r in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type='table'")}
                assert "trades" in tables, tables
            finally:
                conn.close()
        manifest = json.loads(archive.extractfile("manifest.json").read())
    assert set(manifest["bots"]) >= {d.id for d in demo_bots}
    assert manifest["tables"]["signals"]["rows"] >= 20
