"""Leader election against an in-memory Lease: a leader that cannot renew steps down
before any standby can take the Lease over, and a woken-up stale leader is no leader.

The election runs on a virtual clock (:mod:`tests.virtualtime`): its monotonic deadlines
and the wall time it writes into the Lease are the loop's, which jumps from timer to
timer. A lease of 1.5 s is renewed, lost and taken over in no time, and a loaded machine
cannot starve a leader past its deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
from collections import Counter
from collections.abc import AsyncIterator, Callable
from types import SimpleNamespace

import pytest

from agentstack_core.kube.leases import Lease
from agentstack_operator import leadership
from agentstack_operator.kube import Kube
from agentstack_operator.leadership import Leadership
from tests import virtualtime
from tests.helpers import assert_same_signature, until

EPOCH = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def _virtual_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Leadership reads the running loop's (virtual) clock for both of its clocks."""
    monkeypatch.setattr(leadership, "time", SimpleNamespace(monotonic=virtualtime.loop_time))
    monkeypatch.setattr(
        leadership, "_now", lambda: EPOCH + dt.timedelta(seconds=virtualtime.loop_time())
    )


class LeaseStore:
    """One Lease with optimistic concurrency (resourceVersion), like the API server."""

    def __init__(self) -> None:
        self.lease: Lease | None = None
        self.version = 0
        self.hang: set[str] = set()
        """Identities whose writes hang (an API server that stopped answering them)."""
        self.reads: Counter[str] = Counter()
        """Lease reads by identity: every election attempt starts with one."""
        self.writes: Counter[str] = Counter()
        """Successful writes by identity: acquisitions and renewals."""

    def kube_for(self, identity: str) -> LeaseKube:
        return LeaseKube(self, identity)

    def write(self, identity: str, lease: Lease) -> bool:
        self.version += 1
        self.writes[identity] += 1
        meta = dataclasses.replace(lease.meta, resource_version=str(self.version))
        self.lease = dataclasses.replace(lease, meta=meta)
        return True


class LeaseKube:
    """The Lease methods of :class:`~agentstack_operator.kube.Kube`, over a LeaseStore."""

    def __init__(self, store: LeaseStore, identity: str) -> None:
        self.store = store
        self.identity = identity

    async def read_lease(self, namespace: str, name: str) -> Lease | None:
        self.store.reads[self.identity] += 1
        return self.store.lease  # frozen: the caller cannot change the stored one

    async def create_lease(self, lease: Lease) -> bool:
        if self.store.lease is not None:
            return False
        return self.store.write(self.identity, lease)

    async def replace_lease(self, lease: Lease) -> bool:
        if self.identity in self.store.hang:
            await asyncio.Event().wait()  # until the attempt's own deadline cancels it
        if lease.meta.resource_version != str(self.store.version):
            return False
        return self.store.write(self.identity, lease)


@contextlib.asynccontextmanager
async def _elected(
    lease_seconds: float,
) -> AsyncIterator[tuple[LeaseStore, Leadership, Leadership]]:
    """``a`` has won the Lease and ``b`` stands by; both elections run while inside."""
    store = LeaseStore()
    leader, standby = (
        Leadership(
            store.kube_for(name),  # type: ignore[arg-type]
            namespace="ns",
            identity=name,
            lease_seconds=lease_seconds,
        )
        for name in ("a", "b")
    )
    tasks = [asyncio.create_task(leader.run())]
    try:
        await until(lambda: leader.is_leader, "a to lead")
        tasks.append(asyncio.create_task(standby.run()))
        yield store, leader, standby
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _when(check: Callable[[], bool], what: str) -> float:
    """When (on the loop's clock) ``check`` first held, to a poll's precision."""
    await until(check, what)
    return virtualtime.loop_time()


def test_a_leader_that_cannot_renew_steps_down_before_a_standby_takes_over() -> None:
    async def scenario() -> None:
        async with _elected(lease_seconds=1.5) as (store, leader, standby):
            renewed, tried = store.writes["a"], store.reads["b"]
            await until(
                lambda: store.writes["a"] >= renewed + 5 and store.reads["b"] >= tried + 5,
                "five renewals and five attempts of the standby",
            )
            assert not standby.is_leader  # the Lease is held and renewed
            assert store.writes["b"] == 0

            store.hang.add("a")  # the leader's renewals stop getting through
            took_over = await _when(lambda: standby.is_leader, "b to take over")
            assert not leader.is_leader
            assert leader._valid_until <= took_over  # it had stopped acting before
            assert leader.lost.is_set()
            assert store.lease is not None
            assert store.lease.spec.holder == "b"

    virtualtime.run(scenario())


def test_a_leader_that_was_frozen_past_its_deadline_is_no_leader_when_it_wakes() -> None:
    async def scenario() -> None:
        async with _elected(lease_seconds=1.5) as (_store, leader, _standby):
            # The whole process freezes (no task runs) past the renew deadline ...
            virtualtime.virtual_loop().freeze(leader.renew_deadline + 0.1)
            # ... and before its election loop has run again, it knows it may not act.
            assert not leader.is_leader

    virtualtime.run(scenario())


def test_a_clean_shutdown_hands_the_lease_over_at_once() -> None:
    async def scenario() -> None:
        async with _elected(lease_seconds=30) as (_store, leader, standby):
            await leader.release()
            released = virtualtime.loop_time()
            assert not leader.is_leader
            took_over = await _when(lambda: standby.is_leader, "b to take over")
            assert took_over - released <= 15  # far sooner than the 30 s lease

    virtualtime.run(scenario())


@pytest.mark.parametrize("method", ["read_lease", "create_lease", "replace_lease"])
def test_the_lease_fake_takes_what_kube_takes(method: str) -> None:
    assert_same_signature(getattr(LeaseKube, method), getattr(Kube, method))
