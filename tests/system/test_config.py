"""Config files: load, validation errors naming file and key, reload keeping the last good one."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from config.loader import ConfigError, load_settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def folder(tmp_path) -> Path:
    for f in (ROOT / "config").glob("*.yml"):
        shutil.copy(f, tmp_path / f.name)
    return tmp_path


def test_shipped_files_load_with_design_defaults(folder):
    s = load_settings(folder)
    assert s.system.monitoring.system_status_interval == 30
    assert s.system.freqtrade.startup_timeout == 60
    assert s.system.capacity.max_strategies == 999
    assert s.notifications.priorities["P2"].channels == ["email"]
    assert s.notifications.time_slots["rest_hours"].enabled_channels == ["sms"]
    assert s.system.gateway.port == 8080 and s.system.web.port == 8000


def test_a_retired_key_is_ignored_with_a_warning(folder, caplog):
    _write(folder, "system.yml", "system:\n  performance:\n    db_command_timeout: 60\n"
                                 "  backup:\n    backup_retention_days: 90\n")
    _write(folder, "proxy.yml", "proxy:\n  health_check:\n    max_latency_ms: 500\n")
    with caplog.at_level("WARNING", logger="config.loader"):
        s = load_settings(folder)
    assert s.system.performance.db_pool_max_size == 20
    warned = caplog.text
    for key in ("system.performance.db_command_timeout", "system.backup", "proxy.health_check"):
        assert f"{key} is no longer used and is ignored" in warned


def test_missing_files_mean_defaults(tmp_path):
    s = load_settings(tmp_path)
    assert s.system.security.max_login_attempts == 5


def _write(folder: Path, name: str, text: str) -> None:
    (folder / name).write_text(text)


@pytest.mark.parametrize(
    ("file", "text", "key", "problem"),
    [
        ("system.yml", "system:\n  monitoring:\n    system_status_interval: fast\n",
         "system.monitoring.system_status_interval", "whole number"),
        ("system.yml", "system:\n  capacity:\n    alert_threshold: 150\n",
         "system.capacity.alert_threshold", "0..100"),
        ("system.yml", "system:\n  monitorng: {}\n", "system.monitorng", "unknown key"),
        ("notifications.yml", "notifications:\n  time_slots:\n    work_hours:\n"
         "      start_time: '25:00'\n", "notifications.time_slots.work_hours.start_time", "HH:MM"),
        ("notifications.yml", "notifications:\n  timezone: Mars/Olympus\n",
         "notifications.timezone", "unknown time zone"),
        ("system.yml", "system:\n  gateway:\n    workers: [1]\n",
         "system.gateway.workers", "whole number"),
        ("system.yml", "system:\n  security:\n    require_special_chars: 'yes'\n",
         "system.security.require_special_chars", "true or false"),
        ("system.yml", "system:\n  security:\n    cors_origins: ['*']\n",
         "system.security.cors_origins[0]", "must be an origin like http://host:8080"),
        ("system.yml", "system:\n  security:\n    cors_origins: ['http://ui.example/app']\n",
         "system.security.cors_origins[0]", "no path"),
        ("system.yml", "system:\n  monitoring:\n    queue_wait_limit: 1\n",
         "system.monitoring.queue_wait_limit", "5..86400"),
    ],
)
def test_bad_values_name_file_key_and_problem(folder, file, text, key, problem):
    _write(folder, file, text)
    with pytest.raises(ConfigError) as err:
        load_settings(folder)
    assert err.value.file == file and err.value.key == key
    assert problem in str(err.value) and file in str(err.value)


def test_broken_yaml_names_the_line(folder):
    _write(folder, "system.yml", "system:\n  monitoring: [\n")
    with pytest.raises(ConfigError, match=r"system.yml: is not valid YAML at line"):
        load_settings(folder)


def test_env_expansion_in_notifications(folder, monkeypatch):
    monkeypatch.setenv("FEISHU_SECRET", "s3cr3t")
    _write(folder, "notifications.yml",
           "notifications:\n  channels:\n    feishu:\n      type: feishu\n"
           "      webhook_url: https://open.feishu.cn/open-apis/bot/v2/hook/x\n"
           "      secret: ${FEISHU_SECRET}\n")
    assert load_settings(folder).notifications.channels["feishu"].secret == "s3cr3t"


def test_config_api_shows_file_with_secrets_masked(client, auth):
    body = client.get("/api/v1/system/config/system").get_json()
    assert body["system"]["capacity"]["max_strategies"] == 999
    assert client.get("/api/v1/system/config/nope").status_code == 404


def test_reload_with_bad_file_keeps_last_good(app, client, auth, config_dir):
    original = (config_dir / "system.yml").read_text()
    headers = {"X-CSRFToken": auth.csrf()}
    try:
        (config_dir / "system.yml").write_text(original.replace("max_strategies: 999",
                                                                "max_strategies: 3"))
        assert client.post("/api/v1/system/config/reload", headers=headers).status_code == 200
        assert app.extensions["btcw_settings"].settings.system.capacity.max_strategies == 3
        (config_dir / "system.yml").write_text(original.replace("max_strategies: 999",
                                                                "max_strategies: lots"))
        response = client.post("/api/v1/system/config/reload", headers=headers)
        assert response.status_code == 400
        message = response.get_json()["message"]
        assert "system.yml" in message and "max_strategies" in message
        assert app.extensions["btcw_settings"].settings.system.capacity.max_strategies == 3
    finally:
        (config_dir / "system.yml").write_text(original)
        client.post("/api/v1/system/config/reload", headers=headers)


def test_config_api_masks_channel_secrets(app, client, auth, config_dir):
    original = (config_dir / "notifications.yml").read_text()
    try:
        (config_dir / "notifications.yml").write_text(
            "notifications:\n  channels:\n    ops:\n      type: webhook\n"
            "      webhook_url: https://hooks.example/T0KEN-abcdefghijklmnop\n"
            "      secret: hmac-secret-value-123\n"
        )
        client.post("/api/v1/system/config/reload", headers={"X-CSRFToken": auth.csrf()})
        text = client.get("/api/v1/system/config/notifications").get_data(as_text=True)
        assert "abcdefghijklmnop" not in text and "hmac-secret-value-123" not in text
        assert "hooks.example" in text
    finally:
        (config_dir / "notifications.yml").write_text(original)
        client.post("/api/v1/system/config/reload", headers={"X-CSRFToken": auth.csrf()})
