"""Backoff and crash window, with an injected clock."""

from __future__ import annotations

import pytest

from app.runtime.crash_policy import CrashDecision, CrashPolicy


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_backoff_doubles_and_the_sixth_crash_in_the_window_gives_up():
    clock = Clock()
    policy = CrashPolicy(max_crashes=5, window_seconds=600, backoff_max=60, clock=clock)
    delays = []
    for _ in range(5):
        decision = policy.record_crash(7)
        assert not decision.give_up
        delays.append(decision.delay)
        clock.now += 30
    assert delays == [1, 2, 4, 8, 16]
    final = policy.record_crash(7)
    assert final.give_up and final.crashes_in_window == 6
    # Other strategies are not affected.
    assert policy.record_crash(8).delay == 1


def test_crashes_older_than_the_window_are_forgotten():
    clock = Clock()
    policy = CrashPolicy(max_crashes=5, window_seconds=600, clock=clock)
    for _ in range(5):
        policy.record_crash(1)
        clock.now += 10
    assert policy.crashes(1) == 5
    clock.now += 600  # all five are now older than ten minutes
    decision = policy.record_crash(1)
    assert (decision.give_up, decision.delay, decision.crashes_in_window) == (False, 1, 1)


def test_backoff_is_capped():
    clock = Clock()
    policy = CrashPolicy(max_crashes=100, window_seconds=10_000, backoff_max=60, clock=clock)
    delays = [policy.record_crash(1).delay for _ in range(9)]
    assert delays == [1, 2, 4, 8, 16, 32, 60, 60, 60]


def test_reset_and_reconfigure():
    clock = Clock()
    policy = CrashPolicy(max_crashes=1, window_seconds=600, clock=clock)
    policy.record_crash(3)
    assert policy.record_crash(3).give_up
    policy.reset(3)
    assert not policy.record_crash(3).give_up
    policy.configure(max_crashes=3, window_seconds=600, backoff_max=2)
    assert policy.record_crash(3) == CrashDecision(False, 2.0, 2)
    assert policy.backoff(10) == 2


def test_bad_limits_are_refused():
    with pytest.raises(ValueError):
        CrashPolicy(window_seconds=0)
