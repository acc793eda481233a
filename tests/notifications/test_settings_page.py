"""The settings page: channels (masked secrets, send test), rules and templates, validated,
saved atomically to the config folder in use and reloaded live."""

from __future__ import annotations

from app.notifications import service
from app.system.settings import current_settings
from config import yaml_io


def _post(client, auth, url, data):
    headers = {"X-CSRFToken": auth.csrf(), "HX-Request": "true"}
    return client.post(url, data=data, headers=headers)


def _stored(path) -> dict:
    return yaml_io.load(path.read_text())["notifications"]


def test_settings_page_renders_every_section(auth, client, config_file):
    html = client.get("/notifications/settings").get_data(as_text=True)
    for marker in ('id="notification-channels"', 'id="channel-form"',
                   'id="notification-rules"', 'id="notification-templates"',
                   "Send test", str(config_file)):
        assert marker in html, marker


def test_type_switch_reloads_the_form_with_that_types_fields(auth, client, config_file):
    html = client.get("/notifications/settings/channel-form?type=wecom_app&name=wx",
                      headers={"HX-Request": "true"}).get_data(as_text=True)
    for key in ("corp_id", "corp_secret", "agent_id", "to_user", "base_url"):
        assert f'name="{key}"' in html, key
    assert 'value="wx"' in html and 'name="webhook_url"' not in html


def test_add_a_channel_saves_reloads_and_never_shows_the_secret(auth, client, config_file,
                                                                 http_receiver, monkeypatch):
    monkeypatch.setenv("FEISHU_SECRET_TEST", "from-the-env")
    response = _post(client, auth, "/notifications/settings/channels", {
        "name": "feishu", "type": "feishu", "enabled": "1",
        "webhook_url": "https://open.feishu.cn/open-apis/bot/v2/hook/0123456789abcdef",
        "secret": "${FEISHU_SECRET_TEST}", "base_url": http_receiver.url,
        "timeout": "3", "max_attempts": "4", "retry_backoff": "1",
    })
    assert response.status_code == 200, response.get_data(as_text=True)
    html = response.get_data(as_text=True)
    assert "0123456789abcdef" not in html and "open.feishu.cn" in html
    stored = _stored(config_file)["channels"]["feishu"]
    assert stored["secret"] == "${FEISHU_SECRET_TEST}", "an env reference stays a reference"
    assert stored["max_attempts"] == 4 and stored["timeout"] == 3.0
    live = current_settings().notifications.channels["feishu"]
    assert live.secret == "from-the-env" and live.base_url == http_receiver.url

    # editing without retyping secrets keeps them; the form shows them masked only
    form = client.get("/notifications/settings/channel-form?original=feishu").get_data(
        as_text=True)
    assert "0123456789abcdef" not in form
    assert "unchanged: https://open.feishu.cn/open-apis/bot/v2/hook/0123••••" in form
    response = _post(client, auth, "/notifications/settings/channels", {
        "name": "feishu", "original_name": "feishu", "type": "feishu", "enabled": "1",
        "webhook_url": "", "secret": "", "base_url": http_receiver.url, "timeout": "5",
    })
    assert response.status_code == 200
    stored = _stored(config_file)["channels"]["feishu"]
    assert stored["webhook_url"].endswith("0123456789abcdef")
    assert stored["secret"] == "${FEISHU_SECRET_TEST}" and stored["timeout"] == 5.0

    # send test reaches the receiver, signed with the secret from the environment
    result = _post(client, auth, "/notifications/settings/channels/feishu/test", {})
    assert "Test message sent on feishu" in result.get_data(as_text=True)
    (req,) = http_receiver.wait_for(1)
    assert req.json["sign"] and "test message" in req.json["content"]["text"]


def test_bad_channel_values_are_field_errors_and_nothing_is_written(auth, client,
                                                                    config_file):
    before = config_file.read_text()
    response = _post(client, auth, "/notifications/settings/channels", {
        "name": "Bad Name!", "type": "email", "enabled": "1", "host": "", "port": "abc",
        "from_addr": "a@b.c", "to": "o@b.c",
    })
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert "must be a whole number" in html and "required" in html
    assert config_file.read_text() == before
    response = _post(client, auth, "/notifications/settings/channels", {
        "name": "Bad Name!", "type": "email", "enabled": "1", "host": "smtp.x",
        "from_addr": "a@b.c", "to": "o@b.c",
    })
    assert response.status_code == 422
    assert "1-32 of a-z, 0-9, _ and -" in response.get_data(as_text=True)
    assert config_file.read_text() == before


def test_remove_a_channel_drops_it_from_the_rules(auth, client, config_file):
    _post(client, auth, "/notifications/settings/channels", {
        "name": "desk", "type": "webhook", "enabled": "1",
        "webhook_url": "https://hooks.example.com/x"})
    rules = _rules_form()
    rules["P0_channels"] = "sms, desk"
    assert _post(client, auth, "/notifications/settings/rules", rules).status_code == 200
    assert "desk" in current_settings().notifications.priorities["P0"].channels
    response = _post(client, auth, "/notifications/settings/channels/desk/delete", {})
    assert response.status_code == 200
    assert "desk" not in current_settings().notifications.channels
    assert current_settings().notifications.priorities["P0"].channels == ["sms"]


def _rules_form() -> dict:
    s = current_settings().notifications
    form = {"timezone": s.timezone,
            "same_pair_interval": str(s.rate_limiting.same_pair_interval),
            "global_max_per_minute": str(s.rate_limiting.global_max_per_minute),
            "batch_interval": str(s.rate_limiting.batch_interval)}
    for name, p in s.priorities.items():
        form.update({f"{name}_name": p.name, f"{name}_delay_seconds": str(p.delay_seconds),
                     f"{name}_channels": ", ".join(p.channels)})
        if p.digest:
            form[f"{name}_digest"] = "1"
    for name, t in s.time_slots.items():
        form.update({f"{name}_start_time": t.start_time, f"{name}_end_time": t.end_time,
                     f"{name}_enabled_channels": ", ".join(t.enabled_channels),
                     f"{name}_enabled_priorities": list(t.enabled_priorities)})
    return form


def test_rules_are_validated_saved_and_live(auth, client, config_file):
    form = _rules_form()
    form.update({"global_max_per_minute": "8", "rest_hours_start_time": "22:00",
                 "work_hours_end_time": "22:00", "timezone": "Europe/Berlin"})
    response = _post(client, auth, "/notifications/settings/rules", form)
    assert response.status_code == 200, response.get_data(as_text=True)
    live = current_settings().notifications
    assert live.rate_limiting.global_max_per_minute == 8
    assert live.time_slots["rest_hours"].start_time == "22:00"
    assert live.timezone == "Europe/Berlin"
    assert _stored(config_file)["rate_limiting"]["global_max_per_minute"] == 8

    for field, value, message in [
        ("global_max_per_minute", "0", "must be at least 1"),
        ("batch_interval", "soon", "must be a whole number"),
        ("work_hours_start_time", "25:00", "must be HH:MM"),
        ("timezone", "Mars/Olympus", "unknown time zone"),
        ("P1_channels", "pigeon", "pigeon&#39; is neither a channel"),
    ]:
        bad = dict(form, **{field: value})
        response = _post(client, auth, "/notifications/settings/rules", bad)
        assert response.status_code == 422, field
        html = response.get_data(as_text=True)
        assert message in html, field
        assert f'value="{value}"' in html, "the form keeps what was typed"
    assert current_settings().notifications.rate_limiting.global_max_per_minute == 8


def test_templates_are_validated_and_previewed(auth, client, config_file, make_signal,
                                               configure):
    response = _post(client, auth, "/notifications/settings/templates",
                     {"signal_template": "custom", "custom_template": "{{ signal.pairr }}"})
    assert response.status_code == 422
    assert "custom template" in response.get_data(as_text=True)
    response = _post(client, auth, "/notifications/settings/templates", {
        "signal_template": "custom", "include_indicators": "1",
        "custom_template": "{{ priority }} {{ signal.pair }} rsi={{ indicators.rsi }}"})
    assert response.status_code == 200
    assert "P0 BTC/USDT rsi=28.4" in response.get_data(as_text=True), "preview of the sample"
    assert current_settings().notifications.templates.signal_template == "custom"
    configure(channels={})
    notification = service.notify_signal(make_signal("SOL/USDT", "P1").id)
    assert notification.body == "P1 SOL/USDT rsi=27.5"


def test_reload_reaches_other_processes_through_the_version_counter(auth, client,
                                                                    config_file):
    from app.extensions import redis_store
    from app.system.settings import VERSION_KEY

    before = int(redis_store.client.get(VERSION_KEY) or 0)
    form = _rules_form()
    form["same_pair_interval"] = "120"
    assert _post(client, auth, "/notifications/settings/rules", form).status_code == 200
    assert int(redis_store.client.get(VERSION_KEY)) == before + 1


def test_saving_keeps_the_owners_comments_and_list_styles(auth, client, config_file):
    text = config_file.read_text()
    assert "max_per_minute: " in text
    text = text.replace("notifications:\n", "notifications:  # my own note on the block\n", 1)
    config_file.write_text("# kept: a comment at the top\n" + text)
    form = _rules_form()
    form.update({"global_max_per_minute": "9", "P1_channels": "feishu, email"})
    response = _post(client, auth, "/notifications/settings/rules", form)
    assert response.status_code == 200, response.get_data(as_text=True)
    saved = config_file.read_text()
    assert saved.startswith("# kept: a comment at the top\n")
    assert "notifications:  # my own note on the block" in saved
    assert "global_max_per_minute: 9" in saved
    assert "# notifications per minute, all channels together" in saved  # the key's comment
    assert 'channels: ["sms", "feishu", "wechat"]' in saved  # untouched P0 list, flow style
    assert _stored(config_file)["priorities"]["P1"]["channels"] == ["feishu", "email"]
    assert current_settings().notifications.rate_limiting.global_max_per_minute == 9


def test_an_unreadable_file_is_refused_not_overwritten(auth, client, config_file):
    broken = "notifications: [this is: not, {valid\n"
    config_file.write_text(broken)
    response = _post(client, auth, "/notifications/settings/rules", _rules_form())
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert "cannot be read (line 2, column 1)" in html and "will not overwrite it" in html
    response = _post(client, auth, "/notifications/settings/channels/inbox/delete", {})
    body = response.get_data(as_text=True)
    assert response.status_code == 422 and "cannot be read" in body and "__all__" not in body
    response = client.get("/notifications/settings/channel-form?original=inbox")
    assert response.status_code == 422
    assert config_file.read_text() == broken, "the owner's file is left as it was"
    assert client.get("/notifications/settings").status_code == 200  # live settings still shown


def test_values_yaml_1_1_would_misread_stay_strings(auth, client, config_file):
    # The file is written by ruamel.yaml (YAML 1.2) and read by PyYAML (YAML 1.1), where a
    # plain 22:30 is the number 1350 and a plain on is True.
    form = _rules_form()
    form.update({"P0_name": "on", "rest_hours_start_time": "22:30"})
    for present in (True, False):
        if not present:
            config_file.unlink()
        response = _post(client, auth, "/notifications/settings/rules", form)
        assert response.status_code == 200, response.get_data(as_text=True)
        stored = _stored(config_file)
        assert stored["priorities"]["P0"]["name"] == "on"
        assert stored["time_slots"]["rest_hours"]["start_time"] == "22:30"
        assert current_settings().notifications.time_slots["rest_hours"].start_time == "22:30"
