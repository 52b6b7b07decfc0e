"""What checkpoints cost per tick, and how long a fork and a rollback take.

Run from the repository root::

    .venv/bin/python -m bench.checkpoints            # 1,000 ticks per arm; archive 10,000
    .venv/bin/python -m bench.checkpoints --quick    # 200 ticks; archive 2,000

One stack's ticks go through the real runner engine and a real ``redis-server`` (the
offline scripted team; no operator), in two arms of the same command, alternating in
blocks so the machine's load falls on both alike:

- **checkpoints** — as shipped: every tick's finish keeps the state it leaves;
- **none** — the same finish told to keep none (the baseline).

Per arm: the runner's CPU per tick (``time.process_time`` of this process, which runs
the engine), Redis's CPU per tick (``INFO cpu`` of the server, user + system), and the
bytes a checkpoint holds (the mean state size, and what the stack's checkpoints add up
to at the end, within their bound).

Then a source whose archive holds the stated number of items (inputs, each indexed) is
forked — the seed script given its newest checkpoint, timed (the API adds its
Kubernetes calls) — and rolled back to its first checkpoint, timed. Absolute figures
depend on the machine; ``bench/RESULTS.md`` records them with the command.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis

from agentstack_core import protocol
from agentstack_core.keys import StackKeys, StackRef
from agentstack_core.redis.checkpoints import Checkpoints, CheckpointState, RolledBack, seed
from agentstack_core.redis.inputs import send_input
from agentstack_core.redis.publishing import publish_spec
from agentstack_core.redis.tick import TickStore
from agentstack_devkit.redisserver import RedisServer
from agentstack_runner.engine import Engine
from agentstack_runner.llm.router import Router
from agentstack_runner.providers import ProviderRegistry
from bench.operator_scale import bench_main

SPEC = {"goal": "Write a guide to Redis streams"}
BLOCK = 50
"""Ticks an arm runs before the other takes its turn."""


def request(stack: StackRef, slot: int) -> Any:
    return protocol.TickRequest(
        stack=stack,
        generation=1,
        tick_id=protocol.tick_id(stack, slot),
        slot=slot,
        deadline=time.time() + 3600,
    )


async def redis_cpu(client: Any) -> float:
    info = await client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


class Arm:
    """One stack ticking with checkpoints kept or not."""

    def __init__(self, client: Any, name: str, keep: bool) -> None:
        self.client, self.keep = client, keep
        self.stack = StackRef("bench", name)
        self.engine = Engine(
            client=client, registry=ProviderRegistry(), router=Router(), runner_id=name
        )
        self.slot = 0
        self.runner_cpu = self.redis_cpu = 0.0

    async def block(self, ticks: int) -> None:
        original = TickStore.finish_tick
        keep = self.keep

        async def finish(store: TickStore, **kwargs: Any) -> Any:
            if not keep:
                kwargs["agents"] = ()
            return await original(store, **kwargs)

        TickStore.finish_tick = finish  # type: ignore[method-assign]
        try:
            cpu, server = time.process_time(), await redis_cpu(self.client)
            for _ in range(ticks):
                self.slot += 1
                result = (await self.engine.execute(request(self.stack, self.slot))).result
                if result is None or result.steps == 0:
                    raise RuntimeError(f"tick {self.slot} of {self.stack} ran nothing")
            self.runner_cpu += time.process_time() - cpu
            self.redis_cpu += await redis_cpu(self.client) - server
        finally:
            TickStore.finish_tick = original  # type: ignore[method-assign]


async def ticks(url: str, count: int) -> dict[str, dict[str, float]]:
    client = Redis.from_url(url, decode_responses=True)
    arms = [Arm(client, "checkpoints", True), Arm(client, "none", False)]
    for arm in arms:
        await publish_spec(client, arm.stack, 1, SPEC)
    done = 0
    while done < count:
        step = min(BLOCK, count - done)
        for arm in arms:
            await arm.block(step)
        done += step
    figures = {}
    for arm in arms:
        kept = await Checkpoints(client, arm.stack).listing()
        total = int(await client.hget(StackKeys(arm.stack).checkpoint_states, "bytes") or 0)
        figures[arm.stack.name] = {
            "runner_ms": 1000 * arm.runner_cpu / count,
            "redis_ms": 1000 * arm.redis_cpu / count,
            "mean_bytes": statistics.fmean(c.bytes for c in kept) if kept else 0.0,
            "kept": float(len(kept)),
            "total_bytes": float(total),
        }
    await client.aclose()
    return figures


async def fork_and_rollback(url: str, archived: int) -> dict[str, float]:
    client = Redis.from_url(url, decode_responses=True)
    source = StackRef("bench", "source")
    await publish_spec(client, source, 1, SPEC)
    engine = Engine(client=client, registry=ProviderRegistry(), router=Router(), runner_id="b")
    for slot in range(1, 21):
        await engine.execute(request(source, slot))
    for number in range(archived):
        await send_input(
            client,
            source,
            agent="planner",
            sender="bench",
            content=f"input {number}: status of the streams guide, section {number % 40}",
            per_minute=10**9,
        )
    await engine.execute(request(source, 21))
    archive = await client.xlen(StackKeys(source).archive)
    checkpoints = Checkpoints(client, source)
    newest = await checkpoints.newest()
    assert newest is not None
    forks = []
    for n in range(10):
        fork = StackRef("bench", f"fork-{n}")
        await publish_spec(client, fork, 1, {**SPEC, "executionState": "Paused"}, uid=f"u{n}")
        started = time.perf_counter()
        raw = await checkpoints.raw(newest)
        assert raw is not None
        refused = await seed(
            client, fork, f"u{n}", CheckpointState.from_json(raw), raw, "b", source
        )
        forks.append(time.perf_counter() - started)
        assert refused is None, refused
    await publish_spec(client, source, 2, {**SPEC, "executionState": "Paused"})
    first = (await checkpoints.listing())[0].tick_id
    rollbacks = []
    for _ in range(10):
        started = time.perf_counter()
        done = await checkpoints.rollback(first, "bench")
        rollbacks.append(time.perf_counter() - started)
        assert isinstance(done, RolledBack), done
    await client.aclose()
    return {
        "archive": float(archive),
        "fork_ms": 1000 * statistics.median(forks),
        "fork_max_ms": 1000 * max(forks),
        "rollback_ms": 1000 * statistics.median(rollbacks),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run (a minute)")
    args = parser.parse_args(argv)
    count, archived = (200, 2000) if args.quick else (1000, 10_000)

    def measure() -> str:
        with RedisServer() as server:
            print(f"checkpoints: {count} ticks per arm", file=sys.stderr)
            arms = asyncio.run(ticks(server.url, count))
            print(f"checkpoints: a fork of a source with {archived} inputs", file=sys.stderr)
            timed = asyncio.run(fork_and_rollback(server.url, archived))
        on, off = arms["checkpoints"], arms["none"]
        lines = [
            f"{count} ticks per arm (scripted team), alternating blocks of {BLOCK}",
            "",
            "| arm | runner CPU/tick | Redis CPU/tick | checkpoint (mean) | kept | kept bytes |",
            "|---|---|---|---|---|---|",
        ]
        for name, arm in arms.items():
            lines.append(
                f"| {name} | {arm['runner_ms']:.2f} ms | {arm['redis_ms']:.3f} ms "
                f"| {arm['mean_bytes']:,.0f} B | {arm['kept']:.0f} | {arm['total_bytes']:,.0f} B |"
            )
        lines += [
            "",
            f"checkpoints vs none: runner CPU {on['runner_ms'] / off['runner_ms']:.2f}x, "
            f"Redis CPU {on['redis_ms'] / off['redis_ms']:.2f}x",
            f"fork of a source with {timed['archive']:,.0f} archive items: seed "
            f"{timed['fork_ms']:.1f} ms median, {timed['fork_max_ms']:.1f} ms max (10 forks); "
            f"rollback {timed['rollback_ms']:.1f} ms median (10)",
        ]
        return "\n".join(lines)

    return bench_main(measure)


if __name__ == "__main__":
    raise SystemExit(main())
