"""Retry schedules: full-jitter exponential backoff (AWS "Exponential Backoff and Jitter").

delay = uniform(0, min(cap, base * 2 ** attempt)), attempt counting from 0.
Retry state lives on the job row (attempts, due_at), not in memory, because
the processes that retry are short-lived. Which error uses which schedule is
decided in worker.policy.
"""

import random
from dataclasses import dataclass
from typing import Optional

from common import defaults


@dataclass(frozen=True)
class RetryPolicy:
    base: float
    cap: float
    max_retries: int

    def __post_init__(self) -> None:
        if self.base <= 0 or self.cap < self.base or self.max_retries < 1:
            raise ValueError(f"invalid retry policy {self}")

    def delay(self, attempt: int, rng: Optional[random.Random] = None) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based)."""
        ceiling = min(self.cap, self.base * (2 ** min(attempt, 32)))
        return (rng or random).uniform(0, ceiling)

    def exhausted(self, attempts: int) -> bool:
        """True when ``attempts`` failed attempts used up the retries."""
        return attempts > self.max_retries


NOT_FOUND = RetryPolicy(base=defaults.NOT_FOUND_RETRY_BASE, cap=defaults.NOT_FOUND_RETRY_CAP,
                        max_retries=defaults.NOT_FOUND_RETRIES)


def standard(max_retries: int) -> RetryPolicy:
    return RetryPolicy(base=defaults.PLEX_RETRY_BASE, cap=defaults.PLEX_RETRY_CAP, max_retries=max_retries)
