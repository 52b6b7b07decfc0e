"""The operator a Kopf user writes first: the baseline ``bench.operator_scale`` measures
ours against (``--operator naive``).

One ``@kopf.timer`` per stack, at the stacks' tick interval. Each firing publishes the
stack's spec for the runners, enqueues one tick on its lane, and patches the stack's
status (``ticks``, ``lastTickTime``) through Kopf — every tick. No shared scheduler, no
batching, no status budget, no leader election (one replica), Kopf's default settings
(which post an Event per handler run). The same runners execute the ticks.

It reports the metrics ours reports for the same work — dispatch lag (a firing's delay
past its previous firing plus the interval), ticks dispatched, status writes — under
the same names (``agentstack_operator.metrics``), so the benchmark reads both alike.
Configured like ours: ``KUBECONFIG``, ``REDIS_URL``, ``AGENTSTACK_METRICS_PORT``; and
``NAIVE_TICK_INTERVAL`` (seconds; Kopf fixes a timer's interval when it is declared).
Run as a Kopf user runs it, by Kopf's command line (which uses uvloop when installed):

    python -m kopf run --quiet --standalone --all-namespaces -m bench.naive_operator
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from typing import Any

import kopf
from prometheus_client import start_http_server

from agentstack_core import protocol
from agentstack_core.connection import connect
from agentstack_core.keys import StackRef
from agentstack_core.messages import TickRequest, tick_id
from agentstack_core.protocol import RedisClient
from agentstack_core.redis.publishing import publish_spec
from agentstack_operator import metrics

INTERVAL = float(os.environ.get("NAIVE_TICK_INTERVAL", "10"))
_state: dict[str, Any] = {"redis": None, "fired": {}}


@kopf.on.startup()
async def startup(**_: Any) -> None:
    client: RedisClient = connect(os.environ["REDIS_URL"])
    await protocol.ensure_groups(client)
    _state["redis"] = client
    start_http_server(int(os.environ.get("AGENTSTACK_METRICS_PORT", "9101")), addr="127.0.0.1")


@kopf.timer("agentstack.dev", "v1alpha1", "agentstacks", interval=INTERVAL)
async def tick(spec: Any, meta: Any, status: Any, patch: kopf.Patch, **_: Any) -> None:
    now = time.time()
    ref = StackRef(meta["namespace"], meta["name"])
    previous = _state["fired"].get(str(ref))
    if previous is not None:
        metrics.DISPATCH_LAG.observe(max(0.0, now - previous - INTERVAL))
    _state["fired"][str(ref)] = now
    client: RedisClient = _state["redis"]
    generation = int(meta["generation"])
    await publish_spec(client, ref, generation, dict(spec), uid=meta["uid"])
    slot = int(now // INTERVAL)
    await protocol.dispatch(
        client,
        [
            TickRequest(
                stack=ref,
                generation=generation,
                tick_id=tick_id(ref, slot),
                slot=slot,
                deadline=now + INTERVAL,
                dispatched_by="naive",
                uid=meta["uid"],
            )
        ],
    )
    metrics.DISPATCHED.labels("pool").inc()
    patch.status["ticks"] = int((status or {}).get("ticks") or 0) + 1
    patch.status["lastTickTime"] = dt.datetime.fromtimestamp(now, dt.UTC).isoformat()
    metrics.STATUS_WRITES.inc()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    kopf.run(clusterwide=True, standalone=True)
