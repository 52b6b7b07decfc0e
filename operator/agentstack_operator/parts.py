"""What the operator reaches outside itself, gathered in one place.

The coordinator (:class:`~.coordinator.Operator`) only wires its own parts — index,
dispatcher, folder, status writer — to these: the API server (:class:`~.kube.Kube`)
and the Redis-side neighbours, each behind the small protocol its part declares. The
process builds them from one Redis client with :func:`connect_parts`; a test builds
them from fakes, so no operator is made with ``redis=None`` and patched afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from agentstack_core import protocol
from agentstack_core.keys import FleetKeys, StackRef
from agentstack_core.protocol import RedisClient
from agentstack_core.redis.publishing import delete_stack, publish_spec
from agentstack_operator.budgets import Ledgers, RedisLedgers
from agentstack_operator.config import OperatorConfig
from agentstack_operator.dispatching import RedisLanes, TickSink
from agentstack_operator.folding import (
    ApprovalReader,
    RedisResults,
    ResultStream,
    TickLedger,
    UsageCounters,
)
from agentstack_operator.kube import Kube
from agentstack_operator.stackstate import Event, StackRecord
from agentstack_operator.tickcredentials import Ensures, TickCredentials
from agentstack_operator.triggering import TriggerHub
from agentstack_operator.waking import RedisWakeups, WakeupSource


class Fleet(Protocol):
    """The stacks' specs as the runners read them, and what tells whether Redis still
    holds what the operators published: the marker and the publications counter."""

    async def publish(self, record: StackRecord) -> int:
        """Publish the stack's spec; the publications counter after it."""
        ...

    async def delete(self, ref: StackRef) -> int:
        """Remove a stack's keys; how many there were."""
        ...

    async def check(self, identity: str) -> tuple[bool, int]:
        """Set the marker if it is missing (``True`` then: Redis lost its data), and read
        the publications counter."""
        ...

    async def raise_publications(self, at_least: int) -> None:
        """Bring the counter back up to ``at_least`` (after publishing everything again)."""
        ...

    async def ensure_groups(self) -> None: ...


class Results(ResultStream, UsageCounters, ApprovalReader, TickLedger, Protocol):
    """Everything the result folder reads and records (:class:`~.folding.RedisResults`)."""


class Triggers(Protocol):
    """Stacks' triggers (:class:`~.triggering.TriggerHub`)."""

    async def check(self, record: StackRecord) -> list[Event]: ...

    def unsubscribe(self, key: str) -> None: ...

    async def step(self) -> None: ...

    def stop(self) -> None: ...


class Credentials(Ensures, Protocol):
    """The tick pods' Redis users (:class:`~.tickcredentials.TickCredentials`)."""

    async def refresh(self, namespaces: set[str]) -> None: ...


class RedisFleet:
    def __init__(self, redis: RedisClient) -> None:
        self.redis: Any = redis  # see RedisClient: redis-py's annotations don't fit

    async def publish(self, record: StackRecord) -> int:
        await publish_spec(
            self.redis, record.ref, record.generation, record.raw_spec, uid=record.uid
        )
        return int(await self.redis.incr(FleetKeys.publications))

    async def delete(self, ref: StackRef) -> int:
        return await delete_stack(self.redis, ref)

    async def check(self, identity: str) -> tuple[bool, int]:
        # One round trip (both keys share the fleet's hash tag): this runs before every
        # batch of ticks is sent.
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(FleetKeys.marker, identity, nx=True)
        pipe.get(FleetKeys.publications)
        claimed, count = await pipe.execute()
        return bool(claimed), int(count or 0)

    async def raise_publications(self, at_least: int) -> None:
        count = int(await self.redis.get(FleetKeys.publications) or 0)
        if count < at_least:  # a concurrent INCR only adds: never brings it below
            await self.redis.incrby(FleetKeys.publications, at_least - count)

    async def ensure_groups(self) -> None:
        await protocol.ensure_groups(self.redis)


@dataclass(frozen=True)
class OperatorParts:
    kube: Kube
    lanes: TickSink
    results: Results
    fleet: Fleet
    wakeups: WakeupSource
    triggers: Triggers
    credentials: Credentials
    ledgers: Ledgers


def connect_parts(config: OperatorConfig, kube: Kube, redis: RedisClient) -> OperatorParts:
    """The parts of a running operator: the API server, and Redis through one client."""
    return OperatorParts(
        kube=kube,
        lanes=RedisLanes(redis),
        results=RedisResults(redis, consumer=config.operator_id),
        fleet=RedisFleet(redis),
        wakeups=RedisWakeups(redis),
        triggers=TriggerHub(kube, redis, namespaces=config.namespaces),
        credentials=TickCredentials(
            kube,
            redis,
            cluster=config.redis_cluster,
            rotate_every=config.job_credential_rotation_seconds,
        ),
        ledgers=RedisLedgers(redis),
    )
