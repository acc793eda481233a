"""Signal pages, the JSON API with its filters and keyset pages, CSV export, signal detail."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta

import pytest

from app.clock import utcnow
from app.extensions import db
from app.signals.models import Signal
from tests.signals.conftest import entry_webhook, strategy_msg


@pytest.fixture
def populated(make_strategy, post_webhook):
    """Two strategies with signals of every level; returns (rsi, macd, ids by name)."""
    rsi, macd = make_strategy("RSI_ETH"), make_strategy("MACD_DOT")
    ids = {}
    specs = [
        ("rsi-strong", rsi, strategy_msg(strength=0.9, candle="2026-11-24T20:01:00Z")),
        ("rsi-medium", rsi, strategy_msg(strength=0.65, candle="2026-11-24T20:02:00Z")),
        ("rsi-weak-exit", rsi, strategy_msg(strength=0.45, action="exit_long",
                                            candle="2026-11-24T20:03:00Z")),
        ("rsi-ignore", rsi, strategy_msg(strength=0.1, candle="2026-11-24T20:04:00Z")),
        ("macd-strong-dot", macd, strategy_msg(pair="DOT/USDT", strength=0.99)),
        ("macd-entry", macd, entry_webhook(pair="DOT/USDT", tag="=HYPERLINK(1) s=0.7")),
        ("macd-status", macd, {"type": "status", "status": "Status: running"}),
    ]
    for name, strategy, body in specs:
        response = post_webhook(strategy, body)
        assert response.status_code == 200, response.get_json()
        ids[name] = response.get_json()["id"]
    return rsi, macd, ids


def api_ids(auth, query: str) -> list[int]:
    response = auth.client.get(f"/api/v1/signals?{query}")
    assert response.status_code == 200, response.get_json()
    return [item["id"] for item in response.get_json()["items"]]


def test_api_filters(auth, populated):
    rsi, macd, ids = populated
    assert api_ids(auth, f"strategy_id={rsi.id}") == [
        ids["rsi-ignore"], ids["rsi-weak-exit"], ids["rsi-medium"], ids["rsi-strong"]]
    assert api_ids(auth, "pair=DOT/USDT") == [ids["macd-entry"], ids["macd-strong-dot"]]
    assert api_ids(auth, "level=strong") == [ids["macd-strong-dot"], ids["rsi-strong"]]
    assert set(api_ids(auth, "level=strong,medium")) == {
        ids["macd-strong-dot"], ids["rsi-strong"], ids["rsi-medium"], ids["macd-entry"]}
    assert api_ids(auth, "action=exit_long") == [ids["rsi-weak-exit"]]
    assert api_ids(auth, "action=status") == [ids["macd-status"]]
    # "Entries and exits" on the page: everything but bot status and text messages.
    everything = api_ids(auth, "")
    trades = api_ids(auth, "action=enter_long,exit_long,enter_short,exit_short")
    assert trades == [i for i in everything if i != ids["macd-status"]]
    assert api_ids(auth, "type=entry") == [ids["macd-entry"]]
    assert api_ids(auth, f"strategy_id={macd.id}&level=ignore") == [ids["macd-status"]]


def test_api_time_range(auth, populated):
    _, _, ids = populated
    old_id = ids["rsi-strong"]
    db.session.execute(db.update(Signal).where(Signal.id == old_id)
                       .values(received_at=utcnow() - timedelta(days=3)))
    db.session.commit()
    two_days_ago = (utcnow() - timedelta(days=2)).strftime("%Y-%m-%dT%H:%M")
    assert old_id not in api_ids(auth, f"from={two_days_ago}")
    assert api_ids(auth, f"to={two_days_ago}") == [old_id]
    day = (utcnow() - timedelta(days=3)).strftime("%Y-%m-%d")
    assert api_ids(auth, f"from={day}&to={day}") == [old_id]  # a date means the whole day


def test_keyset_pagination_walks_every_row_once(auth, strategy, post_webhook):
    posted = [post_webhook(strategy, strategy_msg(candle=f"2026-11-24T{10 + i // 60}:{i % 60:02d}:00Z"))
              .get_json()["id"] for i in range(23)]
    seen, before, pages = [], None, 0
    while True:
        query = "limit=10" + (f"&before_id={before}" if before else "")
        body = auth.client.get(f"/api/v1/signals?{query}").get_json()
        seen += [item["id"] for item in body["items"]]
        pages += 1
        before = body["next_before_id"]
        if before is None:
            break
    assert pages == 3
    assert seen == sorted(posted, reverse=True)


@pytest.mark.parametrize(("query", "param"), [
    ("level=extreme", "level"),
    ("level=strong,loud", "level"),
    ("from=yesterday", "from"),
    ("to=2026-13-01", "to"),
    ("from=2026-11-25&to=2026-11-24", "to"),
    ("strategy_id=abc", "strategy_id"),
    ("before_id=-3", "before_id"),
    ("before_id=x", "before_id"),
    ("limit=0", "limit"),
    ("limit=100000", "limit"),
    ("action=buy", "action"),
    ("action=enter_long,sell", "action"),
    ("type=trade", "type"),
    ("format=xml", "format"),
])
def test_api_rejects_bad_parameters_naming_them(auth, query, param):
    response = auth.client.get(f"/api/v1/signals?{query}")
    assert response.status_code == 400
    body = response.get_json()
    assert body["param"] == param
    assert body["message"].startswith(param + ":")


def test_api_needs_login(client, populated):
    assert client.get("/api/v1/signals").status_code == 401
    assert client.get("/api/v1/signals.csv").status_code == 401
    assert client.get("/signals/").status_code == 302


def test_api_token_works(client, api_token, populated):
    response = client.get("/api/v1/signals?limit=2",
                          headers={"Authorization": f"Bearer {api_token}"})
    assert response.status_code == 200
    assert response.get_json()["count"] == 2


def test_api_detail(auth, populated):
    _, _, ids = populated
    body = auth.client.get(f"/api/v1/signals/{ids['macd-entry']}").get_json()
    assert body["strength"] == {"raw": 0.7, "level": "medium", "priority": "P1"}
    assert body["trade_id"] == 7 and body["type"] == "entry"
    assert body["payload"]["enter_tag"] == "=HYPERLINK(1) s=0.7"
    assert auth.client.get("/api/v1/signals/999999").status_code == 404


def _csv(response) -> list[dict]:
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    return list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))


def test_csv_export_with_filters(auth, populated):
    rsi, _, ids = populated
    rows = _csv(auth.client.get(f"/api/v1/signals.csv?strategy_id={rsi.id}"))
    assert [int(r["id"]) for r in rows] == [
        ids["rsi-ignore"], ids["rsi-weak-exit"], ids["rsi-medium"], ids["rsi-strong"]]
    assert rows[-1]["level"] == "strong" and rows[-1]["priority"] == "P0"
    assert rows[-1]["indicators"] == '{"rsi": 21.4}'
    same = _csv(auth.client.get(f"/api/v1/signals?format=csv&strategy_id={rsi.id}"))
    assert same == rows
    everything = _csv(auth.client.get("/api/v1/signals.csv"))
    assert len(everything) == 7
    # text that a spreadsheet would run as a formula is defused
    entry = next(r for r in everything if int(r["id"]) == ids["macd-entry"])
    assert entry["enter_tag"] == "'=HYPERLINK(1)"


def test_csv_export_streams_more_than_one_batch(auth, strategy, monkeypatch):
    from app.signals import ingest, service

    monkeypatch.setattr(service, "CSV_BATCH", 4)
    auth_strategy = ingest.strategy_auth(strategy.id)
    for i in range(10):
        ingest.store(auth_strategy, strategy_msg(candle=f"2026-11-24T20:{i:02d}:00Z"))
    rows = _csv(auth.client.get("/api/v1/signals.csv"))
    ids = [int(r["id"]) for r in rows]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == 10


def test_csv_export_rejects_bad_filters(auth):
    response = auth.client.get("/api/v1/signals.csv?level=loud")
    assert response.status_code == 400 and response.get_json()["param"] == "level"


def test_signals_page_lists_and_filters(auth, populated):
    rsi, _, ids = populated
    html = auth.client.get("/signals/").get_data(as_text=True)
    for signal_id in ids.values():
        assert f'id="signal-{signal_id}"' in html
    assert 'hx-ext="ws"' in html and 'ws-connect="/ws/signals?since_id=' in html
    filtered = auth.client.get(f"/signals/?strategy_id={rsi.id}&level=strong").get_data(
        as_text=True)
    assert re.findall(r'<tr id="signal-(\d+)"', filtered) == [str(ids["rsi-strong"])]
    assert f"strategy_id={rsi.id}" in filtered and "level=strong" in filtered  # live URL, CSV link


def test_htmx_request_gets_the_list_fragment(auth, populated):
    response = auth.client.get("/signals/?level=strong", headers={"HX-Request": "true"})
    html = response.get_data(as_text=True)
    assert "<html" not in html and 'id="signals-list"' in html
    assert "HX-Request" in response.headers.get("Vary", "")


def test_signals_page_pagination_links(auth, strategy, post_webhook):
    for i in range(55):
        post_webhook(strategy, strategy_msg(candle=f"2026-11-24T{10 + i // 60}:{i % 60:02d}:00Z"))
    html = auth.client.get("/signals/").get_data(as_text=True)
    assert html.count('<tr id="signal-') == 50
    older = re.search(r'href="(/signals/\?before_id=\d+)"', html).group(1)
    second = auth.client.get(older).get_data(as_text=True)
    assert second.count('<tr id="signal-') == 5
    assert "← Newest" in second and "No older signals" in second
    assert 'ws-connect="/ws/signals?before_id=' in second  # a paged view only counts newer ones


def test_bad_filter_on_the_page_shows_the_error(auth):
    response = auth.client.get("/signals/?from=someday")
    assert response.status_code == 400
    assert "from: must be a date" in response.get_data(as_text=True)


def test_strategy_embed_fragment(auth, populated):
    rsi, _, ids = populated
    html = auth.client.get(f"/signals/?strategy_id={rsi.id}&embed=1").get_data(as_text=True)
    assert html.lstrip().startswith('<div id="strategy-signals">')
    assert "<html" not in html
    assert f'ws-connect="/ws/signals?strategy_id={rsi.id}&amp;since_id=' in html
    assert f'id="signal-{ids["rsi-strong"]}"' in html
    assert f'id="signal-{ids["macd-strong-dot"]}"' not in html


def test_strategy_embed_template_loads_itself_when_included(app):
    from types import SimpleNamespace

    from flask import render_template_string

    with app.test_request_context("/strategies/3"):
        html = render_template_string('{% include "signals/_strategy_signals.html" %}',
                                      strategy=SimpleNamespace(id=3))
    assert 'hx-get="/signals/?strategy_id=3&amp;embed=1"' in html
    assert 'hx-trigger="load"' in html


def test_signal_detail_page(auth, populated):
    from app.notifications.models import Notification, NotificationDelivery

    _, macd, ids = populated
    notification = Notification(kind="signal", priority="P1", signal_id=ids["macd-entry"],
                                strategy_id=macd.id, pair="DOT/USDT", title="MACD_DOT entry")
    db.session.add(notification)
    db.session.flush()
    db.session.add_all([
        NotificationDelivery(notification_id=notification.id, channel="feishu", status="sent",
                             idempotency_key="k1", attempts=1, sent_at=utcnow()),
        NotificationDelivery(notification_id=notification.id, channel="email", status="failed",
                             idempotency_key="k2", attempts=3, last_error="SMTP refused"),
    ])
    db.session.commit()
    html = auth.client.get(f"/signals/{ids['macd-entry']}").get_data(as_text=True)
    assert "MACD_DOT entry" in html
    assert "feishu" in html and "badge-sent" in html
    assert "email" in html and "badge-failed" in html and "SMTP refused" in html
    assert "&#34;enter_tag&#34;: &#34;=HYPERLINK(1) s=0.7&#34;" in html  # payload, escaped
    assert "badge-medium" in html and "P1" in html

    indicators = auth.client.get(f"/signals/{ids['rsi-strong']}").get_data(as_text=True)
    assert '<td class="mono">rsi</td><td class="num">21.4</td>' in indicators
    # the strategy message's JSON text is shown unpacked, not as one escaped string
    assert "&#34;kind&#34;: &#34;signal&#34;" in indicators and "unpacked" in indicators
    assert auth.client.get("/signals/999999").status_code == 404


def test_pages_escape_what_bots_send(auth, strategy, post_webhook):
    body = {"type": "strategy_msg", "msg": "<script>alert(1)</script>"}
    signal_id = post_webhook(strategy, body).get_json()["id"]
    for url in ("/signals/", f"/signals/{signal_id}"):
        html = auth.client.get(url).get_data(as_text=True)
        assert "<script>alert(1)</script>" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_live_rows_follow_the_action_list():
    from app.signals.service import parse_filters

    filters = parse_filters({"action": "enter_long, exit_long,enter_long"})
    assert filters.raw["action"] == "enter_long,exit_long"  # trimmed, each once
    assert filters.matches({"action": "exit_long"})
    assert not filters.matches({"action": "status"})
    assert parse_filters({}).matches({"action": "status"})
