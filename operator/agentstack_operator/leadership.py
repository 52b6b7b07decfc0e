"""Leader election on a ``coordination.k8s.io`` Lease: one replica schedules at a time.

Every replica watches the stacks and keeps its index warm; only the holder of the
Lease dispatches ticks, folds results and writes status and Events. A standby takes
over when the leader stops renewing for ``lease_seconds`` (or at once, when the leader
shuts down cleanly and releases it). Tick ids are deterministic, so even the short
overlap an expiring lease allows cannot make a tick run twice.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

from kubernetes import client

from agentstack_operator import metrics
from agentstack_operator.kube import Kube

logger = logging.getLogger(__name__)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Leadership:
    def __init__(
        self,
        kube: Kube,
        *,
        namespace: str,
        identity: str,
        name: str = "agentstack-operator",
        lease_seconds: float = 15.0,
    ) -> None:
        self.kube = kube
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_seconds = lease_seconds
        self.is_leader = False
        self.acquired = asyncio.Event()
        self.lost = asyncio.Event()
        self.lost.set()

    async def run(self) -> None:
        """Try to acquire, then keep renewing, every third of the lease duration."""
        while True:
            try:
                leading = await self._attempt()
            except Exception:  # API hiccup: keep what we think we have until it expires
                logger.exception("leader election attempt failed")
                leading = self.is_leader
            self._set(leading)
            await asyncio.sleep(self.lease_seconds / 3)

    def _set(self, leading: bool) -> None:
        if leading == self.is_leader:
            return
        self.is_leader = leading
        metrics.LEADER.set(1 if leading else 0)
        if leading:
            logger.info("%s is now the leader", self.identity)
            self.lost.clear()
            self.acquired.set()
        else:
            logger.warning("%s lost the leadership", self.identity)
            self.acquired.clear()
            self.lost.set()

    async def _attempt(self) -> bool:
        lease = await self.kube.read_lease(self.namespace, self.name)
        now = _now()
        if lease is None:
            return await self.kube.create_lease(
                self.namespace,
                client.V1Lease(
                    metadata=client.V1ObjectMeta(name=self.name, namespace=self.namespace),
                    spec=self._spec(now, transitions=0),
                ),
            )
        spec = lease.spec
        holder = spec.holder_identity
        renewed = spec.renew_time or spec.acquire_time
        duration = spec.lease_duration_seconds or self.lease_seconds
        expired = (
            holder is None or renewed is None or (renewed + dt.timedelta(seconds=duration) < now)
        )
        if holder == self.identity:
            spec.renew_time = now
            spec.lease_duration_seconds = int(self.lease_seconds)
        elif expired:
            lease.spec = self._spec(now, transitions=(spec.lease_transitions or 0) + 1)
        else:
            return False
        return await self.kube.replace_lease(self.namespace, self.name, lease)

    def _spec(self, now: dt.datetime, transitions: int) -> client.V1LeaseSpec:
        return client.V1LeaseSpec(
            holder_identity=self.identity,
            lease_duration_seconds=int(self.lease_seconds),
            acquire_time=now,
            renew_time=now,
            lease_transitions=transitions,
        )

    async def release(self) -> None:
        """Give the lease up on a clean shutdown, so a standby takes over at once."""
        if not self.is_leader:
            return
        try:
            lease = await self.kube.read_lease(self.namespace, self.name)
            if lease is not None and lease.spec.holder_identity == self.identity:
                lease.spec.holder_identity = None
                lease.spec.renew_time = None
                await self.kube.replace_lease(self.namespace, self.name, lease)
        except Exception:
            logger.exception("could not release the lease")
        self._set(False)
