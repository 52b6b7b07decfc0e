"""Retry timing and the circuit breaker, on a fake clock."""

from __future__ import annotations

import random

from agentstack_runner.llm.resilience import CircuitBreaker, RetryPolicy
from tests.helpers import Clock


def test_retry_after_is_honoured_and_capped() -> None:
    policy = RetryPolicy(max_attempts=3, max_retry_after=5)
    rng = random.Random(1)
    assert policy.delay(1, retry_after=2.5, rng=rng) == 2.5
    assert policy.delay(1, retry_after=60, rng=rng) is None  # too long: fall back instead
    assert policy.delay(3, retry_after=1, rng=rng) is None  # attempts used up


def test_backoff_grows_with_jitter_within_bounds() -> None:
    policy = RetryPolicy(max_attempts=10, base_delay=0.5, max_delay=4)
    rng = random.Random(7)
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (8, 4.0)]:
        delays = [policy.delay(attempt, None, rng) for _ in range(200)]
        assert all(d is not None and 0 <= d <= ceiling for d in delays)
        assert max(d for d in delays if d is not None) > ceiling / 2  # really jittered up


def test_breaker_opens_after_threshold_and_half_opens_after_cooldown() -> None:
    clock = Clock(100.0)
    breaker = CircuitBreaker(threshold=3, cooldown=10, clock=clock)
    for _ in range(2):
        breaker.record_failure()
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.state == "open"
    assert not breaker.allow()
    clock.now += 10
    assert breaker.state == "half-open"
    assert breaker.allow()  # one trial
    assert not breaker.allow()  # and only one
    breaker.record_failure()
    assert breaker.state == "open"
    clock.now += 10
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state == "closed"
    assert breaker.allow()


def test_rate_limit_opens_for_retry_after_only() -> None:
    clock = Clock(100.0)
    breaker = CircuitBreaker(threshold=5, cooldown=30, clock=clock)
    breaker.record_failure(open_for=2)
    assert not breaker.allow()
    clock.now += 2
    assert breaker.state == "closed"
    assert breaker.allow()
