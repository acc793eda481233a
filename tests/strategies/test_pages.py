"""Strategy pages: list, form with errors next to fields, detail fragments, library upload."""

from __future__ import annotations

import io
import re

import pytest

from app.extensions import db
from app.strategies.models import Strategy
from tests.strategies.conftest import STRATEGY_SOURCE

HTMX = {"HX-Request": "true"}


def _csrf(auth) -> dict:
    return {"X-CSRFToken": auth.csrf()}


def _field_block(html: str, name: str) -> str:
    """The <div class="field …"> that holds the control called `name`."""
    match = re.search(r'<div class="field[^"]*">(?:(?!<div class="field).)*?name="' + name
                      + r'".*?<div class="field-error"[^>]*>(.*?)</div>', html, re.S)
    assert match, f"no field {name}"
    return match.group(0)


def test_pages_need_login(client, library_dir):
    response = client.get("/strategies/")
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    response = client.get("/strategies/", headers=HTMX)
    assert response.status_code == 401 and response.headers["HX-Redirect"].startswith("/login")


def test_list_page_and_its_polling_fragment(auth, client, strategy):
    page = client.get("/strategies/").get_data(as_text=True)
    assert "<html" in page and 'id="strategy-list"' in page
    assert 'hx-trigger="every 5s"' in page
    assert f'href="/strategies/{strategy.id}"' in page and "RSI_ETH" in page
    assert "ETH/USDT" in page and 'badge-stopped' in page
    fragment = client.get("/strategies/", headers=HTMX)
    html = fragment.get_data(as_text=True)
    assert "<html" not in html and html.lstrip().startswith('<section id="strategy-list"')
    assert fragment.headers["Vary"] == "HX-Request" or "HX-Request" in fragment.headers["Vary"]


def test_list_page_shows_health_and_empty_state(auth, client, strategy, library_dir):
    strategy.health_score = 55
    db.session.commit()
    html = client.get("/strategies/").get_data(as_text=True)
    assert '<span class="num text-warning">55</span>' in html
    strategy_id = strategy.id
    db.session.delete(db.session.get(Strategy, strategy_id))
    db.session.commit()
    assert "No strategies yet" in client.get("/strategies/").get_data(as_text=True)


def _row_cells(html: str, strategy_id: int) -> list[str]:
    start = html.index(f'id="strategy-row-{strategy_id}"')
    row = html[start:html.index("</tr>", start)]
    return re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)


def test_list_and_detail_show_the_monitoring_measurement_in_mib(auth, client, strategy):
    import os
    from datetime import timedelta

    from app.clock import utcnow
    from app.monitoring import bot_usage

    strategy.status, strategy.desired_state, strategy.pid = "running", "running", os.getpid()
    strategy.port, strategy.host = 18124, "127.0.0.1"
    strategy.started_at = utcnow() - timedelta(minutes=5)
    db.session.commit()
    cells = _row_cells(client.get("/strategies/", headers=HTMX).get_data(as_text=True),
                       strategy.id)
    uptime, cpu, memory = cells[6], cells[7], cells[8]  # after the select box
    assert "5 min" in uptime
    assert "—" in cpu and "not measured yet" in cpu and "0.0" not in cpu  # no sample yet
    assert "—" in memory and "MiB" not in memory

    measured = bot_usage.measure_bots()["processes"][0]  # the status sweep's measurement
    cells = _row_cells(client.get("/strategies/", headers=HTMX).get_data(as_text=True),
                       strategy.id)
    assert f"{measured['cpu_percent']:.1f}%" in cells[7]
    pss, rss = round(measured["pss"] / 2**20), round(measured["rss"] / 2**20)
    assert f">{pss:,} MiB</span>" in cells[8] and f"RSS {rss:,} MiB" in cells[8]
    status = client.get(f"/strategies/{strategy.id}/status",
                        headers=HTMX).get_data(as_text=True)
    assert f"{pss:,} MiB</span> PSS" in status and f"{rss:,} MiB</span> RSS" in status
    assert f"{measured['cpu_percent']:.1f}%" in status
    assert " MB<" not in status and " MB<" not in client.get("/strategies/").get_data(as_text=True)


def test_new_form_lists_library_files(auth, client, library_dir):
    html = client.get("/strategies/new").get_data(as_text=True)
    assert 'id="strategy-form"' in html
    assert '<option value="RSI_ETH.py">RSI_ETH.py (RSI_ETH)</option>' in html
    assert "btcw_signals.py" not in html  # no strategy class in it
    classes = client.get("/strategies/library/classes?strategy_file=MACD_DOT.py", headers=HTMX)
    assert '<option value="MACD_DOT" selected>MACD_DOT</option>' in classes.get_data(as_text=True)


def test_form_errors_are_shown_next_to_their_fields(auth, client, library_dir):
    form = {"name": "../evil", "strategy_file": "RSI_ETH.py", "strategy_class": "RSI_ETH",
            "exchange": "simulator", "timeframe": "1m", "pairs": "ETH/BTC",
            "stake_currency": "USDT", "stake_amount": "unlimited", "dry_run_wallet": "1000",
            "max_open_trades": "3", "proxy_id": "", "strong_threshold": "0.5",
            "medium_threshold": "0.6", "weak_threshold": "0.4", "version_label": "v1"}
    response = client.post("/strategies/new", data=form, headers={**HTMX, **_csrf(auth)})
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert html.lstrip().startswith('<form id="strategy-form"')
    name = _field_block(html, "name")
    assert "has-error" in name and "must not contain a path" in name and 'value="../evil"' in name
    assert "not quoted in the stake currency USDT" in _field_block(html, "pairs")
    assert "not be above the strong one" in _field_block(html, "medium_threshold")
    assert "has-error" not in _field_block(html, "stake_amount")
    assert db.session.scalar(db.select(db.func.count(Strategy.id))) == 0


def test_form_without_htmx_renders_the_page_with_errors(auth, client, library_dir):
    response = client.post("/strategies/new", data={"csrf_token": auth.csrf(), "name": ""})
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert "<html" in html and "The name is required." in _field_block(html, "name")


def test_form_creates_and_redirects(auth, client, library_dir):
    form = {"name": "from-form", "strategy_file": "MACD_DOT.py", "strategy_class": "MACD_DOT",
            "exchange": "simulator", "timeframe": "1m", "pairs": "DOT/USDT",
            "stake_currency": "USDT", "stake_amount": "unlimited", "dry_run_wallet": "500",
            "max_open_trades": "2", "proxy_id": "", "strong_threshold": "0.8",
            "medium_threshold": "0.6", "weak_threshold": "0.4", "version_label": "v2"}
    response = client.post("/strategies/new", data=form, headers={**HTMX, **_csrf(auth)})
    row = db.session.scalar(db.select(Strategy).where(Strategy.name == "from-form"))
    assert row is not None and row.dry_run_wallet == 500 and row.proxy_id is None
    assert response.headers["HX-Redirect"] == f"/strategies/{row.id}"
    form["name"] = "plain-post"
    response = client.post("/strategies/new", data={**form, "csrf_token": auth.csrf()})
    assert response.status_code == 303


def test_form_post_needs_csrf(auth, client, library_dir):
    response = client.post("/strategies/new", data={"name": "x"})
    assert response.status_code == 400


def test_edit_form(auth, client, strategy):
    html = client.get(f"/strategies/{strategy.id}/edit").get_data(as_text=True)
    assert 'value="ETH/USDT"' in html and 'value="rsi-eth-test"' in html
    form = {"name": "renamed", "description": "", "strategy_file": "RSI_ETH.py",
            "strategy_class": "RSI_ETH", "exchange": "simulator", "timeframe": "5m",
            "pairs": "ETH/USDT, BTC/USDT", "stake_currency": "USDT", "stake_amount": "50",
            "dry_run_wallet": "1000", "max_open_trades": "3", "proxy_id": "",
            "strong_threshold": "0.8", "medium_threshold": "0.6", "weak_threshold": "0.4",
            "version_label": "v1"}
    response = client.post(f"/strategies/{strategy.id}/edit", data=form,
                           headers={**HTMX, **_csrf(auth)})
    assert response.headers["HX-Redirect"] == f"/strategies/{strategy.id}"
    db.session.refresh(strategy)
    assert strategy.name == "renamed" and strategy.pairs == ["ETH/USDT", "BTC/USDT"]
    form["timeframe"] = "2s"
    response = client.post(f"/strategies/{strategy.id}/edit", data=form,
                           headers={**HTMX, **_csrf(auth)})
    assert response.status_code == 422
    assert "not a timeframe of simulator" in _field_block(response.get_data(as_text=True),
                                                           "timeframe")


def test_detail_page(auth, client, strategy):
    html = client.get(f"/strategies/{strategy.id}").get_data(as_text=True)
    for marker in ('id="strategy-status"', 'id="strategy-thresholds"', 'id="strategy-logs"',
                   'id="strategy-bot-slot"', "hx-confirm=", "Start</button>"):
        assert marker in html, marker
    # The stopped bot's status refreshes every 5 s; the slot for signals is there.
    assert 'hx-trigger="every 5s"' in html
    assert f"/strategies/{strategy.id}/bot" in html


def test_detail_of_unknown_or_deleted_strategy_is_404(auth, client, strategy):
    response = client.get("/strategies/9999")
    assert response.status_code == 404 and "No strategy with id 9999." in response.get_data(
        as_text=True)


def test_status_fragment_polls_every_second_while_starting(auth, client, strategy):
    strategy.status, strategy.status_message = "starting", "waiting for ping"
    db.session.commit()
    html = client.get(f"/strategies/{strategy.id}/status", headers=HTMX).get_data(as_text=True)
    assert html.lstrip().startswith('<section id="strategy-status"')
    assert 'hx-trigger="load delay:1s"' in html and "waiting for ping" in html
    assert "htmx-indicator is-active" in html


def test_error_status_shows_freqtrades_message(auth, client, strategy):
    strategy.status = "error"
    strategy.status_message = "Impossible to load Strategy 'Nope'. This class does not exist"
    db.session.commit()
    html = client.get(f"/strategies/{strategy.id}/status", headers=HTMX).get_data(as_text=True)
    assert "FreqTrade says" in html and "This class does not exist" in html


def test_start_button_queues_a_start_and_shows_progress(auth, client, strategy):
    response = client.post(f"/strategies/{strategy.id}/commands/start",
                           headers={**HTMX, **_csrf(auth)})
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "badge-starting" in html and 'hx-trigger="load delay:1s"' in html
    assert "Start of rsi-eth-test requested." in html  # the toast
    # The bot was never launched: a stop settles at once.
    client.post(f"/strategies/{strategy.id}/commands/stop", headers={**HTMX, **_csrf(auth)})
    db.session.refresh(strategy)
    assert strategy.status == "stopped"


def test_refused_commands_answer_plain_text_for_the_toast(auth, client, strategy):
    response = client.post(f"/strategies/{strategy.id}/commands/stop",
                           headers={**HTMX, **_csrf(auth)})
    assert response.status_code == 409
    assert response.content_type.startswith("text/plain")
    assert "is not running" in response.get_data(as_text=True)
    response = client.post(f"/strategies/{strategy.id}/commands/fly",
                           headers={**HTMX, **_csrf(auth)})
    assert response.status_code == 400 and "valid commands" in response.get_data(as_text=True)


def test_bot_fragment_of_a_stopped_bot(auth, client, strategy):
    html = client.get(f"/strategies/{strategy.id}/bot", headers=HTMX).get_data(as_text=True)
    assert 'id="strategy-bot"' in html and "its bot is not running" in html


def test_logs_fragment(auth, client, strategy):
    from app.runtime import paths

    path = paths.log_path(strategy.id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("2026-01-01 00:00:00,000 - freqtrade - INFO - hello <b>\n")
    try:
        html = client.get(f"/strategies/{strategy.id}/logs?limit=50",
                          headers=HTMX).get_data(as_text=True)
    finally:
        path.unlink()
    assert 'hx-trigger="every 3s"' in html and "hello &lt;b&gt;" in html
    assert client.get(f"/strategies/{strategy.id}/logs?limit=5000",
                      headers=HTMX).status_code == 400


def test_thresholds_editor(auth, client, strategy):
    url = f"/strategies/{strategy.id}/thresholds"
    bad = client.post(url, data={"strong_threshold": "0.5", "medium_threshold": "0.6",
                                 "weak_threshold": "0.1"}, headers={**HTMX, **_csrf(auth)})
    assert bad.status_code == 422
    assert "not be above the strong" in _field_block(bad.get_data(as_text=True),
                                                     "medium_threshold")
    ok = client.post(url, data={"strong_threshold": "0.9", "medium_threshold": "0.6",
                                "weak_threshold": "0.1"}, headers={**HTMX, **_csrf(auth)})
    assert ok.status_code == 200 and "Thresholds saved." in ok.get_data(as_text=True)
    db.session.refresh(strategy)
    assert (strategy.strong_threshold, strategy.weak_threshold) == (0.9, 0.1)


def test_delete_hides_the_strategy(auth, client, strategy):
    response = client.post(f"/strategies/{strategy.id}/delete", headers={**HTMX, **_csrf(auth)})
    assert response.headers["HX-Redirect"] == "/strategies/"
    assert client.get(f"/strategies/{strategy.id}").status_code == 404
    db.session.expire_all()
    assert db.session.get(Strategy, strategy.id).deleted_at is not None


def test_library_page_upload(auth, client, library_dir):
    page = client.get("/strategies/library").get_data(as_text=True)
    assert "RSI_ETH.py" in page and "helper module" in page
    data = {"file": (io.BytesIO(STRATEGY_SOURCE.encode()), "Page_Upload.py")}
    response = client.post("/strategies/library", data=data, headers={**HTMX, **_csrf(auth)},
                           content_type="multipart/form-data")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "Uploaded <strong>Page_Upload.py</strong>: My_Strategy." in html
    assert (library_dir / "Page_Upload.py").exists()


@pytest.mark.parametrize("upload_name, save_as, field, words", [
    ("../../x.py", "", "file", "contains a path"),
    ("ok.py", "/etc/passwd", "file_name", "contains a path"),
    ("ok.py", "x" * 10_000 + ".py", "file_name", "characters long"),
])
def test_library_page_upload_errors_next_to_the_field(auth, client, library_dir, upload_name,
                                                      save_as, field, words):
    before = sorted(library_dir.parent.rglob("*"))
    data = {"file": (io.BytesIO(STRATEGY_SOURCE.encode()), upload_name), "file_name": save_as}
    response = client.post("/strategies/library", data=data, headers={**HTMX, **_csrf(auth)},
                           content_type="multipart/form-data")
    assert response.status_code == 422
    assert words in _field_block(response.get_data(as_text=True), field)
    assert sorted(library_dir.parent.rglob("*")) == before


def test_library_page_upload_of_broken_python(auth, client, library_dir):
    data = {"file": (io.BytesIO(b"class X(IStrategy:\n"), "Broken.py")}
    response = client.post("/strategies/library", data=data, headers={**HTMX, **_csrf(auth)},
                           content_type="multipart/form-data")
    assert response.status_code == 422
    assert "is not valid Python" in response.get_data(as_text=True)
