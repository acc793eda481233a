"""Out-of-range and malformed input at every route is a 4xx naming the problem, never a 5xx."""

from __future__ import annotations

import re

import pytest

# Values that have broken routes before: past 64 bits, past year 9999, not finite, odd text.
EXTREMES = ["99999999999999999999999", "-9223372036854775809", "1e400", "nan",
            "99999-01-01T00:00:00", "\u0661\u0660", "x" * 300, "'\"<>"]
# Their answer is the system's health: 503 is the truth when no RQ worker runs in the test.
HEALTH = ("/health", "/api/v1/system/health")
QUERY_NAMES = ["limit", "before", "before_id", "since", "since_id", "until", "from", "to",
               "hours", "days", "minutes", "page", "strategy_id", "level", "action", "pair",
               "status", "wait", "format", "unread", "channel", "priority", "type", "q",
               "host", "horizon", "sort", "offset", "id", "date"]
JSON_BODIES = [{"threshold": 1e308}, {"name": "x" * 300, "pairs": ["A/B"] * 200},
               {"strong_threshold": 1e308, "medium_threshold": -1e308},
               {"max_open_trades": 10**30, "dry_run_wallet": 1e308},
               {"deep": [[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]}, [1, 2], "text", None]


def _urls(app) -> list[tuple[str, str]]:
    """(method, url) for every route, with each path parameter set to each extreme value."""
    found = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or getattr(rule, "websocket", False):
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            names = re.findall(r"<(?:[^:<>]+:)?([^<>]+)>", rule.rule)
            values = EXTREMES if names else [""]
            for value in values:
                url = re.sub(r"<(?:[^:<>]+:)?[^<>]+>", value, rule.rule)
                found.append((method, url))
    return found


@pytest.mark.parametrize("path_kind", ["path", "query", "body"])
def test_no_route_answers_5xx_to_extreme_input(app, auth, client, path_kind):
    token = auth.csrf()
    headers = {"X-CSRFToken": token}
    failures = []
    for method, url in _urls(app):
        if url in ("/logout", *HEALTH):
            continue
        if path_kind == "query":
            if method != "GET":
                continue
            for value in EXTREMES:
                query = "&".join(f"{name}={value}" for name in QUERY_NAMES)
                response = client.open(f"{url}?{query}", method=method, headers=headers)
                if response.status_code >= 500:
                    failures.append((method, url, query[:80], response.status_code))
        elif path_kind == "body":
            if method == "GET":
                continue
            for body in JSON_BODIES:
                response = client.open(url, method=method, json=body, headers=headers)
                if response.status_code >= 500:
                    failures.append((method, url, str(body)[:80], response.status_code))
        else:
            response = client.open(url, method=method, headers=headers)
            if response.status_code >= 500:
                failures.append((method, url, "", response.status_code))
    assert not failures, "\n".join(map(str, failures[:40]))
