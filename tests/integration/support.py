"""Helpers of the runner tests: engines, published specs, tick requests."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from agentstack_core.keys import StackRef
from agentstack_core.protocol import RedisClient, TickRequest, tick_id
from agentstack_core.records import StepRecord
from agentstack_core.redis.publishing import publish_spec
from agentstack_core.redis.tick import TickStore, lease_token
from agentstack_devkit.fakellm import FakeLLMServer
from agentstack_runner.engine import Engine
from agentstack_runner.llm.resilience import RetryPolicy
from agentstack_runner.llm.router import Router
from agentstack_runner.providers import ProviderRegistry
from tests.helpers import eventually

FAST_RETRIES = RetryPolicy(max_attempts=2, base_delay=0.05, max_delay=0.1)


_ENGINES: list[Engine] = []


def make_engine(client: RedisClient, runner_id: str = "runner-a", **kwargs: Any) -> Engine:
    engine = Engine(
        client=client,
        registry=ProviderRegistry(),
        router=Router(policy=kwargs.pop("policy", FAST_RETRIES)),
        runner_id=runner_id,
        **kwargs,
    )
    _ENGINES.append(engine)
    return engine


async def close_engines() -> None:
    """Close the provider clients (HTTP sessions) of every engine made so far."""
    while _ENGINES:
        await _ENGINES.pop().registry.close()


STACK = StackRef("team", "demo")


async def publish(
    client: RedisClient, spec: dict[str, Any], generation: int = 1, stack: StackRef = STACK
) -> None:
    await publish_spec(client, stack, generation, spec)


def request(
    slot: int, *, generation: int = 1, stack: StackRef = STACK, deadline_in: float = 60.0
) -> TickRequest:
    return TickRequest(
        stack=stack,
        generation=generation,
        tick_id=tick_id(stack, slot),
        slot=slot,
        deadline=time.time() + deadline_in,
    )


def openai_spec(server: FakeLLMServer, **llm: Any) -> dict[str, Any]:
    """A default-team spec whose agents call the fake server through the openai SDK."""
    return {
        "goal": "Write a release note",
        "llm": {
            "model": {"provider": "openai", "name": "gpt-4o-mini"},
            "providers": {"openai": {"baseURL": server.openai_base_url}},
            **llm,
        },
    }


async def wait_for_call(server: FakeLLMServer, agent: str, timeout: float = 30) -> None:
    """Until ``agent``'s LLM call has reached the server (from async tests)."""

    def called() -> bool | None:
        return (
            True
            if any(r.headers.get("x-agentstack-agent") == agent for r in server.requests)
            else None
        )

    await asyncio.to_thread(eventually, called, f"the {agent}'s LLM call", timeout)


async def dump_all(client: RedisClient) -> str:
    """Every key and value in Redis as one string (to prove a secret is nowhere)."""
    parts: list[str] = []
    async for key in client.scan_iter(match="*"):
        kind = await client.type(key)
        if kind == "stream":
            value: object = await client.xrange(key)
        elif kind == "hash":
            value = await client.hgetall(key)
        elif kind == "zset":
            value = await client.zrange(key, 0, -1)
        elif kind == "list":
            value = await client.lrange(key, 0, -1)
        elif kind == "set":
            value = sorted(await client.smembers(key))
        else:
            value = await client.get(key)
        parts.append(f"{key}={value!r}")
    return "\n".join(parts)


async def commit_bill(
    client: RedisClient, stack: StackRef, at: float, *, model: str, cost: int, unpriced: int = 0
) -> None:
    """One step of ``stack`` at ``at`` (its own tick) that made 2 calls of ``model``
    using 1000 tokens, committed by the real commit script: what it adds to the
    stack's chargeback buckets."""
    await publish(client, {"goal": "g"}, stack=stack)
    store = TickStore(client, stack)
    tick = f"{stack}/{int(at)}"
    token = lease_token(tick, "runner-a", "n1")
    await store.begin(tick, token, ttl_seconds=30)
    record = StepRecord(
        agent="planner",
        role="planner",
        outcome="Succeeded",
        reason="Succeeded",
        model=model,
        tokens=1000,
        calls=2,
        cost=cost,
        unpriced=unpriced,
    )
    await store.commit_step(token=token, tick_id=tick, record=record, operations=[], at=at)
    await store.release_lease(token)
