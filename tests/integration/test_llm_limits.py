"""The fleet-wide concurrency limit of a provider, shared through Redis.

Limiters in one test stand for runner processes sharing one Redis; a holder that
crashes is one: a separate process holding a slot, killed with SIGKILL. A slot is seen
where every runner sees it, in the provider's sorted set (``FleetKeys.llm_slots``).
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid

import pytest

from agentstack_core.keys import FleetKeys
from agentstack_core.protocol import RedisClient
from agentstack_runner.llm.base import UnavailableError
from agentstack_runner.llm.resilience import ConcurrencyLimiter
from tests.helpers import eventually_async
from tests.integration.conftest import RedisBackend

pytestmark = pytest.mark.asyncio

HOLDER = """
import asyncio, sys
from agentstack_core.connection import connect
from agentstack_runner.llm.resilience import ConcurrencyLimiter

async def hold(url, cluster, provider, slot_ttl):
    client = connect(url, cluster=cluster == "true")
    limiter = ConcurrencyLimiter(client, provider, 1, slot_ttl=float(slot_ttl), poll=0.01)
    async with limiter.slot(wait_seconds=30):
        print("holding", flush=True)
        await asyncio.Event().wait()

asyncio.run(hold(*sys.argv[1:]))
"""
"""A runner process in the middle of an LLM call: it holds one slot until it is killed."""


def _provider() -> str:
    """A provider name of its own: no other test holds its slots."""
    return f"groq-{uuid.uuid4().hex[:8]}"


async def _slots(aredis: RedisClient, provider: str) -> list[tuple[str, float]]:
    """The provider's slots: each holder's token and when it last confirmed it."""
    slots: list[tuple[str, float]] = await aredis.zrange(
        FleetKeys.llm_slots(provider), 0, -1, withscores=True
    )
    return slots


async def test_no_more_than_the_limit_hold_a_slot_across_limiters(aredis: RedisClient) -> None:
    # Two limiters stand for two runner processes sharing one Redis.
    provider = _provider()
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


async def test_a_slot_of_a_crashed_holder_expires(
    aredis: RedisClient, redis_backend: RedisBackend
) -> None:
    provider = _provider()
    holder = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        HOLDER,
        redis_backend.url,
        str(redis_backend.cluster).lower(),
        provider,
        "0.3",  # it confirms its slot every 0.1 s while it lives
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        assert await asyncio.wait_for(holder.stdout.readline(), 30) == b"holding\n"
        [(token, _)] = await _slots(aredis, provider)
        patient = ConcurrencyLimiter(aredis, provider, 1, slot_ttl=60, poll=0.01)
        with pytest.raises(UnavailableError):  # the live holder has it
            async with patient.slot(wait_seconds=0):
                pass
        holder.kill()  # SIGKILL: the slot is never given back, nor confirmed again
        await asyncio.wait_for(holder.wait(), 30)
    finally:
        if holder.returncode is None:
            holder.kill()
            await holder.wait()
    [(still, last_confirmed)] = await _slots(aredis, provider)
    assert still == token  # nothing gave it back
    survivor = ConcurrencyLimiter(aredis, provider, 1, slot_ttl=0.5, poll=0.01)
    async with survivor.slot(wait_seconds=30):
        taken_at = time.time()
        slots = await _slots(aredis, provider)
    assert [member for member, _ in slots] != [token]
    assert len(slots) == 1  # the survivor's, in place of the crashed holder's
    assert taken_at - last_confirmed >= 0.5  # freed by expiry: a slot TTL after its last sign


async def test_a_live_holder_keeps_its_slot_however_long_its_call(aredis: RedisClient) -> None:
    """A call longer than the slot TTL (600 s are allowed) must not lose its slot."""
    provider = _provider()
    # A TTL long enough that only a missed confirmation, not a loaded machine's late
    # one, can free the slot (it is confirmed every third of it).
    holder = ConcurrencyLimiter(aredis, provider, 1, slot_ttl=1.5, poll=0.01)
    other = ConcurrencyLimiter(aredis, provider, 1, slot_ttl=1.5, poll=0.01)
    async with holder.slot(wait_seconds=1):
        [(token, taken)] = await _slots(aredis, provider)
        confirmations = {taken}

        async def outlived_its_ttl() -> bool | None:
            [(member, confirmed)] = await _slots(aredis, provider)
            assert member == token  # the same slot all along, never taken from it
            confirmations.add(confirmed)
            return True if len(confirmations) > 4 and confirmed > taken + 1.5 else None

        await eventually_async(outlived_its_ttl, "the holder to confirm its slot past its TTL")
        with pytest.raises(UnavailableError):  # a TTL later, still held
            async with other.slot(wait_seconds=0):
                pass
