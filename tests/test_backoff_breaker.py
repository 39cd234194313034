"""Pure policy: full-jitter backoff and the persisted circuit breaker."""

import random

import pytest

from common.errors import PlexNotFound, PlexUnavailable
from worker import backoff, policy
from worker.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker


def test_full_jitter_bounds_and_cap():
    policy = backoff.standard(5)
    rng = random.Random(1)
    for attempt, ceiling in [(0, 5), (1, 10), (2, 20), (3, 40), (4, 80), (5, 80), (30, 80)]:
        samples = [policy.delay(attempt, rng) for _ in range(2000)]
        assert 0 <= min(samples) and max(samples) <= ceiling
        assert max(samples) > ceiling * 0.9  # really spread up to the ceiling
        assert abs(sum(samples) / len(samples) - ceiling / 2) < ceiling * 0.06


def test_not_found_policy_is_long_and_separate():
    assert policy.rule_for(PlexNotFound("x")).retry_policy(5) is backoff.NOT_FOUND
    assert backoff.NOT_FOUND.max_retries == 12 and backoff.NOT_FOUND.cap == 600
    assert policy.rule_for(PlexUnavailable("x")).retry_policy(3).max_retries == 3
    assert not backoff.NOT_FOUND.exhausted(12) and backoff.NOT_FOUND.exhausted(13)


def test_invalid_policy_rejected():
    with pytest.raises(ValueError):
        backoff.RetryPolicy(base=0, cap=1, max_retries=1)


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_breaker_opens_half_opens_and_is_shared(tmp_path):
    clock = Clock()
    db = tmp_path / "b.db"
    b = CircuitBreaker(db, threshold=5, recovery=60, clock=clock)
    for _ in range(4):
        assert b.record_failure() is False
    assert b.allow()
    assert b.record_failure() is True
    other = CircuitBreaker(db, threshold=5, recovery=60, clock=clock)  # another process
    assert other.status()["state"] == OPEN and not other.allow()
    clock.now += 61
    assert other.status()["state_effective"] == HALF_OPEN
    assert other.allow()          # the one trial
    assert not b.allow()          # nobody else while it runs
    other.record_failure()        # trial failed: open again
    assert b.status()["state"] == OPEN and not b.allow()
    clock.now += 61
    assert b.allow()
    b.record_success()
    assert other.status()["state"] == CLOSED and other.allow()


def test_success_resets_consecutive_count(tmp_path):
    b = CircuitBreaker(tmp_path / "b.db", threshold=3, recovery=60, clock=Clock())
    b.record_failure(); b.record_failure(); b.record_success()
    b.record_failure(); b.record_failure()
    assert b.status()["state"] == CLOSED
