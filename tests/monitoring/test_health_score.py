"""The design's health score, one row per deduction (SPEC §8)."""

from __future__ import annotations

import pytest

from app.monitoring.health_score import health_score

CASES = [
    # (case, kwargs, expected score)
    ("healthy, fast, running, fresh", dict(status="healthy", response_time=0.05,
                                           state="running", last_process_age=3), 100),
    ("unreachable -40", dict(status="unreachable"), 60),
    ("error -30", dict(status="error", response_time=0.1), 70),
    ("timeout is other non-healthy -20", dict(status="timeout"), 80),
    ("unknown word is other non-healthy -20", dict(status="degraded"), 80),
    ("response exactly 1 s: no deduction", dict(status="healthy", response_time=1.0), 100),
    ("response over 1 s -5", dict(status="healthy", response_time=1.01), 95),
    ("response exactly 2 s -5", dict(status="healthy", response_time=2.0), 95),
    ("response over 2 s -10", dict(status="healthy", response_time=2.5), 90),
    ("response exactly 5 s -10", dict(status="healthy", response_time=5.0), 90),
    ("response over 5 s -20", dict(status="healthy", response_time=7.0), 80),
    ("state stopped -20", dict(status="healthy", response_time=0.1, state="stopped"), 80),
    ("state paused -20", dict(status="healthy", state="paused"), 80),
    ("state unknown: no deduction", dict(status="healthy", state=None), 100),
    ("loop idle exactly 300 s: no deduction", dict(status="healthy", last_process_age=300), 100),
    ("loop idle over 5 min -20", dict(status="healthy", last_process_age=301), 80),
    ("stalled -20", dict(status="healthy", state="running", stalled=True), 80),
    ("stalled and idle loop: one deduction", dict(status="healthy", last_process_age=900,
                                                  stalled=True), 80),
    ("timeout and slow -40", dict(status="timeout", response_time=6.0), 60),
    ("everything wrong stays at 0", dict(status="unreachable", response_time=9.0,
                                         state="stopped", last_process_age=999,
                                         stalled=True), 0),
    ("error, slow, stopped, idle -90", dict(status="error", response_time=5.5, state="stopped",
                                            last_process_age=600), 10),
]


@pytest.mark.parametrize(("case", "kwargs", "expected"), CASES, ids=[c[0] for c in CASES])
def test_health_score(case, kwargs, expected):
    score = health_score(**kwargs)
    assert score.value == expected, score.deductions
    assert score.value == max(0, 100 - sum(d.points for d in score.deductions))


def test_deductions_name_their_reason():
    score = health_score("error", response_time=2.5, state="stopped", last_process_age=400)
    reasons = [d.reason for d in score.deductions]
    assert reasons == ["bot error", "response time 2.50 s is over 2 s", "bot state is stopped",
                       "not processed for 7 min"]
    assert score.as_dict()["deductions"][0] == {"reason": "bot error", "points": 30}
