"""A stand-in for the runners that does no agent work: ``bench.operator_scale
--consumer ack`` uses it to measure the operator alone on two cores.

It consumes the tick lanes as a runner does (the ``runners`` group, higher lanes
first), and for every request records the tick through the real atomic finish
(:meth:`StackStore.finish_tick`: done set, usage counters, outcome, history) with a
``Succeeded`` outcome, publishes the result for the operator to fold, and acknowledges
the delivery. Nothing else: no lease, no spec read, no agent step. So the operator sees
exactly the traffic real runners cause (one result per tick, counters moving), at the
rate the lanes deliver it, while the consumer itself costs well under a millisecond per
tick. A tick past its deadline is dropped (``DeadlineExceeded``) like a runner would.

It reports the runner metrics the benchmark reads (``agentstack_runner_ticks_total``,
``agentstack_runner_queue_lag_seconds``) under the runner's own names.

Configured like a runner: ``REDIS_URL``, ``AGENTSTACK_RUNNER_METRICS_PORT``,
``AGENTSTACK_RUNNER_ID``.

    python -m bench.ack_consumer
"""

from __future__ import annotations

import asyncio
import logging
import os
import time

from prometheus_client import start_http_server

from agentstack_core import protocol
from agentstack_core.connection import connect
from agentstack_core.messages import Outcome, TickResult
from agentstack_core.protocol import Delivery, RedisClient
from agentstack_core.store import StackGoneError, StackStore
from agentstack_runner import metrics

BATCH = 256
BLOCK_MS = 1000


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


async def handle(client: RedisClient, delivery: Delivery) -> TickResult | None:
    now = time.time()
    result = result_for(delivery, now)
    if result is not None and delivery.request is not None:
        metrics.QUEUE_LAG.observe(max(0.0, now - delivery.request.dispatched_at))
        store = StackStore(client, result.stack, delivery.request.uid)
        try:
            await store.finish_tick(
                result=result, token=None, ran=result.outcome != Outcome.DROPPED
            )
        except StackGoneError:  # deleted meanwhile: nothing to record
            result = None
    await protocol.acknowledge(client, delivery)
    if result is not None:
        metrics.TICKS.labels(result.outcome.value, result.reason).inc()
    return result


async def consume(client: RedisClient, consumer: str) -> None:
    log = logging.getLogger(__name__)
    await protocol.wait_for_groups(client, stopping=lambda: False, log=log)
    while True:
        deliveries = await protocol.read(client, consumer, BATCH, BLOCK_MS)
        results = await asyncio.gather(*(handle(client, d) for d in deliveries))
        await protocol.publish_results(client, [r for r in results if r is not None])


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    start_http_server(int(os.environ["AGENTSTACK_RUNNER_METRICS_PORT"]), addr="127.0.0.1")
    client = connect(os.environ["REDIS_URL"])
    asyncio.run(consume(client, os.environ.get("AGENTSTACK_RUNNER_ID", "ack-consumer")))


if __name__ == "__main__":
    main()
