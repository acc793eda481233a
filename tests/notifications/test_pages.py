"""History, detail, inbox, bell and JSON API."""

from __future__ import annotations

import re

from app.extensions import db
from app.notifications import service
from app.notifications.models import DeliveryAttempt
from tests.notifications.conftest import INBOX, FakeClock, http_channel, local


def _seed(make_signal, configure, http_receiver):
    configure(channels={"inbox": INBOX,
                        "sms": http_channel("sms_gateway", http_receiver,
                                            url=f"{http_receiver.url}/sms"),
                        "feishu": http_channel("feishu", http_receiver)})
    clock = FakeClock(local("2026-01-05 23:00"))
    night = service.notify_signal(make_signal("BTC/USDT", "P0").id, clock=clock)
    clock = FakeClock(local("2026-01-06 10:00"))
    day = service.notify_signal(make_signal("ETH/USDT", "P1").id, clock=clock)
    return night, day


def test_history_page_lists_and_filters(auth, client, make_signal, configure, http_receiver):
    night, day = _seed(make_signal, configure, http_receiver)
    page = client.get("/notifications/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert night.title in html and day.title in html
    assert 'hx-trigger="every 10s"' in html, "the first page refreshes itself"
    only_suppressed = client.get("/notifications/?status=suppressed",
                                 headers={"HX-Request": "true"})
    fragment = only_suppressed.get_data(as_text=True)
    assert fragment.lstrip().startswith("<section id=\"notification-history\"")
    assert night.title in fragment and day.title not in fragment
    assert day.title in client.get("/notifications/?priority=P1").get_data(as_text=True)
    # since is in the owner's time zone on the page
    later = client.get("/notifications/?since=2026-01-06T09:00").get_data(as_text=True)
    assert day.title in later and night.title not in later


def test_history_page_bad_filter_is_400_with_the_parameter(auth, client):
    response = client.get("/notifications/?status=lost")
    assert response.status_code == 400
    assert "status must be one of queued, sent, failed, suppressed, batched" in \
        response.get_data(as_text=True)


def test_history_keyset_pagination(auth, client, configure, make_signal, monkeypatch):
    from app.notifications import routes

    configure(channels={"inbox": INBOX})
    monkeypatch.setattr(routes, "PAGE_SIZE", 2)
    made = [service.notify_signal(make_signal(f"P{i}/USDT", "P1").id) for i in range(5)]
    first = client.get("/notifications/").get_data(as_text=True)
    assert made[4].title in first and made[3].title in first and made[2].title not in first
    older = re.search(r'href="(/notifications/\?before=\d+)"', first).group(1)
    second = client.get(older).get_data(as_text=True)
    assert made[2].title in second and made[1].title in second and made[4].title not in second


def test_detail_shows_message_and_every_attempt(auth, client, make_signal, configure,
                                                http_receiver):
    from app.notifications import dispatcher

    night, _ = _seed(make_signal, configure, http_receiver)
    http_receiver.reply(500, "oops", {"Content-Type": "text/plain"})
    clock = FakeClock(local("2026-01-05 23:00"))
    sms = next(d for d in night.deliveries if d.channel == "sms")
    dispatcher.deliver(sms.id, clock=clock)
    clock.advance(60)
    dispatcher.deliver(sms.id, clock=clock)
    html = client.get(f"/notifications/{night.id}").get_data(as_text=True)
    assert night.body.splitlines()[0] in html
    assert "HTTP 500" in html and "rest hours" in html
    assert html.count("attempts-of-") == 1
    assert db.session.query(DeliveryAttempt).count() == 2
    assert client.get("/notifications/999999").status_code == 404


def test_resend_queues_a_failed_delivery_again(auth, client, make_signal, configure,
                                               http_receiver):
    night, _ = _seed(make_signal, configure, http_receiver)
    feishu = next(d for d in night.deliveries if d.channel == "feishu")
    headers = {"X-CSRFToken": auth.csrf(), "HX-Request": "true"}
    response = client.post(f"/notifications/deliveries/{feishu.id}/resend", headers=headers)
    assert response.status_code == 200
    db.session.refresh(feishu)
    assert feishu.status == "queued" and "sent again by hand" in feishu.reason
    again = client.post(f"/notifications/deliveries/{feishu.id}/resend", headers=headers)
    assert again.status_code == 409


def test_api_lists_with_the_same_filters(client, api_token, make_signal, configure,
                                         http_receiver):
    night, day = _seed(make_signal, configure, http_receiver)
    headers = {"Authorization": f"Bearer {api_token}"}
    body = client.get("/api/v1/notifications", headers=headers).get_json()
    assert [n["id"] for n in body["items"]] == [day.id, night.id]
    assert body["items"][0]["deliveries"][0]["channel"] == "inbox"
    body = client.get("/api/v1/notifications?channel=feishu&status=suppressed",
                      headers=headers).get_json()
    assert [n["id"] for n in body["items"]] == [night.id]
    body = client.get("/api/v1/notifications?until=2026-01-05T16:00:00Z",
                      headers=headers).get_json()
    assert [n["id"] for n in body["items"]] == [night.id]
    body = client.get("/api/v1/notifications?limit=1", headers=headers).get_json()
    assert len(body["items"]) == 1 and body["next_before"] == day.id
    page2 = client.get(f"/api/v1/notifications?limit=1&before={body['next_before']}",
                       headers=headers).get_json()
    assert [n["id"] for n in page2["items"]] == [night.id] and page2["next_before"] is None
    detail = client.get(f"/api/v1/notifications/{night.id}", headers=headers).get_json()
    assert "attempt_log" in detail["deliveries"][0]


def test_api_bad_values_are_400_naming_the_parameter(client, api_token):
    headers = {"Authorization": f"Bearer {api_token}"}
    for query, param in [("status=nope", "status"), ("priority=P9", "priority"),
                         ("since=yesterday", "since"), ("limit=0", "limit"),
                         ("limit=500", "limit"), ("before=-3", "before"),
                         ("channel=Bad Name", "channel"), ("kind=sms", "kind"),
                         ("since=2026-02-01&until=2026-01-01", "until")]:
        response = client.get(f"/api/v1/notifications?{query}", headers=headers)
        assert response.status_code == 400, query
        body = response.get_json()
        assert body["param"] == param and param in body["message"], query


def test_api_needs_login(client):
    assert client.get("/api/v1/notifications").status_code == 401


def test_inbox_bell_and_mark_read(auth, client, make_signal, configure, http_receiver):
    night, day = _seed(make_signal, configure, http_receiver)
    page = client.get("/notifications/inbox").get_data(as_text=True)
    assert '<span id="inbox-count"' in page and ">2</span>" in page
    assert night.title in page and day.title in page and "2 unread" in page
    bell = client.get("/notifications/inbox/count").get_data(as_text=True)
    assert 'hx-trigger="every 15s"' in bell and ">2</span>" in bell
    entry = next(d for d in day.deliveries if d.channel == "inbox")
    headers = {"X-CSRFToken": auth.csrf(), "HX-Request": "true"}
    response = client.post("/notifications/inbox/read", data={"id": entry.id},
                           headers=headers).get_data(as_text=True)
    assert 'hx-swap-oob="true"' in response and ">1</span>" in response
    assert service.unread_count() == 1
    client.post("/notifications/inbox/read", data={"all": "1"}, headers=headers)
    assert service.unread_count() == 0
    bell = client.get("/notifications/inbox/count").get_data(as_text=True)
    assert re.search(r'aria-live="polite">\s*</span>', bell)
    api = client.get("/api/v1/notifications/inbox/unread").get_json()
    assert api == {"unread": 0}


def test_every_page_shows_the_bell_count(auth, client, configure, make_signal):
    configure(channels={})
    service.notify_signal(make_signal("BTC/USDT", "P0").id)
    html = client.get("/notifications/settings").get_data(as_text=True)
    assert re.search(r'<span id="inbox-count"[^>]*>1</span>', html.replace("\n", " "))
