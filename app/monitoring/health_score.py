"""The health score of one bot, 0-100, as the design computes it (SPEC §8).

Start at 100 and deduct:

- connection: 40 when the bot is unreachable, 30 when it answered with an error, 20 for any
  other state that is not healthy (a timeout, say);
- response time of its API: 20 over 5 s, 10 over 2 s, 5 over 1 s;
- 20 when the bot reports a state other than `running` (stopped or paused by its API);
- 20 when it has not processed for 5 minutes: FreqTrade's own loop (`/api/v1/health`
  last_process) is older than that, or the bot is stalled (no new candle within its stall
  window, see stall.py). It is one deduction, not two, when both are true.

The score never goes below 0. Every deduction is kept with its reason so pages can say why.
"""

from __future__ import annotations

from dataclasses import dataclass

CONNECTION_DEDUCTIONS = {"unreachable": 40, "error": 30}
OTHER_UNHEALTHY_DEDUCTION = 20
# (seconds, points): the first threshold the response time exceeds applies.
RESPONSE_TIME_DEDUCTIONS = ((5.0, 20), (2.0, 10), (1.0, 5))
STATE_DEDUCTION = 20
NOT_PROCESSING_DEDUCTION = 20
NOT_PROCESSING_AFTER = 300.0  # seconds


@dataclass(frozen=True)
class Deduction:
    """Points taken off the score and why."""

    reason: str
    points: int


@dataclass(frozen=True)
class HealthScore:
    """A bot's score and the deductions that made it."""

    value: int
    deductions: tuple[Deduction, ...] = ()

    def as_dict(self) -> dict:
        """JSON-ready form."""
        return {"health_score": self.value,
                "deductions": [{"reason": d.reason, "points": d.points} for d in self.deductions]}


def health_score(status: str, response_time: float | None = None, state: str | None = None,
                 last_process_age: float | None = None, stalled: bool = False) -> HealthScore:
    """Score one bot from what a status probe saw.

    status: healthy | unreachable | error | any other word (timeout, …);
    response_time: seconds the bot took to answer (None when it did not answer);
    state: the bot's own state from show_config (None when unknown);
    last_process_age: seconds since FreqTrade's loop last ran (None when unknown);
    stalled: the bot sees no new candles (stall.py decides).
    """
    deductions: list[Deduction] = []
    if status != "healthy":
        points = CONNECTION_DEDUCTIONS.get(status, OTHER_UNHEALTHY_DEDUCTION)
        deductions.append(Deduction(f"bot {status}", points))
    if response_time is not None:
        for seconds, points in RESPONSE_TIME_DEDUCTIONS:
            if response_time > seconds:
                deductions.append(Deduction(
                    f"response time {response_time:.2f} s is over {seconds:g} s", points))
                break
    if state is not None and state != "running":
        deductions.append(Deduction(f"bot state is {state}", STATE_DEDUCTION))
    idle_loop = last_process_age is not None and last_process_age > NOT_PROCESSING_AFTER
    if idle_loop or stalled:
        reason = (f"not processed for {last_process_age / 60:.0f} min" if idle_loop
                  else "stalled: no new candle")
        deductions.append(Deduction(reason, NOT_PROCESSING_DEDUCTION))
    value = max(0, 100 - sum(d.points for d in deductions))
    return HealthScore(value, tuple(deductions))
