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
    """The stacks' specs as the runners read them, and the marker that tells whether
    Redis still holds what the operator published."""

    async def publish(self, record: StackRecord) -> None: ...

    async def delete(self, ref: StackRef) -> int:
        """Remove a stack's keys; how many there were."""
        ...

    async def claim_marker(self, identity: str) -> bool:
        """Set the marker if it is missing; ``True`` then (Redis lost its data)."""
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

    async def publish(self, record: StackRecord) -> None:
        await publish_spec(
            self.redis, record.ref, record.generation, record.raw_spec, uid=record.uid
        )

    async def delete(self, ref: StackRef) -> int:
        return await delete_stack(self.redis, ref)

    async def claim_marker(self, identity: str) -> bool:
        return bool(await self.redis.set(FleetKeys.marker, identity, nx=True))

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
    )
