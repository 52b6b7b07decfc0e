"""Leader election on a ``coordination.k8s.io`` Lease: one replica acts at a time.

Every replica watches the stacks and keeps its index warm; only the holder of the
Lease dispatches ticks, folds results and writes status and Events. The rules follow
client-go's ``leaderelection`` package:

- the Lease says it lasts ``lease_seconds`` from its last renewal; a standby takes it
  over only after that much time without a renewal (or at once, after a clean
  shutdown released it);
- the leader tries to renew every ``retry_period`` seconds, each attempt bounded in
  time, and if no renewal has succeeded for ``renew_deadline`` seconds (less than the
  lease) it steps down — before any standby could take the Lease over;
- leadership is a fact about the clock, not a flag: :attr:`Leadership.is_leader` is
  true only until ``renew_deadline`` after the last successful renewal, measured on
  the monotonic clock. A leader that hung (stopped, starved, partitioned) and wakes up
  after its deadline is no leader the instant it wakes, before its loop runs again.

Tick ids are deterministic, so even the short overlap an expiring lease allows cannot
make a tick run twice. Every attempt reports progress (:attr:`Leadership.last_attempt`)
for the liveness probe: a loop that stopped turning makes the process unhealthy.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import time
from dataclasses import replace
from typing import Protocol

from agentstack_core.kube.leases import Lease, LeaseSpec
from agentstack_core.kube.manifests import ObjectMeta
from agentstack_operator import metrics

logger = logging.getLogger(__name__)

RENEW_DEADLINE_FRACTION = 2 / 3
"""client-go's defaults (15 s lease, 10 s renew deadline) in proportion."""
RETRY_FRACTION = 1 / 5
"""client-go's 2 s retry period of a 15 s lease, rounded to a fifth."""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class LeaseApi(Protocol):
    """The Lease calls of :class:`~agentstack_operator.kube.Kube`."""

    async def read_lease(self, namespace: str, name: str) -> Lease | None: ...

    async def create_lease(self, lease: Lease) -> bool:
        """``False`` if another replica created it first."""
        ...

    async def replace_lease(self, lease: Lease) -> bool:
        """``False`` if the Lease changed since it was read."""
        ...


def expired(spec: LeaseSpec, now: dt.datetime, default_seconds: float) -> bool:
    """Whether nobody holds the Lease, or its holder's last renewal (its acquisition,
    if it never renewed) is older than the Lease's duration."""
    renewed = spec.renew_time or spec.acquire_time
    if spec.holder is None or renewed is None:
        return True
    duration = spec.duration_seconds or default_seconds
    return renewed + dt.timedelta(seconds=duration) < now


class Leadership:
    def __init__(
        self,
        kube: LeaseApi,
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
        self.renew_deadline = lease_seconds * RENEW_DEADLINE_FRACTION
        self.retry_period = lease_seconds * RETRY_FRACTION
        self.acquired = asyncio.Event()
        self.lost = asyncio.Event()
        self.lost.set()
        self.last_attempt = time.monotonic()
        """When the election loop last completed an attempt (for the liveness probe)."""
        self._valid_until = 0.0
        """Monotonic instant until which this replica may act as the leader."""
        self._leading = False

    @property
    def _duration(self) -> int:
        """The Lease's duration in whole seconds, never shorter than ``lease_seconds``
        (rounding it down would let a standby in before this leader's deadline)."""
        return math.ceil(self.lease_seconds)

    @property
    def is_leader(self) -> bool:
        """Whether this replica may act now: it holds the Lease, renewed in time."""
        return self._leading and time.monotonic() < self._valid_until

    async def run(self) -> None:
        """Acquire, then keep renewing every ``retry_period``; step down at the deadline."""
        while True:
            started = time.monotonic()
            # An attempt to acquire may take a renew deadline; a leader's attempt never
            # outlasts its own deadline: it steps down the moment the deadline passes.
            limit = self.renew_deadline
            if self._leading:
                limit = max(0.0, self._valid_until - started)
            try:
                async with asyncio.timeout(limit):
                    renewed = await self._attempt()
            except Exception as exc:  # API hiccup or hang: not renewed this time
                logger.warning("leader election attempt failed: %s", str(exc) or type(exc).__name__)
                renewed = False
            if renewed:
                # The Lease counts from the renew time we wrote, which was after
                # ``started``: measuring from ``started`` keeps our deadline early.
                self._valid_until = started + self.renew_deadline
            self.last_attempt = time.monotonic()
            self._set(self.is_leader if self._leading else renewed)
            await asyncio.sleep(max(0.0, self.retry_period - (time.monotonic() - started)))

    def _set(self, leading: bool) -> None:
        if leading == self._leading:
            return
        self._leading = leading
        metrics.LEADER.set(1 if leading else 0)
        if leading:
            logger.info("%s is now the leader", self.identity)
            self.lost.clear()
            self.acquired.set()
        else:
            logger.warning("%s is no longer the leader", self.identity)
            self.acquired.clear()
            self.lost.set()

    async def _attempt(self) -> bool:
        lease = await self.kube.read_lease(self.namespace, self.name)
        now = _now()
        if lease is None:
            meta = ObjectMeta(name=self.name, namespace=self.namespace)
            return await self.kube.create_lease(Lease(meta, self._spec(now, transitions=0)))
        spec = lease.spec
        if spec.holder == self.identity:
            spec = replace(spec, renew_time=now, duration_seconds=self._duration)
        elif expired(spec, now, self.lease_seconds):
            spec = self._spec(now, transitions=spec.transitions + 1)
        else:
            self._valid_until = 0.0  # another replica holds it: whatever we thought, stop
            return False
        return await self.kube.replace_lease(replace(lease, spec=spec))

    def _spec(self, now: dt.datetime, transitions: int) -> LeaseSpec:
        return LeaseSpec(
            holder=self.identity,
            duration_seconds=self._duration,
            acquire_time=now,
            renew_time=now,
            transitions=transitions,
        )

    async def release(self) -> None:
        """Give the lease up on a clean shutdown, so a standby takes over at once."""
        if not self._leading:
            return
        self._valid_until = 0.0
        try:
            lease = await self.kube.read_lease(self.namespace, self.name)
            if lease is not None and lease.spec.holder == self.identity:
                released = replace(lease.spec, holder=None, renew_time=None)
                await self.kube.replace_lease(replace(lease, spec=released))
        except Exception:
            logger.exception("could not release the lease")
        self._set(False)
