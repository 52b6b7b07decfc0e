"""Leader election's API calls never wait behind the operator's other blocking calls."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from kubernetes import client

from agentstack_core.keys import StackRef
from tests.helpers import operator_kube


def test_a_lease_read_does_not_queue_behind_a_burst_of_event_posts() -> None:
    """A few thousand new stacks post as many ``Started`` Events, each a blocking call
    in a worker thread; a renewal queued behind them missed its deadline."""
    kube = operator_kube(client.ApiClient(client.Configuration()))  # no call reaches a network
    gate = threading.Event()
    kube.coordination.read_namespaced_lease = lambda *_args, **_kwargs: "the lease"

    async def burst_then_lease() -> Any:
        loop, posting = asyncio.get_running_loop(), asyncio.Event()

        def slow_post(*_args: Any, **_kwargs: Any) -> None:
            loop.call_soon_threadsafe(posting.set)
            gate.wait(30)

        kube.core.create_namespaced_event = slow_post
        # More posts than the shared pool has workers (32 at most): some must queue.
        posts = [
            asyncio.create_task(kube.post_event(StackRef("team", f"s{n}"), "uid", "Started", ""))
            for n in range(64)
        ]
        try:
            await asyncio.wait_for(posting.wait(), 10)
            return await asyncio.wait_for(kube.read_lease("team", "lease"), 10)
        finally:
            gate.set()
            await asyncio.gather(*posts)
            await kube.close()

    assert asyncio.run(burst_then_lease()) == "the lease"
