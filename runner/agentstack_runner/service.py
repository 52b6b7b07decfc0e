"""The runner process: consume ticks, run many at once, drain gracefully, report health.

One asyncio loop reads deliveries (new requests, higher lanes first, and every
``claim_interval`` the requests other runners abandoned) as long as it has free
capacity, and runs each as a task through the :class:`~agentstack_runner.engine.Engine`.
A finished tick's result is published, then the delivery is acknowledged — in that
order, so a crash in between causes a duplicate, which republishes the outcome recorded
for the tick: a result is never lost. While a tick runs, each renewal of its stack's
lease also refreshes the delivery, so no other runner claims a tick that is still
running, however long it takes.

On SIGTERM the runner stops reading, gives in-flight ticks ``drain_timeout`` seconds
to finish, then cancels the rest and hands their deliveries back (made claimable at
once) after releasing their leases, so another runner resumes them from their last
committed step.

``/metrics``, ``/healthz`` and ``/readyz`` are served on ``metrics_port``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from agentstack_core import protocol
from agentstack_core.connection import connect
from agentstack_core.kube.client import KubeClient
from agentstack_core.kube.settings import load_settings
from agentstack_core.observability import serve_http
from agentstack_core.protocol import Delivery, RedisClient
from agentstack_core.redis.errors import LeaseLostError, NotDurableError
from agentstack_runner import metrics
from agentstack_runner.config import RunnerConfig
from agentstack_runner.engine import Engine
from agentstack_runner.llm.resilience import ConcurrencyLimiter
from agentstack_runner.llm.router import Router
from agentstack_runner.namespacebudgets import NamespaceBudgets
from agentstack_runner.providers import ProviderRegistry, credentials_for

logger = logging.getLogger(__name__)


def kube_for(config: RunnerConfig) -> KubeClient | None:
    """The API server's client of a runner that reads stacks' Secrets (credentials
    ``kubernetes``), else ``None``: the only Kubernetes calls a runner makes. Raises
    when there is no API server to be found (no ServiceAccount, no kubeconfig)."""
    return KubeClient(load_settings()) if config.credentials == "kubernetes" else None


def build_engine(
    config: RunnerConfig,
    client: RedisClient,
    *,
    call_slots: bool = True,
    kube: KubeClient | None = None,
) -> Engine:
    """The engine a runner's settings describe; ``call_slots``: whether its calls take
    the fleet-wide slots of the platform's accounts and keep the namespaces' budgets (a
    tick pod's do neither: its Redis user may reach only its stack's keys); ``kube``:
    :func:`kube_for`'s client (its caller closes it)."""
    metrics.model_label.limit = config.metrics_max_models
    router = Router(
        policy=config.retry,
        limiters={
            provider: ConcurrencyLimiter(client, provider, limit)
            for provider, limit in config.llm_concurrency.items()
        }
        if call_slots
        else {},
    )
    return Engine(
        client=client,
        registry=ProviderRegistry(
            credentials_for(config.credentials, config.secret_cache_seconds, kube=kube),
            endpoints=config.endpoints,
        ),
        router=router,
        runner_id=config.runner_id,
        lease_ttl=config.lease_ttl,
        prices=config.price_table,
        budgets=NamespaceBudgets(client) if call_slots else None,
    )


class Runner:
    """The consume-execute-acknowledge loop of one runner process."""

    def __init__(self, config: RunnerConfig, client: RedisClient | None = None) -> None:
        self.config = config
        self.client = client or connect(
            config.redis_url,
            cluster=config.redis_cluster,
            max_connections=2 * config.concurrency + 32,
        )
        self.kube = kube_for(config)
        self.engine = build_engine(config, self.client, kube=self.kube)
        self.stopping = asyncio.Event()
        self.ready = False
        self.last_loop = time.monotonic()
        self._inflight: dict[asyncio.Task[None], Delivery] = {}
        self._next_claim = 0.0

    # -- lifecycle -------------------------------------------------------------------

    async def run(self) -> None:
        """Serve until :meth:`stop` (or SIGTERM via :func:`run_forever`), then drain."""
        http = (
            await serve_http(
                self.config.metrics_host,
                self.config.metrics_port,
                healthy=self.healthy,
                ready=lambda: self.ready,
            )
            if self.config.metrics_port
            else None
        )
        if not await protocol.wait_for_groups(
            self.client, stopping=self.stopping.is_set, log=logger
        ):
            if http is not None:
                await http.cleanup()
            return
        self.ready = True
        logger.info("runner %s consuming ticks", self.config.runner_id)
        try:
            await self._consume()
        finally:
            self.ready = False
            await self._drain()
            if http is not None:
                await http.cleanup()
            await self.engine.registry.close()
            if self.kube is not None:
                await self.kube.close()

    def stop(self) -> None:
        self.stopping.set()

    async def _consume(self) -> None:
        """Receive and start ticks until stopped; Redis errors pause, never end, the loop."""
        self._next_claim = time.monotonic()
        backoff = 0.5
        while not self.stopping.is_set():
            try:
                await self._receive()
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                await protocol.ensure_groups(self.client)  # Redis was flushed or replaced
            except (RedisConnectionError, RedisTimeoutError) as exc:
                logger.warning("Redis unavailable (%s); retrying in %.1fs", exc, backoff)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), backoff)
                backoff = min(10.0, backoff * 2)
            else:
                backoff = 0.5

    async def _receive(self) -> None:
        self.last_loop = now = time.monotonic()
        free = self.config.concurrency - len(self._inflight)
        if free <= 0:
            await self._wait_for_capacity()
            return
        deliveries: list[Delivery] = []
        if now >= self._next_claim:
            self._next_claim = now + self.config.claim_interval
            deliveries = await protocol.claim_abandoned(
                self.client,
                self.config.runner_id,
                min_idle_seconds=self.config.visibility_timeout,
                count=free,
            )
            metrics.CLAIMED.inc(len(deliveries))
        if not deliveries:
            deliveries = await protocol.read(
                self.client, self.config.runner_id, free, self.config.block_ms
            )
        for delivery in deliveries:
            task = asyncio.create_task(self._handle(delivery))
            self._inflight[task] = delivery
            task.add_done_callback(self._inflight.pop)

    async def _wait_for_capacity(self) -> None:
        stop = asyncio.create_task(self.stopping.wait())
        try:
            await asyncio.wait(
                [*self._inflight, stop], return_when=asyncio.FIRST_COMPLETED, timeout=1.0
            )
        finally:
            stop.cancel()

    async def _drain(self) -> None:
        if not self._inflight:
            return
        logger.info("draining %d in-flight tick(s)", len(self._inflight))
        _done, pending = await asyncio.wait(list(self._inflight), timeout=self.config.drain_timeout)
        handed_back = [self._inflight[task] for task in pending]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=10)
        for delivery in handed_back:
            with contextlib.suppress(Exception):
                await protocol.release(self.client, self.config.runner_id, delivery)
        if handed_back:
            logger.info("handed %d unfinished tick(s) back to the fleet", len(handed_back))

    # -- one delivery ----------------------------------------------------------------

    async def _handle(self, delivery: Delivery) -> None:
        request = delivery.request
        if request is None:
            logger.error("undecodable tick request %s: %r", delivery.entry_id, delivery.raw)
            await protocol.acknowledge(self.client, delivery)
            return

        async def keep_alive() -> None:
            await protocol.keep_alive(self.client, self.config.runner_id, delivery)

        try:
            execution = await self.engine.execute(request, keep_alive)
        except LeaseLostError:
            logger.warning("lost the lease of %s during %s", request.stack, request.tick_id)
            return  # not acknowledged: claimed again, resumed from the last committed step
        except NotDurableError as exc:
            # A commit the replicas did not confirm counts as not made: the tick goes
            # back and resumes from what Redis holds then (the commit, or not).
            logger.warning("tick %s handed back: %s", request.tick_id, exc)
            with contextlib.suppress(Exception):
                await protocol.release(self.client, self.config.runner_id, delivery)
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("tick %s failed unexpectedly; handing it back", request.tick_id)
            with contextlib.suppress(Exception):  # else it is claimed after the timeout
                await protocol.release(self.client, self.config.runner_id, delivery)
            return
        if not execution.settled:
            return  # runs elsewhere: claimed again after the visibility timeout
        try:
            if execution.result is not None:
                await protocol.publish_results(self.client, [execution.result])
            await protocol.acknowledge(self.client, delivery)
        except Exception as exc:  # left pending: claimed again later, then a duplicate
            logger.warning("could not report tick %s (%s); it stays pending", request.tick_id, exc)

    def healthy(self) -> bool:
        """Alive while the consume loop turns (it wakes at least every ``block_ms``)."""
        return time.monotonic() - self.last_loop < 60 + self.config.block_ms / 1000


async def run_forever(config: RunnerConfig) -> None:
    """Run a :class:`Runner` until SIGTERM or SIGINT."""
    runner = Runner(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, runner.stop)
    try:
        await runner.run()
    finally:
        await runner.client.aclose()


EXIT_CODES = {
    protocol.Outcome.SUCCEEDED: 0,
    protocol.Outcome.FAILED: 1,
    protocol.Outcome.DROPPED: 3,
}
"""``agentstack runner --once`` exit codes; 0 also for a tick that had already run, and
2 for bad arguments or configuration."""


async def run_once(config: RunnerConfig, request: protocol.TickRequest) -> int:
    """Execute exactly one tick (the Job executor's entry point).

    A tick pod reaches Redis as its namespace's ACL user, which sees nothing shared:
    its result stays in its stack's keys, where the tick's atomic finish records it and
    the operator reads it when the Job ends (no results stream), and it calls models
    without the fleet-wide call slots (it calls with its stack's own key, not with the
    platform's accounts the slots share out).
    """
    client = connect(config.redis_url, cluster=config.redis_cluster)
    kube = kube_for(config)
    engine = build_engine(config, client, call_slots=False, kube=kube)
    try:
        execution = await engine.execute(request)
        result = execution.result
        if execution.duplicate or result is None:
            logger.info("tick %s had already run (or its stack is gone)", request.tick_id)
            return 0
        logger.info(
            "tick %s: %s (%s) %s",
            request.tick_id,
            result.outcome.value,
            result.reason,
            result.message,
        )
        return EXIT_CODES[result.outcome]
    finally:
        await engine.registry.close()
        if kube is not None:
            await kube.close()
        await client.aclose()
