"""Drive one stack's ticks through the runner engine and Redis, and report samples.

Run by :mod:`bench.longevity` in a process of its own, with ``PYTHONPATH`` pointing at
the code under test: the checkout's, or a worktree of an earlier commit (the baseline).
So it uses only what both versions have — the engine, the tick protocol's messages,
``publish_spec`` — and feature-tests the rest (consolidation ticks exist only in the
newer one). Arguments and output are JSON: one object per sample on stdout.

    python -m bench.longevity_driver '{"redis": URL, "ticks": N, "samples": [...], ...}'
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
import time
from typing import Any

from redis.asyncio import Redis

from agentstack_core import protocol
from agentstack_core.keys import StackKeys, StackRef
from agentstack_runner.engine import Engine
from agentstack_runner.llm.router import Router
from agentstack_runner.providers import ProviderRegistry

try:  # the layout since issue 21
    from agentstack_core.redis.publishing import publish_spec
except ImportError:  # the first version
    from agentstack_core.store import publish_spec  # type: ignore[no-redef]

STACK = StackRef("bench", "longevity")
WINDOW = 50
"""Ticks whose tokens are averaged into one sample."""


async def stack_bytes(client: Any) -> int:
    """Bytes Redis uses for every key of the stack (its index names them)."""
    keys = StackKeys(STACK)
    names = {keys.spec, keys.index, *await client.smembers(keys.index)}
    pipe = client.pipeline(transaction=False)
    for name in sorted(names):
        pipe.memory_usage(name, samples=0)
    return sum(int(size or 0) for size in await pipe.execute())


def sleep_request(slot: int) -> Any:
    """A consolidation tick (``None`` where the version has none)."""
    kind = getattr(protocol, "TickKind", None)
    if kind is None:
        return None
    return dataclasses.replace(
        tick(slot), kind=kind.SLEEP, tick_id=protocol.sleep_tick_id(STACK, slot)
    )


def tick(slot: int) -> Any:
    return protocol.TickRequest(
        stack=STACK,
        generation=1,
        tick_id=protocol.tick_id(STACK, slot),
        slot=slot,
        deadline=time.time() + 3600,
    )


async def drive(settings: dict[str, Any]) -> None:
    client = Redis.from_url(settings["redis"], decode_responses=True)
    await publish_spec(client, STACK, 1, settings["spec"])
    engine = Engine(client=client, registry=ProviderRegistry(), router=Router(), runner_id="bench")
    every = int(settings.get("consolidate_every") or 0)
    samples = set(settings["samples"])
    recent: list[int] = []
    work = sleep = 0
    started = time.monotonic()
    for slot in range(1, settings["ticks"] + 1):
        result = (await engine.execute(tick(slot))).result
        tokens = result.tokens if result is not None else 0
        work += tokens
        recent = [*recent[-(WINDOW - 1) :], tokens]
        attempt = 0
        request = sleep_request(slot * 100) if every and slot % every == 0 else None
        while request is not None:  # as the operator does: again while it is behind
            slept = (await engine.execute(request)).result
            sleep += slept.tokens if slept is not None else 0
            attempt += 1
            behind = slept is not None and getattr(slept, "behind", False)
            request = sleep_request(slot * 100 + attempt) if behind and attempt < 100 else None
        if slot in samples:
            sample = {
                "tick": slot,
                "tokens_per_tick": sum(recent) / len(recent),
                "bytes": await stack_bytes(client),
                "consolidation_share": sleep / max(1, work + sleep),
                "seconds": time.monotonic() - started,
                "outcome": result.outcome.value if result is not None else "",
                "progressed": bool(result and result.progressed),
            }
            print(json.dumps(sample), flush=True)
    await engine.registry.close()
    await client.aclose()


if __name__ == "__main__":
    asyncio.run(drive(json.loads(sys.argv[1])))
