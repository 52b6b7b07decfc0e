"""Redis behind Sentinel: the processes' one client finds the primary through the
Sentinels (with passwords on both), follows a failover, and — with
``REDIS_WAIT_REPLICAS`` — never takes a commit a failover could lose for made.

The last two cases show the loss itself: a replica that lags (stopped) while the
primary acknowledges a write, then the primary killed and the replica promoted. Without
``WAIT`` the acknowledged write is gone; with it, the write was never acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from agentstack_core.approvals import Approval, ApprovalState
from agentstack_core.connection import SentinelPrimary, connect
from agentstack_core.keys import StackKeys
from agentstack_core.protocol import RedisClient
from agentstack_core.redis.approvals import claim_approval, decide_approval, read_approvals
from agentstack_core.redis.errors import NotDurableError
from agentstack_core.redis.tick import TickStore, lease_token
from agentstack_devkit.redissentinel import SentinelRedis
from tests.integration.support import STACK, publish

pytestmark = pytest.mark.asyncio

PASSWORD = "server-password-never-logged"
SENTINEL_PASSWORD = "sentinel-password-never-logged"
TICK = "team/demo/1"
RECONNECT_SECONDS = 30.0
"""How long a client may take to reach the new primary after the kill (promotion is
about 2 s with the Sentinels' 1 s down-after; the rest is slack for a loaded machine)."""


@pytest.fixture(scope="module")
def sentinel_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelRedis]:
    with SentinelRedis(
        data_dir=tmp_path_factory.mktemp("sentinel"),
        password=PASSWORD,
        sentinel_password=SENTINEL_PASSWORD,
    ) as setup:
        yield setup


def _environment(
    monkeypatch: pytest.MonkeyPatch, setup: SentinelRedis, *, wait_replicas: int
) -> str:
    for name, value in setup.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("REDIS_WAIT_REPLICAS", str(wait_replicas))
    monkeypatch.setenv("REDIS_WAIT_TIMEOUT_SECONDS", "0.3")
    return setup.env()["REDIS_URL"]


@pytest_asyncio.fixture
async def durable(
    sentinel_redis: SentinelRedis, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[RedisClient]:
    """The processes' client through the Sentinels, asking one replica per commit."""
    async with _client(sentinel_redis, monkeypatch, wait_replicas=1) as client:
        yield client


@pytest_asyncio.fixture
async def acknowledged(
    sentinel_redis: SentinelRedis, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[RedisClient]:
    """The same client without ``WAIT``: a commit is made when the primary says so."""
    async with _client(sentinel_redis, monkeypatch, wait_replicas=0) as client:
        yield client


@contextlib.asynccontextmanager
async def _client(
    setup: SentinelRedis, monkeypatch: pytest.MonkeyPatch, *, wait_replicas: int
) -> AsyncIterator[RedisClient]:
    client = connect(_environment(monkeypatch, setup, wait_replicas=wait_replicas))
    try:
        yield client
    finally:
        await _settled(client)
        await client.flushall()
        await client.aclose()


async def _settled(client: RedisClient) -> None:
    """Retry until the client reaches a primary again (after a case's failover)."""
    deadline = time.monotonic() + RECONNECT_SECONDS
    while True:
        try:
            await client.ping()
            return
        except (RedisConnectionError, RedisTimeoutError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def test_the_client_finds_the_primary_through_the_sentinels_with_passwords(
    sentinel_redis: SentinelRedis, durable: RedisClient
) -> None:
    assert isinstance(durable, SentinelPrimary)
    await durable.set("greeting", "hello")
    with contextlib.closing(sentinel_redis.primary.client()) as primary:
        assert primary.get("greeting") == "hello"
        assert primary.info("replication")["role"] == "master"
    # Neither password shows in what a log line or a traceback would print.
    shown = f"{durable!r} {durable.connection_pool!r}"
    assert PASSWORD not in shown
    assert SENTINEL_PASSWORD not in shown


async def test_a_password_file_logs_in_through_the_sentinels(
    sentinel_redis: SentinelRedis, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    url = _environment(monkeypatch, sentinel_redis, wait_replicas=0)
    monkeypatch.delenv("REDIS_PASSWORD")
    password_file = tmp_path / "redis-password"
    password_file.write_text(f"{PASSWORD}\n")
    monkeypatch.setenv("REDIS_PASSWORD_FILE", str(password_file))
    client = connect(url)
    try:
        assert await client.ping()
    finally:
        await client.aclose()


async def test_the_client_follows_a_failover_and_keeps_what_was_confirmed(
    sentinel_redis: SentinelRedis, durable: RedisClient
) -> None:
    await publish(durable, {"goal": "g"})
    old = sentinel_redis.primary_port()
    state, decided = await _ask_and_decide(durable)
    assert (state, decided) == (ApprovalState.APPROVED, True)  # confirmed by the replica
    # In the test's own thread, never asyncio.to_thread: a server dies with the thread
    # that started it (PR_SET_PDEATHSIG), and the loop's worker threads end with the test.
    sentinel_redis.failover()
    assert sentinel_redis.primary_port() != old
    await _settled(durable)
    (approval,) = await read_approvals(durable, STACK)
    assert approval.state == ApprovalState.APPROVED  # survived the failover


async def test_an_acknowledged_write_is_lost_by_a_failover_without_wait(
    sentinel_redis: SentinelRedis, acknowledged: RedisClient
) -> None:
    """What asynchronous replication loses: the decision was answered (the API's 200),
    then the primary died before the lagging replica had it."""
    await publish(acknowledged, {"goal": "g"})
    await _ask(acknowledged)
    await acknowledged.execute_command("WAIT", 1, 5000)  # the request itself is replicated
    with sentinel_redis.lagging():
        state, decided = await _ask_and_decide(acknowledged, ask=False)
        assert (state, decided) == (ApprovalState.APPROVED, True)
        killed = sentinel_redis.kill_primary()
    sentinel_redis.wait_promoted(killed.port)
    sentinel_redis.rejoin(killed)
    await _settled(acknowledged)
    (approval,) = await read_approvals(acknowledged, STACK)
    assert approval.state == ApprovalState.PENDING  # the decision answered 200 is gone


async def test_with_wait_an_unconfirmed_decision_is_never_acknowledged(
    sentinel_redis: SentinelRedis, durable: RedisClient
) -> None:
    await publish(durable, {"goal": "g"})
    await _ask(durable)
    with (
        sentinel_redis.lagging(),
        pytest.raises(NotDurableError, match="decide_approval: 0 of 1"),
    ):
        await _ask_and_decide(durable, ask=False)
    # Once the replica is back, the same decision is confirmed (the first one stands on
    # the primary: "decided before", which the API reads back rather than answers 200).
    state, decided = await _ask_and_decide(durable, ask=False)
    assert (state, decided) == (ApprovalState.APPROVED, False)


async def test_an_unconfirmed_claim_is_given_back_and_the_call_not_made(
    sentinel_redis: SentinelRedis, durable: RedisClient
) -> None:
    """The claim of an approved call comes just before the call: unconfirmed, the call
    is not made and the claim is given back, so a later attempt makes it — once."""
    await publish(durable, {"goal": "g"})
    await _ask_and_decide(durable)
    store = TickStore(durable, STACK)
    token = lease_token(TICK, "runner-a", "n1")
    assert (await store.begin(TICK, token, ttl_seconds=30)).published is not None
    with sentinel_redis.lagging(), pytest.raises(NotDurableError):
        await claim_approval(durable, STACK, "a1", token=token, tick=TICK)
    (approval,) = await read_approvals(durable, STACK)
    assert approval.state == ApprovalState.APPROVED
    assert await claim_approval(durable, STACK, "a1", token=token, tick=TICK) == "Claimed"


async def _ask(client: RedisClient) -> None:
    asked = Approval("a1", "builder", "kb/lookup", "{}", TICK, time.time(), time.time() + 600)
    await client.hset(StackKeys(STACK).approvals, "a1", asked.to_json())  # type: ignore[misc]


async def _ask_and_decide(client: RedisClient, *, ask: bool = True) -> tuple[str, bool]:
    if ask:
        await _ask(client)
    return await decide_approval(client, STACK, "a1", approved=True, by="alice")
