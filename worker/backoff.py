"""Retry policy: full-jitter exponential backoff (AWS "Exponential Backoff and Jitter").

delay = uniform(0, min(cap, base * 2 ** attempt)), attempt counting from 0.
Retry state lives on the job row (attempts, due_at), not in memory, because
the processes that retry are short-lived.
"""

import random
from dataclasses import dataclass
from typing import Optional

from common.errors import PlexNotFound


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


# Plex has not scanned the file yet: a library scan can take a while, so wait
# longer and more often: 12 retries, each wait drawn from 0 up to 30 s, 60 s,
# ... capped at 10 min, so at most ~85 min in all (~43 min on average).
NOT_FOUND = RetryPolicy(base=30.0, cap=600.0, max_retries=12)


def standard(max_retries: int) -> RetryPolicy:
    return RetryPolicy(base=5.0, cap=80.0, max_retries=max_retries)


def policy_for(error: BaseException, max_retries: int) -> RetryPolicy:
    return NOT_FOUND if isinstance(error, PlexNotFound) else standard(max_retries)
