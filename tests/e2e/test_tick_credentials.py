"""Tick pods' Redis credentials, on a real kube-apiserver and real Redis (standalone and
a three-node cluster): made by the operator's :class:`TickCredentials`, kept in a
Secret of the namespace, a Redis ACL user that reaches only that namespace's keys.

A tick of namespace A runs as A's user — the Job's own entry point, ``run_once``, with
the Secret's username and password in its environment — while the same user is refused
(``NOPERM``) B's keys, B's approvals, the fleet's shared streams and every key-less
command that reaches across namespaces. A rotation keeps both the old and the new
password working until the next one; a stack whose operator has no ACL rights waits,
Ready=False, saying what to grant, and ticks once it is granted.
"""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator, Awaitable, Iterator
from typing import Any

import pytest
import pytest_asyncio
import redis
from kubernetes import client
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import AuthenticationError, NoPermissionError, RedisClusterException

from agentstack_core.connection import connect
from agentstack_core.keys import FleetKeys, StackKeys, StackRef
from agentstack_core.messages import sleep_tick_id
from agentstack_core.protocol import RedisClient, TickKind, TickRequest, tick_id
from agentstack_core.reasons import Outcome
from agentstack_core.redis.approvals import decide_approval, read_approvals
from agentstack_core.redis.publishing import publish_spec
from agentstack_core.redis.tick import TickStore
from agentstack_devkit.fleet import Fleet
from agentstack_devkit.rediscluster import RedisClusterServers
from agentstack_devkit.redisserver import RedisServer
from agentstack_operator.jobs import PASSWORD_KEY, SECRET_NAME, USERNAME_KEY
from agentstack_operator.tickcredentials import (
    PREVIOUS_ANNOTATION,
    TickCredentials,
    acl_user,
)
from agentstack_runner.config import RunnerConfig
from agentstack_runner.service import run_once
from tests.e2e.stacks import Stacks
from tests.helpers import Clock, eventually, operator_kube, waiting_approval

DAY = 86400.0


@pytest.fixture(params=["standalone", "cluster"])
def backend(request: pytest.FixtureRequest) -> tuple[str, bool]:
    """``(url, cluster)``: each test runs on one redis-server and on a cluster."""
    if request.param == "cluster":
        servers: RedisClusterServers = request.getfixturevalue("redis_cluster")
        return servers.url, True
    server: RedisServer = request.getfixturevalue("redis_server")
    return server.url, False


@pytest_asyncio.fixture
async def admin(backend: tuple[str, bool]) -> AsyncIterator[RedisClient]:
    """The platform's client (the default user: every right), flushed afterwards."""
    url, cluster = backend
    redis = connect(url, cluster=cluster)
    if isinstance(redis, RedisCluster):
        await redis.initialize()
    try:
        yield redis
    finally:
        if isinstance(redis, RedisCluster):
            await redis.flushall(target_nodes=RedisCluster.PRIMARIES)
        else:
            await redis.flushall()
        await redis.aclose()


@pytest.fixture
def other_namespace(k8s_api: client.ApiClient, namespace: str) -> Iterator[str]:
    name = f"{namespace}-b"
    core = client.CoreV1Api(k8s_api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    try:
        yield name
    finally:
        core.delete_namespace(name)


def _secret(k8s_api: client.ApiClient, namespace: str) -> dict[str, str]:
    secret = client.CoreV1Api(k8s_api).read_namespaced_secret(SECRET_NAME, namespace)
    data = {key: base64.b64decode(value).decode() for key, value in secret.data.items()}
    return {**data, **(secret.metadata.annotations or {})}


async def _as(url: str, cluster: bool, username: str, password: str) -> RedisClient:
    """A client logged in as ``username`` (a cluster's: on every node it talks to)."""
    login = url.replace("redis://", f"redis://{username}:{password}@", 1)
    redis = connect(login, cluster=cluster)
    if isinstance(redis, RedisCluster):
        await redis.initialize()
    return redis


async def _works(url: str, cluster: bool, username: str, password: str) -> bool:
    """Whether ``username`` logs in with ``password`` (and may ping)."""
    try:
        tenant = await _as(url, cluster, username, password)
    except (AuthenticationError, RedisClusterException):  # a cluster's start says so
        return False
    try:
        await tenant.ping()
        return True
    except AuthenticationError:
        return False
    finally:
        await tenant.aclose()


async def _refused(call: Awaitable[Any]) -> bool:
    """Whether Redis refused the call for want of a right (``NOPERM``)."""
    try:
        await call
    except NoPermissionError:
        return True
    return False


@pytest.mark.asyncio
async def test_a_tick_runs_as_its_namespace_user_which_reaches_nothing_else(
    k8s_api: client.ApiClient,
    namespace: str,
    other_namespace: str,
    backend: tuple[str, bool],
    admin: RedisClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, cluster = backend
    kube = operator_kube(k8s_api)
    credentials = TickCredentials(kube, admin, cluster=cluster, rotate_every=DAY)
    await credentials.ensure(namespace)
    await credentials.ensure(other_namespace)
    mine, theirs = StackRef(namespace, "alpha"), StackRef(other_namespace, "beta")
    for ref in (mine, theirs):
        await publish_spec(admin, ref, 1, {"goal": f"goal of {ref}"}, uid=f"uid-{ref.name}")
    # B has a tool call waiting for a person.
    pending = waiting_approval("a1")
    await admin.hset(StackKeys(theirs).approvals, "a1", pending.to_json())

    secret = _secret(k8s_api, namespace)
    assert secret[USERNAME_KEY] == acl_user(namespace)
    # What the tick Job's pod runs, with what its environment holds.
    monkeypatch.setenv("REDIS_USERNAME", secret[USERNAME_KEY])
    monkeypatch.setenv("REDIS_PASSWORD", secret[PASSWORD_KEY])
    monkeypatch.setenv("AGENTSTACK_RUNNER_CREDENTIALS", "job")
    monkeypatch.setenv("REDIS_URL", url)
    monkeypatch.setenv("AGENTSTACK_REDIS_CLUSTER", str(cluster).lower())
    config = RunnerConfig.from_env()
    for slot, kind in [(1, TickKind.WORK), (2, TickKind.WORK), (3, TickKind.SLEEP)]:
        request = TickRequest(
            stack=mine,
            generation=1,
            tick_id=(sleep_tick_id if kind is TickKind.SLEEP else tick_id)(mine, slot),
            slot=slot,
            deadline=time.time() + 60,
            uid="uid-alpha",
            kind=kind,
        )
        assert await run_once(config, request) == 0, kind
        recorded = await TickStore(admin, mine).outcome(request.tick_id)
        assert recorded is not None
        assert recorded.outcome is Outcome.SUCCEEDED, recorded
    # Nothing in the shared results stream (the operator reads A's results from A's keys).
    published = await admin.xrange(FleetKeys.results)
    assert [f for _id, f in published if f.get("stack") == str(mine)] == []

    tenant = await _as(url, cluster, secret[USERNAME_KEY], secret[PASSWORD_KEY])
    try:
        assert await tenant.get(StackKeys(mine).plan)  # its own keys: yes
        refused: list[tuple[str, Any]] = [
            ("read B's spec", tenant.hgetall(StackKeys(theirs).spec)),
            ("read B's plan", tenant.get(StackKeys(theirs).plan)),
            ("write B's memory", tenant.hset(StackKeys(theirs).memory("builder"), "k", "v")),
            (
                "decide B's approval",
                decide_approval(tenant, theirs, "a1", approved=True, by="tenant-a"),
            ),
            ("append a result", tenant.xadd(FleetKeys.results, {"stack": str(theirs)})),
            ("send a tick", tenant.xadd(FleetKeys.lane("normal"), {"stack": str(theirs)})),
            ("take an LLM slot", tenant.zadd(FleetKeys.llm_slots("groq"), {"x": 1.0})),
        ]
        allowed = [what for what, call in refused if not await _refused(call)]
        for command in (("KEYS", "*"), ("SCAN", "0"), ("FLUSHALL",), ("ACL", "LIST")):
            options = {"target_nodes": [tenant.get_random_node()]} if cluster else {}
            if not await _refused(tenant.execute_command(*command, **options)):
                allowed.append(" ".join(command))
        assert allowed == []
    finally:
        await tenant.aclose()
    (untouched,) = await read_approvals(admin, theirs)
    assert untouched == pending
    assert await admin.hgetall(StackKeys(theirs).memory("builder")) == {}


@pytest.mark.asyncio
async def test_a_rotation_keeps_the_old_password_until_the_next_one(
    k8s_api: client.ApiClient, namespace: str, backend: tuple[str, bool], admin: RedisClient
) -> None:
    url, cluster = backend
    clock = Clock(time.time())
    credentials = TickCredentials(
        operator_kube(k8s_api), admin, cluster=cluster, rotate_every=DAY, clock=clock
    )
    await credentials.ensure(namespace)
    first = _secret(k8s_api, namespace)[PASSWORD_KEY]
    user = acl_user(namespace)

    async def works(password: str) -> bool:
        return await _works(url, cluster, user, password)

    await credentials.refresh({namespace})  # not due: nothing changes
    assert _secret(k8s_api, namespace)[PASSWORD_KEY] == first
    clock.now += DAY
    await credentials.refresh({namespace})
    second = _secret(k8s_api, namespace)
    assert second[PASSWORD_KEY] != first
    assert second[PREVIOUS_ANNOTATION]  # the old one's hash, not the old one
    assert first not in second.values()
    assert await works(first)
    assert await works(second[PASSWORD_KEY])
    clock.now += DAY
    await credentials.refresh({namespace})
    third = _secret(k8s_api, namespace)[PASSWORD_KEY]
    assert not await works(first)
    assert await works(second[PASSWORD_KEY])
    assert await works(third)

    # Redis lost its ACL users (a restart without an aclfile): the next refresh restores it.
    if isinstance(admin, RedisCluster):
        await admin.execute_command("ACL", "DELUSER", user, target_nodes=admin.get_nodes())
    else:
        await admin.execute_command("ACL", "DELUSER", user)
    assert not await works(third)
    await credentials.refresh({namespace})
    assert await works(third)


def test_a_stack_whose_namespace_cannot_get_credentials_waits_saying_what_to_grant(
    fleet: Fleet,
    k8s_api: client.ApiClient,
    namespace: str,
    redis_server: RedisServer,
    redis_reader: redis.Redis,
) -> None:
    """The operator's Redis user may not manage ACL users: an ``executor: job`` stack is
    Ready=False with what to grant, and an Event, before any Job; once granted, it
    ticks."""
    redis_reader.execute_command("ACL", "SETUSER", "narrow", "reset", "on", ">pw", "~*", "&*")
    redis_reader.execute_command("ACL", "SETUSER", "narrow", "+@all", "-acl")
    try:
        narrow = redis_server.url.replace("redis://", "redis://narrow:pw@", 1)
        fleet.operator(REDIS_URL=narrow)
        stacks = Stacks(k8s_api, namespace, redis_reader)
        stacks.create("waiting", executor="job", tickIntervalSeconds=5)
        ready = stacks.wait_condition("waiting", "Ready", "False", "JobCredentialsUnavailable")
        assert "+acl|setuser" in ready["message"]
        stacks.wait_event("waiting", "JobCredentialsUnavailable")
        jobs = client.BatchV1Api(k8s_api).list_namespaced_job(namespace).items
        assert jobs == []
        assert redis_reader.execute_command("ACL", "GETUSER", acl_user(namespace)) is None

        redis_reader.execute_command("ACL", "SETUSER", "narrow", "+acl|setuser")
        stacks.wait_event("waiting", "JobCredentialsReady")
        stacks.wait_condition("waiting", "Ready", "True")
        eventually(
            lambda: client.BatchV1Api(k8s_api).list_namespaced_job(namespace).items or None,
            "the stack's first tick Job",
        )
        assert _secret(k8s_api, namespace)[USERNAME_KEY] == acl_user(namespace)
    finally:
        redis_reader.execute_command("ACL", "DELUSER", "narrow")


@pytest.mark.asyncio
async def test_a_namespace_without_job_stacks_loses_its_user_after_the_grace(
    k8s_api: client.ApiClient, namespace: str, backend: tuple[str, bool], admin: RedisClient
) -> None:
    """The user outlives the namespace's last Job stack by the rotation period (a Job
    started just before may still run), then is deleted on every node; a Job stack
    coming back within the grace keeps it, one coming back later gets it made again."""
    url, cluster = backend
    clock = Clock(time.time())
    credentials = TickCredentials(
        operator_kube(k8s_api), admin, cluster=cluster, rotate_every=DAY, clock=clock
    )
    user = acl_user(namespace)
    await credentials.ensure(namespace)
    password = _secret(k8s_api, namespace)[PASSWORD_KEY]

    await credentials.refresh(set())  # the last Job stack left
    clock.now += DAY / 2
    await credentials.refresh({namespace})  # one came back within the grace
    await credentials.refresh(set())  # and left again: the grace starts over
    clock.now += DAY / 2
    await credentials.refresh(set())
    assert await _works(url, cluster, user, password)

    clock.now += DAY / 2
    await credentials.refresh(set())
    assert not await _works(url, cluster, user, password)
    assert credentials.retiring == {}

    await credentials.ensure(namespace)  # a Job stack again, after the grace
    assert await _works(url, cluster, user, _secret(k8s_api, namespace)[PASSWORD_KEY])
