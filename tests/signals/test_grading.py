"""Grading: a strength against a strategy's thresholds gives a level and a priority."""

import pytest

from app.signals.grading import Thresholds, grade

THRESHOLDS = Thresholds(strong=0.8, medium=0.6, weak=0.4)


@pytest.mark.parametrize(("strength", "level", "priority"), [
    (1.0, "strong", "P0"),
    (0.8, "strong", "P0"),          # the threshold itself counts (>=)
    (0.7999, "medium", "P1"),
    (0.6, "medium", "P1"),
    (0.5999, "weak", "P2"),
    (0.4, "weak", "P2"),
    (0.3999, "ignore", "IGNORE"),
    (0.0, "ignore", "IGNORE"),
    (-1.0, "ignore", "IGNORE"),
    (None, "ignore", "IGNORE"),     # no strength reported
    (1.7, "strong", "P0"),          # out of the documented 0..1 scale, still graded
])
def test_grade_levels(strength, level, priority):
    result = grade(strength, THRESHOLDS)
    assert (result.level, result.priority) == (level, priority)
    assert result.notified == (level != "ignore")


def test_grade_uses_the_given_thresholds():
    strict = Thresholds(strong=0.95, medium=0.9, weak=0.85)
    assert grade(0.83, THRESHOLDS).level == "strong"
    assert grade(0.83, strict).level == "ignore"
    assert grade(0.9, strict).level == "medium"
