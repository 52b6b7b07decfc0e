"""Leader election against an in-memory Lease: a leader that cannot renew steps down
before any standby can take the Lease over, and a woken-up stale leader is no leader."""

from __future__ import annotations

import asyncio
import copy
import time
from typing import Any

import pytest
from kubernetes import client

from agentstack_operator.leadership import Leadership


class LeaseStore:
    """One Lease with optimistic concurrency (resourceVersion), like the API server."""

    def __init__(self) -> None:
        self.lease: client.V1Lease | None = None
        self.version = 0
        self.hang: set[str] = set()
        """Identities whose writes hang (an API server that stopped answering them)."""

    def kube_for(self, identity: str) -> Any:
        store = self

        class Kube:
            async def read_lease(self, namespace: str, name: str) -> client.V1Lease | None:
                return copy.deepcopy(store.lease)

            async def create_lease(self, namespace: str, body: client.V1Lease) -> bool:
                if store.lease is not None:
                    return False
                return store._write(identity, body)

            async def replace_lease(self, namespace: str, name: str, body: client.V1Lease) -> bool:
                if identity in store.hang:
                    await asyncio.sleep(3600)
                if body.metadata.resource_version != str(store.version):
                    return False
                return store._write(identity, body)

        return Kube()

    def _write(self, identity: str, body: client.V1Lease) -> bool:
        self.version += 1
        body = copy.deepcopy(body)
        body.metadata.resource_version = str(self.version)
        self.lease = body
        return True


async def _until(check: Any, timeout: float = 20.0) -> float:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)
    return time.monotonic()


@pytest.mark.asyncio
async def test_a_leader_that_cannot_renew_steps_down_before_a_standby_takes_over() -> None:
    store = LeaseStore()
    leader = Leadership(store.kube_for("a"), namespace="ns", identity="a", lease_seconds=1.5)
    standby = Leadership(store.kube_for("b"), namespace="ns", identity="b", lease_seconds=1.5)
    tasks = [asyncio.create_task(leader.run())]
    try:
        await _until(lambda: leader.is_leader)
        tasks.append(asyncio.create_task(standby.run()))
        await asyncio.sleep(0.5)
        assert not standby.is_leader  # the Lease is held and renewed

        store.hang.add("a")  # the leader's renewals stop getting through
        took_over = await _until(lambda: standby.is_leader)
        assert not leader.is_leader
        assert leader._valid_until <= took_over  # it had stopped acting before
        assert leader.lost.is_set()
        assert store.lease is not None
        assert store.lease.spec.holder_identity == "b"
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@pytest.mark.asyncio
async def test_a_leader_that_was_frozen_past_its_deadline_is_no_leader_when_it_wakes() -> None:
    store = LeaseStore()
    leader = Leadership(store.kube_for("a"), namespace="ns", identity="a", lease_seconds=1.5)
    task = asyncio.create_task(leader.run())
    try:
        await _until(lambda: leader.is_leader)
        time.sleep(leader.renew_deadline + 0.1)  # noqa: ASYNC251 - the whole process freezes
        # Before its election loop has run again, it already knows it may not act.
        assert not leader.is_leader
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.mark.asyncio
async def test_a_clean_shutdown_hands_the_lease_over_at_once() -> None:
    store = LeaseStore()
    leader = Leadership(store.kube_for("a"), namespace="ns", identity="a", lease_seconds=30)
    standby = Leadership(store.kube_for("b"), namespace="ns", identity="b", lease_seconds=30)
    tasks = [asyncio.create_task(leader.run())]
    try:
        await _until(lambda: leader.is_leader)
        tasks.append(asyncio.create_task(standby.run()))
        await leader.release()
        assert not leader.is_leader
        await _until(lambda: standby.is_leader, timeout=15)  # far sooner than 30 s
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
