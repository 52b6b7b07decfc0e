"""The fleet-wide concurrency limit of a provider, shared through Redis."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from agentstack_core.protocol import RedisClient
from agentstack_runner.llm.base import UnavailableError
from agentstack_runner.llm.resilience import ConcurrencyLimiter

pytestmark = pytest.mark.asyncio


async def test_no_more_than_the_limit_hold_a_slot_across_limiters(aredis: RedisClient) -> None:
    # Two limiters stand for two runner processes sharing one Redis.
    provider = f"groq-{uuid.uuid4().hex[:8]}"  # a key of its own: nothing else holds slots
    limiters = [ConcurrencyLimiter(aredis, provider, 2, poll=0.01) for _ in range(2)]
    inside = 0
    peak = 0
    release = asyncio.Event()
    full = asyncio.Event()
    finished = 0

    async def call(limiter: ConcurrencyLimiter) -> None:
        nonlocal inside, peak, finished
        async with limiter.slot(wait_seconds=10):
            inside += 1
            peak = max(peak, inside)
            if inside == 2:
                full.set()
            await release.wait()
            inside -= 1
        finished += 1

    calls = [asyncio.create_task(call(limiters[n % 2])) for n in range(6)]
    filled = asyncio.create_task(full.wait())
    # A call that fails early ends the wait with its own error, not a bare timeout.
    done, _ = await asyncio.wait([filled, *calls], timeout=30, return_when="FIRST_COMPLETED")
    for task in done - {filled}:
        task.result()
    assert filled in done
    assert finished == 0  # four calls are waiting for a slot, none got past the limit
    release.set()
    await asyncio.gather(*calls)
    assert peak == 2
    assert finished == 6


async def test_a_full_provider_is_reported_unavailable_after_the_wait(
    aredis: RedisClient,
) -> None:
    limiter = ConcurrencyLimiter(aredis, "openai", 1, poll=0.01)
    async with limiter.slot(wait_seconds=1):
        with pytest.raises(UnavailableError, match="all 1 fleet-wide call slots busy"):
            async with limiter.slot(wait_seconds=0.1):
                pass


async def test_a_slot_of_a_crashed_holder_expires(aredis: RedisClient) -> None:
    crashed = ConcurrencyLimiter(aredis, "groq", 1, slot_ttl=0.2, poll=0.01)
    holder = crashed.slot(wait_seconds=1)
    await holder.__aenter__()  # taken, and never given back: the process died ...
    for task in asyncio.all_tasks():
        if task.get_coro().__name__ == "_keep":  # type: ignore[union-attr]
            task.cancel()  # ... and with it, what kept confirming the slot
    survivor = ConcurrencyLimiter(aredis, "groq", 1, slot_ttl=0.2, poll=0.01)
    async with survivor.slot(wait_seconds=5):
        pass


async def test_a_live_holder_keeps_its_slot_however_long_its_call(aredis: RedisClient) -> None:
    """A call longer than the slot TTL (600 s are allowed) must not lose its slot."""
    # A TTL long enough that only a missed confirmation, not a loaded machine's late
    # one, can free the slot (it is confirmed every third of it).
    holder = ConcurrencyLimiter(aredis, "groq", 1, slot_ttl=0.6, poll=0.01)
    other = ConcurrencyLimiter(aredis, "groq", 1, slot_ttl=0.6, poll=0.01)
    async with holder.slot(wait_seconds=1):
        with pytest.raises(UnavailableError):  # five TTLs later, still held
            async with other.slot(wait_seconds=3.0):
                pass
