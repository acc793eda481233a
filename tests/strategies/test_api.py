"""JSON API of strategies: shapes, validation corpus, 404s, commands, logs, library uploads."""

from __future__ import annotations

import dataclasses

import pytest

from app.extensions import db
from app.strategies.models import Strategy
from app.system.settings import current_settings
from tests.strategies.conftest import STRATEGY_SOURCE, valid_payload

BASE = "/api/v1/strategies"


def test_api_needs_login(client, library_dir):
    response = client.get(BASE)
    assert response.status_code == 401
    assert response.get_json()["message"].startswith("Login required")


def test_create_returns_the_record_without_secrets(client, api_headers, library_dir):
    response = client.post(BASE, json=valid_payload(), headers=api_headers)
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["status"] == "created"
    assert response.headers["Location"].endswith(f"{BASE}/{body['strategy_id']}")
    record = body["strategy"]
    assert record["name"] == "rsi-eth-test"
    assert record["strategy_class"] == "RSI_ETH" and record["strategy_file"] == "RSI_ETH.py"
    assert record["pairs"] == ["ETH/USDT"]
    assert record["thresholds"] == {"strong": 0.8, "medium": 0.6, "weak": 0.4}
    assert record["status"] == "stopped" and record["port"] is None
    text = response.get_data(as_text=True)
    row = db.session.get(Strategy, body["strategy_id"])
    for secret in (row.api_password, row.jwt_secret, row.ws_token, row.webhook_token):
        assert secret not in text
    assert len(row.jwt_secret) >= 32
    assert row.api_username and len(row.api_password) >= 24 and row.webhook_token


def test_each_strategy_gets_its_own_secrets(app, library_dir):
    from app.strategies import service

    a = service.create_strategy(valid_payload(name="a"))
    b = service.create_strategy(valid_payload(name="b"))
    for column in ("api_password", "jwt_secret", "ws_token", "webhook_token"):
        assert getattr(a, column) != getattr(b, column)


def test_the_file_is_found_from_the_class(client, api_headers, library_dir):
    body = valid_payload()
    del body["strategy_file"]
    response = client.post(BASE, json=body, headers=api_headers)
    assert response.status_code == 201
    assert response.get_json()["strategy"]["strategy_file"] == "RSI_ETH.py"


def test_missing_required_fields(client, api_headers, library_dir):
    response = client.post(BASE, json={}, headers=api_headers)
    assert response.status_code == 422
    body = response.get_json()
    assert set(body["errors"]) == {"name", "strategy_class", "pairs"}
    assert "name" in body["message"]


def test_body_must_be_a_json_object(client, api_headers, library_dir):
    for kwargs in ({"data": "name=x"}, {"json": ["x"]}, {"data": "{not json",
                                                          "content_type": "application/json"}):
        response = client.post(BASE, headers=api_headers, **kwargs)
        assert response.status_code == 400
        assert response.get_json()["message"].startswith("body:")


# (field, value, words that must appear in that field's message)
CORPUS = [
    ("name", "", "required"),
    ("name", "../x", "path"),
    ("name", "/etc/passwd", "path"),
    ("name", "a\x00b", "NUL"),
    ("name", "x" * 10_000, "10000 characters"),
    ("name", "x" * 65, "at most 64"),
    ("name", "stratégie", "letters"),
    ("name", "two words", "letters"),
    ("name", "-dash", "cannot start with -"),
    ("name", 12, "text"),
    ("strategy_class", "Nope", "does not define a strategy class Nope"),
    ("strategy_class", "os.system", "not a Python class name"),
    ("strategy_class", "BtcWatcherSignals", "does not define"),
    ("strategy_file", "../RSI_ETH.py", "contains a path"),
    ("strategy_file", "/etc/passwd", "contains a path"),
    ("strategy_file", "Missing.py", "not in the strategy library"),
    ("strategy_file", "btcw_signals.py", "does not define"),
    ("exchange", "mtgox", "Unknown exchange"),
    ("exchange", "", "required"),
    ("timeframe", "7m", "not a timeframe of simulator"),
    ("timeframe", "1s", "not a timeframe of simulator"),
    ("pairs", [], "at least one pair"),
    ("pairs", "", "at least one pair"),
    ("pairs", ["BTCUSDT"], "not a pair"),
    ("pairs", ["BTC/USDT", "btc/usdt"], "listed twice"),
    ("pairs", [f"C{i}/USDT" for i in range(51)], "at most 50"),
    ("pairs", ["ETH/BTC"], "not quoted in the stake currency USDT"),
    ("pairs", ["XRP/USDT"], "does not serve XRP/USDT"),
    ("pairs", {"a": 1}, "must be a list"),
    ("pairs", [1], "must be text"),
    ("stake_currency", "US DT", "2–16 letters"),
    ("stake_amount", "lots", "must be a number"),
    ("stake_amount", 0, "more than 0"),
    ("stake_amount", 5000, "more than the dry-run wallet"),
    ("dry_run_wallet", -1, "between 0"),
    ("dry_run_wallet", 0, "more than 0"),
    ("dry_run_wallet", "nan", "finite"),
    ("dry_run_wallet", True, "must be a number"),
    ("max_open_trades", 1.5, "whole number"),
    ("max_open_trades", -2, "between -1 and 1000"),
    ("max_open_trades", 1001, "between -1 and 1000"),
    ("strong_threshold", "high", "must be a number"),
    ("strong_threshold", -0.1, "between 0 and 100"),
    ("weak_threshold", 0.9, "not be above the medium"),
    ("medium_threshold", 0.95, "not be above the strong"),
    ("proxy_id", 999, "No proxy with id 999"),
    ("proxy_id", "x", "must be a number"),
    ("version_label", "v 1", "letters, digits"),
    ("description", "x" * 2001, "at most 2000"),
    ("port", 8081, "Set by BTC Watcher"),
    ("api_password", "x", "Set by BTC Watcher"),
    ("timefame", "1m", "Unknown field"),
]


@pytest.mark.parametrize("field, value, words", CORPUS,
                         ids=[f"{f}-{i}" for i, (f, _, _) in enumerate(CORPUS)])
def test_validation_corpus(client, api_headers, library_dir, field, value, words):
    response = client.post(BASE, json=valid_payload(**{field: value}), headers=api_headers)
    assert response.status_code == 422, response.get_json()
    errors = response.get_json()["errors"]
    assert field in errors, errors
    assert words in errors[field]
    assert db.session.scalar(db.select(db.func.count(Strategy.id))) == 0


def test_valid_variants_pass(client, api_headers, library_dir):
    for i, overrides in enumerate([
        {"pairs": "BTC/USDT, eth/usdt"},
        {"stake_amount": "25.5", "max_open_trades": -1},
        {"exchange": "binance", "timeframe": "4h", "pairs": ["XRP/USDT"]},
        {"strong_threshold": 90, "medium_threshold": 70, "weak_threshold": 50},
        {"strong_threshold": 0.5, "medium_threshold": 0.5, "weak_threshold": 0.5},
    ]):
        response = client.post(BASE, json=valid_payload(name=f"ok-{i}", **overrides),
                               headers=api_headers)
        assert response.status_code == 201, (overrides, response.get_json())
    assert client.get(f"{BASE}", headers=api_headers).get_json()["strategies"][0]["pairs"] == [
        "BTC/USDT", "ETH/USDT"]


def test_names_are_unique_but_a_deleted_strategy_frees_its_name(client, api_headers, library_dir):
    first = client.post(BASE, json=valid_payload(name="Alpha"), headers=api_headers).get_json()
    again = client.post(BASE, json=valid_payload(name="alpha"), headers=api_headers)
    assert again.status_code == 422
    assert again.get_json()["errors"]["name"] == "A strategy named alpha already exists."
    assert client.delete(f"{BASE}/{first['strategy_id']}", headers=api_headers).status_code == 200
    reused = client.post(BASE, json=valid_payload(name="Alpha"), headers=api_headers)
    assert reused.status_code == 201
    assert reused.get_json()["strategy_id"] != first["strategy_id"]


def test_proxy_can_be_assigned(client, api_headers, library_dir):
    from app.proxies.models import Proxy

    proxy = Proxy(name="p1", url="socks5://127.0.0.1:1080")
    db.session.add(proxy)
    db.session.commit()
    response = client.post(BASE, json=valid_payload(proxy_id=proxy.id), headers=api_headers)
    assert response.status_code == 201
    assert response.get_json()["strategy"]["proxy_id"] == proxy.id


def test_list_show_and_filter(client, api_headers, strategy):
    listed = client.get(BASE, headers=api_headers).get_json()
    assert listed["count"] == 1 and listed["strategies"][0]["id"] == strategy.id
    assert client.get(f"{BASE}?status=running", headers=api_headers).get_json()["count"] == 0
    bad = client.get(f"{BASE}?status=flying", headers=api_headers)
    assert bad.status_code == 400 and "flying" in bad.get_json()["message"]
    shown = client.get(f"{BASE}/{strategy.id}", headers=api_headers).get_json()
    assert shown["name"] == strategy.name and "api_password" not in shown


@pytest.mark.parametrize("method, suffix", [
    ("get", ""), ("patch", ""), ("delete", ""), ("post", "/start"), ("post", "/stop"),
    ("get", "/status/detailed"), ("post", "/commands/start"), ("get", "/logs"),
])
def test_unknown_and_deleted_ids_are_404_naming_the_id(client, api_headers, strategy, method,
                                                       suffix):
    kwargs = {"json": {"description": "x"}} if method == "patch" else {}
    response = getattr(client, method)(f"{BASE}/4242{suffix}", headers=api_headers, **kwargs)
    assert response.status_code == 404
    assert response.get_json()["message"] == "No strategy with id 4242."
    client.delete(f"{BASE}/{strategy.id}", headers=api_headers)
    response = getattr(client, method)(f"{BASE}/{strategy.id}{suffix}", headers=api_headers,
                                       **kwargs)
    assert response.status_code == 404
    assert str(strategy.id) in response.get_json()["message"]


def test_patch_thresholds_only(client, api_headers, strategy):
    response = client.patch(f"{BASE}/{strategy.id}", headers=api_headers,
                            json={"thresholds": {"strong": 0.9, "medium": 0.7, "weak": 0.3}})
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["strategy"]["thresholds"] == {"strong": 0.9, "medium": 0.7, "weak": 0.3}
    assert body["restart_required"] is False
    # The order is checked against the stored values of the fields not sent.
    response = client.patch(f"{BASE}/{strategy.id}", headers=api_headers,
                            json={"weak_threshold": 0.75})
    assert response.status_code == 422
    assert "not be above the medium one (0.7)" in response.get_json()["errors"]["weak_threshold"]
    db.session.refresh(strategy)
    assert strategy.weak_threshold == 0.3


def test_patch_other_fields_and_refuse_read_only_ones(client, api_headers, strategy):
    response = client.patch(f"{BASE}/{strategy.id}", headers=api_headers,
                            json={"pairs": ["BTC/USDT", "SOL/USDT"], "timeframe": "5m"})
    assert response.status_code == 200
    assert response.get_json()["strategy"]["pairs"] == ["BTC/USDT", "SOL/USDT"]
    response = client.patch(f"{BASE}/{strategy.id}", headers=api_headers,
                            json={"status": "running", "name": "../evil"})
    assert response.status_code == 422
    assert set(response.get_json()["errors"]) == {"status", "name"}
    response = client.patch(f"{BASE}/{strategy.id}", headers=api_headers, data="x")
    assert response.status_code == 400


def test_patch_of_a_running_bot_config_field_says_restart(app, client, api_headers, strategy):
    strategy.status, strategy.desired_state = "running", "running"
    db.session.commit()
    body = client.patch(f"{BASE}/{strategy.id}", headers=api_headers,
                        json={"max_open_trades": 1}).get_json()
    assert body["restart_required"] is True
    body = client.patch(f"{BASE}/{strategy.id}", headers=api_headers,
                        json={"strong_threshold": 0.85}).get_json()
    assert body["restart_required"] is False


def test_delete_is_soft_and_keeps_the_row(client, api_headers, strategy):
    response = client.delete(f"{BASE}/{strategy.id}", headers=api_headers)
    assert response.status_code == 200
    assert response.get_json() == {
        "status": "deleted", "strategy_id": strategy.id,
        "message": f"Strategy {strategy.name} deleted; its signals are kept."}
    db.session.expire_all()
    row = db.session.get(Strategy, strategy.id)
    assert row is not None and row.deleted_at is not None
    assert client.get(BASE, headers=api_headers).get_json()["count"] == 0


def test_unknown_command_lists_the_valid_ones(client, api_headers, strategy):
    response = client.post(f"{BASE}/{strategy.id}/commands/explode", headers=api_headers)
    assert response.status_code == 400
    assert response.get_json()["message"] == (
        "Unknown command 'explode'; valid commands: start, stop, restart, reload_config.")


def test_commands_that_do_not_fit_the_status_are_409(client, api_headers, strategy):
    response = client.post(f"{BASE}/{strategy.id}/stop", headers=api_headers)
    assert response.status_code == 409
    assert "is not running" in response.get_json()["message"]
    response = client.post(f"{BASE}/{strategy.id}/commands/reload_config", headers=api_headers)
    assert response.status_code == 409


def test_start_past_the_capacity_limit_is_409(app, client, api_headers, library_dir):
    from app.strategies import service

    holder = app.extensions["btcw_settings"]
    original = holder.settings
    system = original.system
    capped = dataclasses.replace(system, capacity=dataclasses.replace(system.capacity,
                                                                      max_strategies=1))
    holder.settings = dataclasses.replace(original, system=capped)
    try:
        busy = service.create_strategy(valid_payload(name="busy"))
        busy.status, busy.desired_state = "running", "running"
        waiting = service.create_strategy(valid_payload(name="waiting"))
        db.session.commit()
        response = client.post(f"{BASE}/{waiting.id}/start", headers=api_headers)
        assert response.status_code == 409
        assert "Capacity limit reached: 1 of 1" in response.get_json()["message"]
        db.session.refresh(waiting)
        assert waiting.status == "stopped"
    finally:
        holder.settings = original


def test_start_and_stop_without_a_supervisor_queue_and_settle(client, api_headers, strategy):
    # No supervisor listens on this test Redis: the start is recorded and queued ...
    response = client.post(f"{BASE}/{strategy.id}/start", headers=api_headers)
    assert response.status_code == 202
    body = response.get_json()
    assert body["status"] == "success" and body["strategy_status"] == "starting"
    assert body["message"] == f"Start of {strategy.name} requested."
    again = client.post(f"{BASE}/{strategy.id}/commands/start", headers=api_headers)
    assert again.status_code == 409 and "already starting" in again.get_json()["message"]
    # ... and a stop of a bot that was never launched settles at once.
    response = client.post(f"{BASE}/{strategy.id}/stop", headers=api_headers)
    assert response.status_code == 202
    assert response.get_json()["strategy_status"] == "stopped"


def test_wait_parameter_is_validated(client, api_headers, strategy):
    response = client.post(f"{BASE}/{strategy.id}/start?wait=soon", headers=api_headers)
    assert response.status_code == 400 and "wait" in response.get_json()["message"]


def test_detailed_status_of_a_stopped_bot(client, api_headers, strategy):
    body = client.get(f"{BASE}/{strategy.id}/status/detailed", headers=api_headers).get_json()
    assert body["strategy_id"] == strategy.id
    assert body["basic_status"]["status"] == "stopped"
    assert body["process"] is None
    assert body["detailed_data"]["bot"] == "not_running"


def test_an_unreachable_bot_is_a_section_not_a_500(client, api_headers, strategy):
    from tests.support.servers import free_port

    strategy.status, strategy.port, strategy.host = "running", free_port(), "127.0.0.1"
    db.session.commit()
    response = client.get(f"{BASE}/{strategy.id}/status/detailed", headers=api_headers)
    assert response.status_code == 200
    data = response.get_json()["detailed_data"]
    assert data["bot"] == "unreachable"
    assert "connection refused" in data["message"]


@pytest.mark.parametrize("limit", ["0", "1001", "-5", "abc", "1.5"])
def test_logs_limit_is_validated(client, api_headers, strategy, limit):
    response = client.get(f"{BASE}/{strategy.id}/logs?limit={limit}", headers=api_headers)
    assert response.status_code == 400
    assert response.get_json()["message"].startswith("limit must be")


def test_logs_fall_back_to_the_log_file(client, api_headers, strategy):
    from app.runtime import paths

    path = paths.log_path(strategy.id)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"2026-01-01 00:00:{i:02d},000 - freqtrade.worker - INFO - line {i}"
             for i in range(30)]
    path.write_text("\n".join(lines) + "\nTraceback without a prefix\n")
    try:
        body = client.get(f"{BASE}/{strategy.id}/logs?limit=5", headers=api_headers).get_json()
    finally:
        path.unlink()
    assert body["source"] == "file" and body["limit"] == 5 and body["log_count"] == 5
    assert body["logs"][-1] == {"time": None, "logger": None, "level": None,
                                "message": "Traceback without a prefix"}
    assert body["logs"][0] == {"time": "2026-01-01 00:00:26,000", "logger": "freqtrade.worker",
                               "level": "INFO", "message": "line 26"}


def test_logs_never_show_a_bot_secret(client, auth, api_headers, strategy):
    from app.runtime import paths

    secrets = (strategy.api_password, strategy.jwt_secret, strategy.ws_token,
               strategy.webhook_token)
    path = paths.log_path(strategy.id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"2026-01-01 00:00:0{i},000 - freqtrade.rpc.api_server - INFO - "
                            f"token {secret} in use\n" for i, secret in enumerate(secrets)))
    api = client.get(f"{BASE}/{strategy.id}/logs", headers=api_headers).get_data(as_text=True)
    page = client.get(f"/strategies/{strategy.id}/logs").get_data(as_text=True)
    for text in (api, page):
        assert "token **** in use" in text
        for secret in secrets:
            assert secret not in text


def test_logs_without_any_log(client, api_headers, strategy):
    body = client.get(f"{BASE}/{strategy.id}/logs", headers=api_headers).get_json()
    assert body["limit"] == 100 and body["logs"] == []
    assert "has not run" in body["note"]


def test_overview_shape(client, api_headers, strategy, library_dir):
    from app.strategies import service

    other = service.create_strategy(valid_payload(name="second"))
    other.status = "error"
    db.session.commit()
    body = client.get(f"{BASE}/overview", headers=api_headers).get_json()
    assert body["summary"]["total_strategies"] == 2
    assert body["summary"]["running_strategies"] == 0
    assert body["summary"]["by_status"]["stopped"] == 1
    assert body["summary"]["by_status"]["error"] == 1
    assert body["summary"]["gateway_status"] == "idle"
    assert body["capacity"] == {
        "max_strategies": 999, "running_strategies": 0, "available_slots": 999,
        "utilization_percent": 0.0, "port_range": "8081-9080", "can_start_more": True,
        "architecture": "multi_instance_reverse_proxy"}
    assert body["port_pool"]["total_ports"] == 1000
    assert [s["name"] for s in body["strategies"]] == ["rsi-eth-test", "second"]
    assert body["strategies"][0]["runtime_status"] == "stopped"
    assert body["strategies"][0]["is_running"] is False
    assert body["gateway_info"]["port"] == current_settings().system.gateway.port


# ----------------------------------------------------------------------------- library


def test_library_listing(client, api_headers, library_dir):
    body = client.get(f"{BASE}/library", headers=api_headers).get_json()
    names = {f["file"]: f["classes"] for f in body["files"]}
    assert names["RSI_ETH.py"] == ["RSI_ETH"] and names["btcw_signals.py"] == []


def test_upload_json_and_multipart(client, api_headers, library_dir):
    import io

    response = client.post(f"{BASE}/library", headers=api_headers,
                           json={"file_name": "Json_Strategy.py",
                                 "content": STRATEGY_SOURCE.replace("My_Strategy", "Json_S")})
    assert response.status_code == 201
    assert response.get_json()["classes"] == ["Json_S"]
    response = client.post(f"{BASE}/library", headers=api_headers,
                           data={"file": (io.BytesIO(STRATEGY_SOURCE.encode()), "Upload_S.py")},
                           content_type="multipart/form-data")
    assert response.status_code == 201, response.get_json()
    assert (library_dir / "Upload_S.py").exists()
    # The uploaded class can be used right away.
    created = client.post(BASE, headers=api_headers, json=valid_payload(
        name="uploaded", strategy_class="My_Strategy", strategy_file="Upload_S.py"))
    assert created.status_code == 201


@pytest.mark.parametrize("name, words", [
    ("../x.py", "contains a path"), ("/etc/passwd", "contains a path"),
    ("x.py\x00", "NUL byte"), ("A" * 10_000 + ".py", "characters long"),
    ("ünïcode.py", "not allowed"),
])
def test_upload_path_tricks_are_400_and_write_nothing(client, api_headers, library_dir, name,
                                                      words):
    before = sorted(p for p in library_dir.parent.rglob("*"))
    response = client.post(f"{BASE}/library", headers=api_headers,
                           json={"file_name": name, "content": STRATEGY_SOURCE})
    assert response.status_code == 400
    body = response.get_json()
    assert body["field"] == "file" and words in body["message"]
    assert sorted(p for p in library_dir.parent.rglob("*")) == before


def test_upload_of_invalid_python_is_400_with_the_line(client, api_headers, library_dir):
    response = client.post(f"{BASE}/library", headers=api_headers,
                           json={"file_name": "Bad.py", "content": "class X(IStrategy)\n"})
    assert response.status_code == 400
    body = response.get_json()
    assert body["field"] == "content" and "line 1" in body["message"]
    response = client.post(f"{BASE}/library", headers=api_headers, json={"file_name": "B.py"})
    assert response.status_code == 400 and response.get_json()["field"] == "content"
