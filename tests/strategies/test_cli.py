"""flask strategies …: the same service behind the pages and the API."""

from __future__ import annotations

import json

from app.extensions import db
from app.strategies.models import Strategy
from tests.strategies.conftest import STRATEGY_SOURCE


def test_list_json_and_table(runner, strategy):
    result = runner.invoke(args=["strategies", "list", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["count"] == 1
    row = data["strategies"][0]
    assert row["name"] == "rsi-eth-test" and row["process"] is None and row["bot"] is None
    result = runner.invoke(args=["strategies", "list"])
    assert "rsi-eth-test" in result.output and "stopped" in result.output


def test_create_reports_field_errors(runner, library_dir):
    result = runner.invoke(args=["strategies", "create", "../bad", "--class", "Nope",
                                 "--pairs", "BTC/USDT"])
    assert result.exit_code == 1
    assert "name: The name must not contain a path" in result.output
    assert "strategy_class: No strategy class Nope" in result.output
    assert db.session.scalar(db.select(db.func.count(Strategy.id))) == 0


def test_create_status_delete(runner, library_dir):
    result = runner.invoke(args=["strategies", "create", "cli-made", "--class", "MA_Cross_BTC",
                                 "--pairs", "BTC/USDT", "--strong", "0.9"])
    assert result.exit_code == 0, result.output
    row = db.session.scalar(db.select(Strategy).where(Strategy.name == "cli-made"))
    assert row.strategy_file == "MA_Cross_BTC.py" and row.strong_threshold == 0.9
    result = runner.invoke(args=["strategies", "status", "cli-made", "--json"])
    data = json.loads(result.output)
    assert data["basic_status"]["id"] == row.id
    assert data["detailed_data"]["bot"] == "not_running"
    result = runner.invoke(args=["strategies", "status", str(row.id)])
    assert "cli-made (id" in result.output and "not_running" in result.output
    result = runner.invoke(args=["strategies", "delete", "cli-made", "--yes"])
    assert result.exit_code == 0 and "signals are kept" in result.output
    result = runner.invoke(args=["strategies", "status", "cli-made"])
    assert result.exit_code == 1 and "No strategy named 'cli-made'" in result.output


def test_start_and_stop(runner, strategy):
    result = runner.invoke(args=["strategies", "start", strategy.name])
    assert result.exit_code == 0 and "Start of rsi-eth-test requested." in result.output
    result = runner.invoke(args=["strategies", "start", strategy.name])
    assert result.exit_code == 1 and "already starting" in result.output
    result = runner.invoke(args=["strategies", "stop", str(strategy.id)])
    assert result.exit_code == 0, result.output


def test_start_wait_prints_freqtrades_error(runner, strategy, monkeypatch):
    from app.runtime import control

    def fake_start(strategy_id):  # what the supervisor records for a class it cannot load
        row = db.session.get(Strategy, strategy_id)
        row.status = "error"
        row.status_message = "Impossible to load Strategy 'RSI_ETH'. This class does not exist"
        db.session.commit()
        return row

    monkeypatch.setattr(control, "request_start", fake_start)
    result = runner.invoke(args=["strategies", "start", strategy.name, "--wait",
                                 "--timeout", "5"])
    assert result.exit_code == 1
    assert "rsi-eth-test failed to start: Impossible to load Strategy" in result.output


def test_logs_limit(runner, strategy):
    result = runner.invoke(args=["strategies", "logs", strategy.name, "-n", "0"])
    assert result.exit_code == 1 and "limit must be from 1 to 1000" in result.output


def test_upload(runner, library_dir, tmp_path):
    source = tmp_path / "Cli_Strategy.py"
    source.write_text(STRATEGY_SOURCE)
    result = runner.invoke(args=["strategies", "upload", str(source)])
    assert result.exit_code == 0 and "Uploaded Cli_Strategy.py: My_Strategy." in result.output
    result = runner.invoke(args=["strategies", "upload", str(source)])
    assert result.exit_code == 1 and "already exists" in result.output
    result = runner.invoke(args=["strategies", "upload", str(source), "--name", "../x.py"])
    assert result.exit_code == 1 and "contains a path" in result.output
    result = runner.invoke(args=["strategies", "library", "--json"])
    assert {"file": "Cli_Strategy.py", "classes": ["My_Strategy"]}.items() <= next(
        f for f in json.loads(result.output) if f["file"] == "Cli_Strategy.py").items()
