"""Fleet-wide limits kept in Redis: the call slots of one LLM provider.

A slot is a member of a sorted set scored by the time its holder last confirmed it
(``agentstack_runner.llm.resilience.ConcurrencyLimiter`` holds and confirms them): a
holder that dies stops confirming, and its slot is free again once it is stale.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from agentstack_core.keys import FleetKeys
from agentstack_core.protocol import RedisClient
from agentstack_core.redis.script import LuaScript


@dataclass(frozen=True)
class _Acquire:
    stale_before: float
    limit: int
    now: float
    token: str


_ACQUIRE_SLOT = LuaScript(__file__, "acquire_slot", keys=("slots",), args=_Acquire)


async def acquire_slot(
    client: RedisClient, provider: str, token: str, *, limit: int, ttl: float
) -> bool:
    """Take one of ``provider``'s ``limit`` slots under ``token`` if one is free (slots
    unconfirmed for ``ttl`` seconds count as free)."""
    now = time.time()
    taken = await _ACQUIRE_SLOT(
        client,
        _Acquire(stale_before=now - ttl, limit=limit, now=now, token=token),
        slots=FleetKeys.llm_slots(provider),
    )
    return bool(taken == 1)


async def confirm_slot(client: RedisClient, provider: str, token: str) -> None:
    """Confirm a held slot (``XX``: a slot removed as stale is never added back)."""
    redis: Any = client  # see RedisClient: redis-py's annotations don't fit
    await redis.zadd(FleetKeys.llm_slots(provider), {token: time.time()}, xx=True)


async def release_slot(client: RedisClient, provider: str, token: str) -> None:
    redis: Any = client  # see RedisClient: redis-py's annotations don't fit
    await redis.zrem(FleetKeys.llm_slots(provider), token)
