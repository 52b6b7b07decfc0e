"""Retries with back-off, a circuit breaker per provider, a fleet-wide concurrency limit.

- :class:`RetryPolicy` computes the wait before the next attempt: the provider's
  ``Retry-After`` when it gave one, else exponential back-off with full jitter (so a
  fleet of runners hit by the same outage does not retry in lock-step).
- :class:`CircuitBreaker` stops calling a provider that keeps failing: after
  ``threshold`` consecutive failures it opens for ``cooldown`` seconds, then lets one
  trial call through. A rate limit opens it for the ``Retry-After`` it was given, so
  the rest of this runner's ticks go straight to their fallback.
- :class:`ConcurrencyLimiter` caps in-flight calls to a provider across *all* runners
  with a Redis sorted set of slots its holders keep confirming (a holder that dies
  frees its slot within seconds).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from agentstack_core.protocol import RedisClient
from agentstack_core.redis.limits import acquire_slot, confirm_slot, release_slot
from agentstack_runner.llm.base import UnavailableError


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 3
    """Attempts per model before falling back to the next one."""
    base_delay: float = 0.5
    max_delay: float = 8.0
    max_retry_after: float = 10.0
    """A ``Retry-After`` longer than this is not waited for: fall back instead."""

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``; ``None`` means give up on it."""
        if attempt >= self.max_attempts:
            return None
        if retry_after is not None:
            return retry_after if retry_after <= self.max_retry_after else None
        ceiling = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        return rng.uniform(0, ceiling)


@dataclass(frozen=True, eq=False)
class Permit:
    """Leave to call a provider, from :meth:`CircuitBreaker.allow`.

    A trial permit (the one call a half-open breaker lets through) must end in
    :meth:`CircuitBreaker.record_success`, :meth:`~CircuitBreaker.record_failure` or
    :meth:`~CircuitBreaker.release` — callers release it in ``finally``, so a trial
    that was cancelled, rejected, or never reached the provider cannot keep the
    breaker half-open with its one trial slot taken forever.
    """

    trial: bool


_FREE = Permit(trial=False)


@dataclass
class CircuitBreaker:
    threshold: int = 5
    cooldown: float = 30.0
    clock: Callable[[], float] = time.monotonic
    _failures: int = 0
    _open_until: float = 0.0
    _trial: Permit | None = field(default=None, repr=False)

    @property
    def state(self) -> str:
        now = self.clock()
        if self._open_until > now:
            return "open"
        return "half-open" if self._failures >= self.threshold else "closed"

    def allow(self) -> Permit | None:
        """Leave to call now, or ``None`` (open, or half-open with its trial taken)."""
        state = self.state
        if state == "open":
            return None
        if state == "half-open":
            if self._trial is not None:
                return None
            self._trial = Permit(trial=True)
            return self._trial
        return _FREE

    def release(self, permit: Permit | None) -> None:
        """End ``permit`` without a verdict; frees the trial slot if it held it."""
        if permit is not None and permit is self._trial:
            self._trial = None

    def record_success(self) -> None:
        self._failures = 0
        self._open_until = 0.0
        self._trial = None

    def record_failure(self, open_for: float | None = None) -> None:
        self._trial = None
        self._failures += 1
        if open_for is not None:
            self._open_until = max(self._open_until, self.clock() + open_for)
        elif self._failures >= self.threshold:
            self._open_until = self.clock() + self.cooldown


class ConcurrencyLimiter:
    """At most ``limit`` concurrent calls to one provider across every runner.

    A slot is a member of a sorted set scored by the time its holder last confirmed it.
    The holder confirms it every third of ``slot_ttl`` while its call runs, however long
    the call takes; a holder that dies stops confirming, and its slot is free again
    within ``slot_ttl`` — so a crashed runner cannot starve the fleet of calls.
    """

    def __init__(
        self,
        client: RedisClient,
        provider: str,
        limit: int,
        *,
        slot_ttl: float = 15.0,
        poll: float = 0.05,
    ) -> None:
        self.client = client
        self.provider = provider
        self.limit = limit
        self.slot_ttl = slot_ttl
        self.poll = poll

    @asynccontextmanager
    async def slot(self, wait_seconds: float) -> AsyncIterator[None]:
        """Hold one slot for the duration of the block; wait at most ``wait_seconds``."""
        token = uuid.uuid4().hex
        deadline = time.monotonic() + wait_seconds
        while True:
            if await acquire_slot(
                self.client, self.provider, token, limit=self.limit, ttl=self.slot_ttl
            ):
                break
            if time.monotonic() >= deadline:
                raise UnavailableError(
                    f"{self.provider}: all {self.limit} fleet-wide call slots busy"
                )
            await asyncio.sleep(self.poll)
        keeper = asyncio.create_task(self._keep(token))
        try:
            yield
        finally:
            keeper.cancel()
            await release_slot(self.client, self.provider, token)

    async def _keep(self, token: str) -> None:
        """Confirm the slot while the call runs (``XX``: never re-add a removed one)."""
        while True:
            await asyncio.sleep(self.slot_ttl / 3)
            with contextlib.suppress(Exception):  # a Redis hiccup: the TTL has slack
                await confirm_slot(self.client, self.provider, token)
