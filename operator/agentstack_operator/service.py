"""The operator process (``agentstack operator``): Kopf's watch machinery plus the
operator's own loops, started together and stopped together.

Kopf is embedded (``kopf.operator(...)``) next to the scheduler, result folding,
status writing, leader election and the metrics endpoint, all in one event loop. Kopf
runs standalone (no Kopf peering): leadership is the Lease in :mod:`.leadership`, so
every replica watches and only the leader acts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import kopf

from agentstack_core import protocol
from agentstack_core.connection import connect
from agentstack_core.kube.client import KubeClient
from agentstack_core.kube.settings import load_settings
from agentstack_core.observability import serve_http
from agentstack_operator import metrics
from agentstack_operator.config import OperatorConfig
from agentstack_operator.coordinator import Operator
from agentstack_operator.gctuning import tune_collector
from agentstack_operator.handlers import build_registry, settings
from agentstack_operator.kube import Kube
from agentstack_operator.parts import connect_parts

logger = logging.getLogger(__name__)


async def run_operator(config: OperatorConfig) -> int:
    """Run until SIGTERM/SIGINT (exit code 0) or until a part crashes (exit code 1)."""
    # Kopf logs every handled watch event at INFO: one line per status write, fifty a
    # second on a large fleet. Its warnings and errors still show.
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    untune_collector = tune_collector(config.gc_gen0_threshold, config.gc_thaw_seconds)
    metrics.PER_STACK.enabled = config.per_stack_metrics
    redis = connect(config.redis_url, cluster=config.redis_cluster)
    kube_settings = load_settings()
    kube = Kube(KubeClient(kube_settings), leases=KubeClient(kube_settings))
    operator = Operator(config, connect_parts(config, kube, redis))
    stop = asyncio.Event()
    ready = asyncio.Event()
    started = time.monotonic()
    http = (
        await serve_http(
            config.metrics_host,
            config.metrics_port,
            healthy=lambda: not stop.is_set() and operator.healthy(),
            ready=ready.is_set,
        )
        if config.metrics_port
        else None
    )
    # Alive (/healthz) but not ready while Redis is out of reach; SIGTERM meanwhile ends
    # the process at once (Kopf, which handles it later, is not running yet).
    await protocol.wait_for_groups(redis, stopping=stop.is_set, log=logger)
    loops = [asyncio.create_task(coroutine) for coroutine in operator.loops()]
    kopf_task = asyncio.create_task(
        kopf.operator(
            registry=build_registry(operator),
            settings=settings(),
            standalone=True,
            clusterwide=not config.namespaces,
            namespaces=config.namespaces,
            stop_flag=stop,
            ready_flag=ready,
        ),
        name="kopf",
    )
    logger.info("operator %s starting", config.operator_id)
    failed = False
    try:
        done, _pending = await asyncio.wait(
            [kopf_task, *loops], return_when=asyncio.FIRST_COMPLETED
        )
        for task in done:
            # Kopf handles SIGTERM/SIGINT itself and returns: a clean stop. Anything
            # else ending (an error, or one of our loops returning) is a failure.
            error = task.exception()
            if error is not None or task is not kopf_task:
                failed = True
                logger.error("%s stopped unexpectedly", task.get_name(), exc_info=error)
    finally:
        stop.set()
        await operator.leadership.release()
        for task in loops:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(kopf_task, timeout=30)
        await asyncio.gather(*loops, return_exceptions=True)
        await operator.finalizer.close()
        if http is not None:
            await http.cleanup()
        await redis.aclose()
        await kube.close()
        untune_collector()
        logger.info("operator stopped after %.0fs", time.monotonic() - started)
    return 1 if failed else 0
