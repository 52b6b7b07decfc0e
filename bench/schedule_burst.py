"""10,000 stacks on one cron minute: the dispatcher's lag, with and without jitter.

Why this shape:

- What a calendar adds to the operator is bursts: every stack on ``0 9 * * *`` falls
  due in the same millisecond. The part of the operator that meets the burst is the
  dispatcher — its timing heap, the batches it pops, the pipelined ``XADD`` of each
  batch to the tick lanes — so that is what runs here: the operator's own
  :class:`~agentstack_operator.index.StackIndex` and
  :class:`~agentstack_operator.dispatching.Dispatcher` (default configuration: batches
  of 500, 50 ms apart), in this process, on the real clock, sending to a real
  ``redis-server``. The stacks are real manifests (the index parses them as a watch
  event would); no API server is needed to hand them over, and no runner consumes the
  lanes (the runners' side of a burst is the queue they drain, measured elsewhere).
- Each run schedules every stack on the same cron minute ``M * * * *`` two minutes
  ahead, waits until every stack's tick of that fire is in Redis, and reads, for each
  tick, when the sink had sent it (``time.time()`` after its batch's pipeline
  returned). Lag is that minus the tick's due time — the fire, plus the stack's jitter.
  Spread is when the last tick of the fire reached Redis, minus the fire.
- The baseline runs in the same command: the same stacks without jitter, then with
  ``jitterSeconds`` (60 by default). The ratio row compares them.

Usage (from the repository root)::

    .venv/bin/python -m bench.schedule_burst                   # 10,000 stacks, ~5 min
    .venv/bin/python -m bench.schedule_burst --stacks 1000 --jitter 30

The Markdown table goes to stdout, progress to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis

from agentstack_core.kube.jobs import Job
from agentstack_core.protocol import TickRequest
from agentstack_devkit.redisserver import RedisServer
from agentstack_operator.config import OperatorConfig
from agentstack_operator.dispatching import Dispatcher, RedisLanes
from agentstack_operator.index import StackIndex

LEAD_SECONDS = 60
"""The fire is at least this far ahead when the stacks are scheduled."""


class TimedLanes(RedisLanes):
    """The operator's Redis lanes, noting when each request reached Redis."""

    def __init__(self, client: Any, expected: int) -> None:
        super().__init__(client)
        self.sent_at: dict[str, tuple[int, float]] = {}
        self.batches = 0
        self.expected = expected
        self.all_sent = asyncio.Event()
        """Set once every stack's tick of the fire is in Redis (one tick an hour each)."""

    async def send(self, requests: Sequence[TickRequest]) -> None:
        await super().send(requests)
        now = time.time()
        self.batches += 1
        for request in requests:
            self.sent_at[request.tick_id] = (request.slot, now)
        if len(self.sent_at) >= self.expected:
            self.all_sent.set()


def manifest(number: int, minute: int, jitter: int) -> dict[str, Any]:
    schedule: dict[str, Any] = {"cron": f"{minute} * * * *"}
    if jitter:
        schedule["jitterSeconds"] = jitter
    return {
        "metadata": {
            "namespace": f"ns-{number % 20}",
            "name": f"stack-{number}",
            "uid": f"00000000-0000-0000-0000-{number:012d}",
            "generation": 1,
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "spec": {"goal": f"goal {number}", "schedule": schedule},
    }


@dataclass(frozen=True)
class Run:
    stacks: int
    jitter: int
    fire: float
    lags: list[float]
    spread: float
    batches: int


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1)]


async def run_once(url: str, stacks: int, jitter: int) -> Run:
    client = aioredis.from_url(url)
    await client.flushall()
    lanes = TimedLanes(client, stacks)
    index = StackIndex()
    fire_at = (math.floor(time.time() / 60) + 2) * 60
    if fire_at - time.time() < LEAD_SECONDS:
        fire_at += 60
    minute = datetime.fromtimestamp(fire_at, UTC).minute
    for number in range(stacks):
        index.observe(manifest(number, minute, jitter))
    dispatcher = Dispatcher(index, lanes, _NoJobs(), OperatorConfig())
    for record in index.values():
        dispatcher.reschedule(record, "spec")
    print(
        f"  {stacks} stacks, jitter {jitter}s: fire at "
        f"{datetime.fromtimestamp(fire_at, UTC):%H:%M:%S}Z",
        file=sys.stderr,
    )

    async def loop() -> None:
        while True:
            await dispatcher.step()

    task = asyncio.create_task(loop())
    try:
        await lanes.all_sent.wait()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await client.aclose()
    sent = [(slot / 1000, at) for slot, at in lanes.sent_at.values()]
    return Run(
        stacks=stacks,
        jitter=jitter,
        fire=fire_at,
        lags=[at - due for due, at in sent],
        spread=max(at for _due, at in sent) - fire_at,
        batches=lanes.batches,
    )


class _NoJobs:
    async def create_job(self, namespace: str, body: dict[str, Any]) -> bool:
        raise AssertionError("pool stacks only")

    async def read_job(self, namespace: str, name: str) -> Job | None:
        return None


def table(runs: Sequence[Run]) -> str:
    lines = [
        "| stacks | jitterSeconds | lag p50 | lag p99 | lag max "
        "| last tick in Redis after the fire | batches |",
        "|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        lines.append(
            f"| {run.stacks:,} | {run.jitter} | {percentile(run.lags, 0.5) * 1000:.1f} ms "
            f"| {percentile(run.lags, 0.99) * 1000:.1f} ms | {max(run.lags) * 1000:.1f} ms "
            f"| {run.spread:.2f} s | {run.batches} |"
        )
    if len(runs) == 2 and percentile(runs[0].lags, 0.99) > 0:
        ratio = percentile(runs[1].lags, 0.99) / percentile(runs[0].lags, 0.99)
        lines.append(f"| ratio | | | {ratio:.3f}x | | | |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stacks", type=int, default=10_000)
    parser.add_argument("--jitter", type=int, default=60)
    args = parser.parse_args(argv)
    with RedisServer() as server:
        runs = [
            asyncio.run(run_once(server.url, args.stacks, 0)),
            asyncio.run(run_once(server.url, args.stacks, args.jitter)),
        ]
    print(table(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
