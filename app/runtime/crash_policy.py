"""When to restart a bot that died: exponential backoff and a crash window.

Crash n within the window is restarted after min(2**(n-1), backoff_max) seconds: 1, 2, 4, 8 …
capped at 60 s. More than `max_crashes` crashes within `window` seconds → give up (the strategy
becomes `crashed` and stays down until the owner starts it again). The clock is injectable so the
policy is tested without waiting.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class CrashDecision:
    """What to do after a crash: restart after `delay` seconds, or give up."""

    give_up: bool
    delay: float
    crashes_in_window: int


class CrashPolicy:
    """Per-strategy crash history, shared by the supervisor's threads."""

    def __init__(self, max_crashes: int = 5, window_seconds: float = 600.0,
                 backoff_max: float = 60.0, clock: Callable[[], float] = time.monotonic):
        if max_crashes < 0 or window_seconds <= 0 or backoff_max < 1:
            raise ValueError("max_crashes >= 0, window_seconds > 0 and backoff_max >= 1 needed")
        self.max_crashes = max_crashes
        self.window_seconds = window_seconds
        self.backoff_max = backoff_max
        self.clock = clock
        self._crashes: dict[int, deque[float]] = {}
        self._lock = threading.Lock()

    def configure(self, max_crashes: int, window_seconds: float, backoff_max: float) -> None:
        """Apply new limits (after a config reload); the history is kept."""
        with self._lock:
            self.max_crashes = max_crashes
            self.window_seconds = window_seconds
            self.backoff_max = backoff_max

    def _recent(self, strategy_id: int, now: float) -> deque[float]:
        history = self._crashes.setdefault(strategy_id, deque())
        while history and now - history[0] > self.window_seconds:
            history.popleft()
        return history

    def backoff(self, crashes: int) -> float:
        """Seconds to wait before restart number `crashes` (1 → 1 s, 2 → 2 s, … capped)."""
        return float(min(2 ** max(crashes - 1, 0), self.backoff_max))

    def record_crash(self, strategy_id: int) -> CrashDecision:
        """Note a crash now and decide: restart after a delay, or give up."""
        with self._lock:
            now = self.clock()
            history = self._recent(strategy_id, now)
            history.append(now)
            count = len(history)
            if count > self.max_crashes:
                return CrashDecision(True, 0.0, count)
            return CrashDecision(False, self.backoff(count), count)

    def crashes(self, strategy_id: int) -> int:
        """Crashes of this strategy within the window, now."""
        with self._lock:
            return len(self._recent(strategy_id, self.clock()))

    def reset(self, strategy_id: int) -> None:
        """Forget the history (the owner started or stopped the strategy on purpose)."""
        with self._lock:
            self._crashes.pop(strategy_id, None)
