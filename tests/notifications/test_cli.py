"""flask notifications … commands."""

from __future__ import annotations

from app.notifications import service
from tests.notifications.conftest import INBOX, http_channel


def test_channels_test_list_and_resend(runner, configure, http_receiver, make_signal):
    configure(channels={"inbox": INBOX, "hook": http_channel("webhook", http_receiver)})
    listing = runner.invoke(args=["notifications", "channels"])
    assert listing.exit_code == 0
    assert "hook" in listing.output and "own" in listing.output and "inbox" in listing.output

    sent = runner.invoke(args=["notifications", "test", "hook"])
    assert sent.exit_code == 0 and "sent" in sent.output
    assert http_receiver.requests[0].json["kind"] == "test"

    http_receiver.reply(500, "down")
    failed = runner.invoke(args=["notifications", "test", "hook"])
    assert failed.exit_code == 1 and "HTTP 500" in failed.output
    assert runner.invoke(args=["notifications", "test", "nope"]).exit_code == 1

    service.notify_signal(make_signal("BTC/USDT", "P0").id)
    out = runner.invoke(args=["notifications", "list", "--status", "failed"]).output
    assert "BTC Watcher test message" in out and "hook=failed" in out
    bad = runner.invoke(args=["notifications", "list", "--status", "lost"])
    assert bad.exit_code == 2 and "status must be one of" in bad.output

    delivery_id = service.history(service.HistoryFilters(status="failed"))[0][0].deliveries[0].id
    again = runner.invoke(args=["notifications", "resend", str(delivery_id)])
    assert again.exit_code == 0 and "queued again" in again.output
    assert runner.invoke(args=["notifications", "resend", str(delivery_id)]).exit_code == 1
