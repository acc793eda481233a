"""Fixtures for the signals tests: strategies with known tokens, a webhook poster, counters."""

from __future__ import annotations

import json
import secrets
from types import SimpleNamespace

import pytest
from sqlalchemy import func, select


@pytest.fixture
def make_strategy(app):
    """Create a strategy row (no bot) with its own webhook token and thresholds."""
    from app.extensions import db
    from app.signals import ingest
    from app.strategies.models import Strategy

    created = []

    def _make(name: str | None = None, strong=0.8, medium=0.6, weak=0.4, **extra):
        strategy = Strategy(
            name=name or f"test-{secrets.token_hex(3)}", strategy_class="RSI_ETH",
            strategy_file="RSI_ETH.py", pairs=["ETH/USDT"], strong_threshold=strong,
            medium_threshold=medium, weak_threshold=weak, api_username="u",
            api_password=secrets.token_hex(8), jwt_secret=secrets.token_hex(32),
            ws_token=secrets.token_hex(8), webhook_token=secrets.token_urlsafe(24), **extra,
        )
        db.session.add(strategy)
        db.session.commit()
        created.append(strategy.id)
        # Plain values: ORM objects would expire and detach between requests.
        return SimpleNamespace(id=strategy.id, name=strategy.name,
                               webhook_token=strategy.webhook_token)

    yield _make
    ingest.forget_strategy()


@pytest.fixture
def strategy(make_strategy):
    return make_strategy("RSI_ETH demo")


@pytest.fixture
def post_webhook(client):
    """POST a webhook body (dict -> JSON, or raw bytes/str) for a strategy."""

    own = object()

    def _post(strategy, body, token=own, **kwargs):
        token = strategy.webhook_token if token is own else token
        url = f"/api/v1/signals/webhook/{strategy.id if hasattr(strategy, 'id') else strategy}"
        if token is not None:
            url += f"?token={token}"
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        return client.post(url, data=body, content_type="application/json", **kwargs)

    return _post


@pytest.fixture
def clean_outbox(app):
    """No Redis back-off or pending confirmations leak into or out of a test."""
    from app.signals import outbox

    outbox.resume_redis()
    yield
    outbox.confirmer().flush()
    outbox.resume_redis()


def notify_job_ids(url: str) -> list[str]:
    """The ids of the jobs waiting in the notifications queue (`signal-<id>`)."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        return [j.decode() for j in client.lrange("rq:queue:notifications", 0, -1)]
    finally:
        client.close()


@pytest.fixture
def signal_count(app):
    from app.extensions import db
    from app.signals.models import Signal

    def _count() -> int:
        db.session.rollback()
        return db.session.scalar(select(func.count()).select_from(Signal))

    return _count


def btcw_message(pair="ETH/USDT", action="enter_long", strength=0.83,
                 candle="2026-11-24T20:15:00+00:00", **extra) -> str:
    """The strategy message the btcw_signals mixin sends (JSON text)."""
    message = {
        "btcw": 1, "kind": "signal", "strategy": "RSI_ETH", "pair": pair, "action": action,
        "signal_strength": strength, "rate": 3391.5, "candle": candle, "timeframe": "1m",
        "enter_tag": "rsi_oversold", "indicators": {"rsi": 21.4},
    }
    message.update(extra)
    return json.dumps(message)


def strategy_msg(**kwargs) -> dict:
    """A strategy_msg webhook as FreqTrade posts it (the mixin's JSON in `msg`)."""
    return {"type": "strategy_msg", "msg": btcw_message(**kwargs)}


def entry_webhook(trade_id="7", pair="ETH/USDT", tag="rsi_oversold s=0.83", **extra) -> dict:
    """An entry webhook as FreqTrade formats it: every value a string."""
    body = {
        "type": "entry", "trade_id": trade_id, "pair": pair, "direction": "Long",
        "enter_tag": tag, "order_type": "limit", "order_rate": "3391.5",
        "open_rate": "3391.5", "current_rate": "3391.4", "amount": "0.0294",
        "stake_amount": "99.7", "stake_currency": "USDT",
        "open_date": "2026-11-24 20:15:03.123456+00:00", "sub_trade": "False",
    }
    body.update(extra)
    return body


@pytest.fixture(scope="module")
def live_web(_session_app, database_url, redis_server, config_dir, var_dir, tmp_path_factory):
    """The web app under gunicorn with two gevent workers on the test database and Redis."""
    from tests.signals.webserver import session_web

    server = session_web(database_url, redis_server.url, config_dir, var_dir,
                         tmp_path_factory.mktemp("live-web") / "gunicorn.log", workers=2)
    yield server
    server.stop()
