"""A stand-in for the runners that does no agent work: ``bench.operator_scale
--consumer ack`` uses it to measure the operator alone on two cores.

It consumes the tick lanes as a runner does (the ``runners`` group, higher lanes
first) and, for each batch it receives, sends one pipeline: per request, the stack's
``ticks`` counter moved on (the counter the operator copies into status), a
``Succeeded`` result on the results stream for the operator to fold, and the
acknowledgement. Nothing else — no lease, no spec read, no agent step, no atomic
finish — so that it keeps up with thousands of ticks a second on a share of one core:
the operator sees the traffic real runners cause (one result per tick, counters
moving) at the rate the lanes deliver it. A request past its deadline is answered
``Dropped``/``DeadlineExceeded``, as a runner would.

With ``BENCH_SERVICE_SECONDS`` set, it stands in for runners that are busy instead:
each request holds one of ``BENCH_SLOTS`` slots that long before it is answered (a
late one is answered ``Dropped`` at once, as a runner drops it), and it reads only as
slots free up — a pool of runners with a known capacity, slots ÷ seconds ticks a
second, that a big enough fleet saturates (``bench.fair_share``).

It reports the runner metrics the benchmark reads (``agentstack_runner_ticks_total``,
``agentstack_runner_queue_lag_seconds``) under the runner's own names. Configured like
a runner: ``REDIS_URL``, ``AGENTSTACK_RUNNER_METRICS_PORT``, ``AGENTSTACK_RUNNER_ID``.

    python -m bench.ack_consumer
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Sequence
from typing import Any

from prometheus_client import start_http_server

from agentstack_core import protocol
from agentstack_core.connection import connect
from agentstack_core.keys import FleetKeys, StackKeys
from agentstack_core.messages import Outcome, TickResult
from agentstack_core.protocol import Delivery, RedisClient
from agentstack_runner import metrics

BATCH = 512
BLOCK_MS = 1000
SERVICE_SECONDS = float(os.environ.get("BENCH_SERVICE_SECONDS", "0"))
SLOTS = int(os.environ.get("BENCH_SLOTS", str(BATCH)))
log = logging.getLogger(__name__)


def result_for(delivery: Delivery, now: float) -> TickResult | None:
    """What a runner that did no work would report (``None``: not a request)."""
    request = delivery.request
    if request is None:
        return None
    late = now > request.deadline
    return TickResult(
        stack=request.stack,
        tick_id=request.tick_id,
        generation=request.generation,
        outcome=Outcome.DROPPED if late else Outcome.SUCCEEDED,
        reason="DeadlineExceeded" if late else "Completed",
        started_at=now,
        finished_at=now,
        progressed=True,
        runner="ack-consumer",
    )


async def answer(
    client: RedisClient, deliveries: Sequence[Delivery], now: float | None = None
) -> None:
    """One pipelined round trip for the whole batch (received at ``now``)."""
    now = time.time() if now is None else now
    pipe: Any = client.pipeline(transaction=False)
    for delivery in deliveries:
        result = result_for(delivery, now)
        if result is not None and delivery.request is not None:
            metrics.QUEUE_LAG.observe(max(0.0, now - delivery.request.dispatched_at))
            metrics.TICKS.labels(result.outcome.value, result.reason).inc()
            if result.outcome is Outcome.SUCCEEDED:
                pipe.hincrby(StackKeys(result.stack).usage, "ticks", 1)
            pipe.xadd(
                FleetKeys.results,
                result.to_fields(),
                maxlen=protocol.RESULTS_MAXLEN,
                approximate=True,
            )
        pipe.xack(delivery.lane, protocol.RUNNERS_GROUP, delivery.entry_id)
    await pipe.execute()


async def consume(client: RedisClient, consumer: str) -> None:
    await protocol.wait_for_groups(client, stopping=lambda: False, log=log)
    if SERVICE_SECONDS > 0:
        await consume_busy(client, consumer)
    while True:
        deliveries = await protocol.read(client, consumer, BATCH, BLOCK_MS)
        if deliveries:
            await answer(client, deliveries)


async def consume_busy(client: RedisClient, consumer: str) -> None:
    """Runners of a fixed capacity: ``SLOTS`` requests at a time, each ``SERVICE_SECONDS``."""
    in_flight = 0
    freed = asyncio.Event()
    tasks: set[asyncio.Task[None]] = set()

    async def serve(delivery: Delivery, received: float) -> None:
        nonlocal in_flight
        request = delivery.request
        if request is not None and received <= request.deadline:
            await asyncio.sleep(SERVICE_SECONDS)
        await answer(client, [delivery], received)
        in_flight -= 1
        freed.set()

    while True:
        if in_flight >= SLOTS:
            freed.clear()
            await freed.wait()
            continue
        deliveries = await protocol.read(client, consumer, SLOTS - in_flight, BLOCK_MS)
        received = time.time()
        for delivery in deliveries:
            in_flight += 1
            task = asyncio.create_task(serve(delivery, received))
            tasks.add(task)
            task.add_done_callback(tasks.discard)


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    start_http_server(int(os.environ["AGENTSTACK_RUNNER_METRICS_PORT"]), addr="127.0.0.1")
    client = connect(os.environ["REDIS_URL"])
    asyncio.run(consume(client, os.environ.get("AGENTSTACK_RUNNER_ID", "ack-consumer")))


if __name__ == "__main__":
    main()
