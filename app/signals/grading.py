"""Signal strength grading: a strength against a strategy's thresholds gives a level and a priority.

    strength >= strong  -> "strong" / P0
    strength >= medium  -> "medium" / P1
    strength >= weak    -> "weak"   / P2
    otherwise, or none  -> "ignore" / IGNORE

A signal is graded once, when it arrives, with the thresholds the strategy has at that moment;
changing the thresholds later applies to new signals only.
"""

from __future__ import annotations

from typing import NamedTuple

LEVELS = ("strong", "medium", "weak", "ignore")
PRIORITIES = ("P0", "P1", "P2", "IGNORE")
PRIORITY_OF = dict(zip(LEVELS, PRIORITIES, strict=True))
# Levels that are handed to notifications.
NOTIFIED_LEVELS = frozenset(("strong", "medium", "weak"))


class Thresholds(NamedTuple):
    """A strategy's strength thresholds, strong >= medium >= weak."""

    strong: float
    medium: float
    weak: float


class Grade(NamedTuple):
    """The outcome of grading one strength."""

    level: str
    priority: str

    @property
    def notified(self) -> bool:
        """True when this grade is handed to notifications (P0, P1 or P2)."""
        return self.level in NOTIFIED_LEVELS


IGNORE = Grade("ignore", "IGNORE")


def grade(strength: float | None, thresholds: Thresholds) -> Grade:
    """Grade a strength (None means the signal carried none) against the thresholds."""
    if strength is None:
        return IGNORE
    if strength >= thresholds.strong:
        return Grade("strong", "P0")
    if strength >= thresholds.medium:
        return Grade("medium", "P1")
    if strength >= thresholds.weak:
        return Grade("weak", "P2")
    return IGNORE
