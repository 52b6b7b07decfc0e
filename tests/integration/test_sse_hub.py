"""The live streams' hub on real Redis: standalone and a three-node cluster.

Each test runs on both backends (``aredis``). The hub reads with a client of its own,
named :data:`HUB_NAME`, so ``CLIENT LIST`` on every node tells exactly which connections
it holds; subscribers' short reads go through ``aredis``, like requests. Every wait is
bounded and ends on a condition, never on the clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from agentstack_api.tailing import READ_COUNT, StreamHub, slot_group
from agentstack_core.keys import StackKeys, StackRef
from agentstack_core.protocol import RedisClient
from tests.helpers import until
from tests.integration.conftest import RedisBackend
from tests.integration.streaming import add_entries, collect

HUB_NAME = "agentstack-test-hub"
STACKS = [StackKeys(StackRef("hub", name)) for name in ("alpha", "beta", "gamma")]
STREAMS = [STACKS[0].trace, STACKS[0].feed, STACKS[1].trace, STACKS[1].feed, STACKS[2].trace]
"""Five streams of three stacks: on a cluster, three slot groups."""


@pytest_asyncio.fixture
async def readers(redis_backend: RedisBackend) -> AsyncIterator[RedisClient]:
    """The hub's own client, named so that ``CLIENT LIST`` shows its connections."""
    kind = RedisCluster if redis_backend.cluster else Redis
    client = kind.from_url(redis_backend.url, decode_responses=True, client_name=HUB_NAME)
    try:
        yield client
    finally:
        await client.aclose()


async def _clients(aredis: RedisClient) -> list[dict[str, str]]:
    """``CLIENT LIST`` of every node."""
    if isinstance(aredis, RedisCluster):
        return [
            client
            for node in aredis.get_nodes()
            for client in await aredis.execute_command("CLIENT LIST", target_nodes=node)
        ]
    listed: list[dict[str, str]] = await aredis.execute_command("CLIENT LIST")
    return listed


async def _hub_connections(aredis: RedisClient) -> list[dict[str, str]]:
    return [c for c in await _clients(aredis) if c["name"] == HUB_NAME]


@pytest.mark.asyncio
async def test_fifty_subscribers_of_five_streams_get_every_entry_once_over_few_connections(
    aredis: RedisClient, readers: RedisClient, redis_backend: RedisBackend
) -> None:
    hub = StreamHub(aredis, readers)
    try:
        tails = [await hub.follow(key, "$") for key in STREAMS for _ in range(10)]
        readings = [asyncio.create_task(collect(tail, 40)) for tail in tails]
        added: dict[str, list[str]] = {key: [] for key in STREAMS}
        for _ in range(4):  # interleaved bursts on every stream
            for key in STREAMS:
                added[key].extend(await add_entries(aredis, key, 10))
        received = await asyncio.gather(*readings)
        for tail, ids in zip(tails, received, strict=True):
            assert ids == added[tail.key]  # all, in order, each once
            assert await tail.next(0) == []

        groups = {slot_group(key, redis_backend.cluster) for key in STREAMS}
        assert hub.reader_count == len(groups) == (3 if redis_backend.cluster else 1)
        connections = await _hub_connections(aredis)
        blocking = [c for c in connections if c["cmd"] == "xread"]
        # One connection per reader; a cluster client keeps one more from its slot lookup.
        assert len(blocking) == hub.reader_count
        assert len(connections) <= hub.reader_count + int(redis_backend.cluster)
        assert len(connections) <= len(STREAMS) < len(tails)
        print(
            f"\n{redis_backend.kind}: {len(tails)} subscribers on {len(STREAMS)} streams -> "
            f"{hub.reader_count} readers, {len(connections)} Redis connections of the hub"
        )
        for tail in tails:
            tail.close()
        await until(lambda: hub.reader_count == 0, "the readers to stop with the last one")
    finally:
        await hub.stop()


@pytest.mark.asyncio
async def test_a_resumed_subscriber_gets_the_missing_entries_without_duplicates(
    aredis: RedisClient, readers: RedisClient
) -> None:
    hub = StreamHub(aredis, readers)
    key = STACKS[0].trace
    try:
        before = await add_entries(aredis, key, 2 * READ_COUNT + 30)  # more than one catch-up read
        watching = await hub.follow(key, "$")
        resumed = await hub.follow(key, before[9])
        after = await add_entries(aredis, key, 20)
        await until(lambda: hub.position(key) == after[-1], "the hub to read the new entries")
        assert await collect(watching, 20) == after
        assert await collect(resumed, len(before) - 10 + 20) == before[10:] + after
        assert await resumed.next(0) == []  # the queued copies were dropped
    finally:
        await hub.stop()


@pytest.mark.asyncio
async def test_a_subscriber_that_stops_reading_is_dropped_without_delaying_the_others(
    aredis: RedisClient, readers: RedisClient
) -> None:
    hub = StreamHub(aredis, readers, queue_entries=READ_COUNT + 50)
    key = STACKS[1].feed
    try:
        stalled = await hub.follow(key, "$")
        others = [await hub.follow(key, "$") for _ in range(9)]
        for tail in [stalled, *others]:
            assert await tail.next(0) == []  # caught up: the rest comes from the hub
        readings = [asyncio.create_task(collect(tail, 400)) for tail in others]
        added = await add_entries(aredis, key, 400)  # read 100 at a time; the stalled one fills up
        for ids in await asyncio.gather(*readings):
            assert ids == added
        assert stalled.dropped
        assert hub.subscriber_count == 9
        stalled.close()

        # It reconnects with the last id it sent and gets the rest, exactly.
        resumed = await hub.follow(key, added[41])
        assert await collect(resumed, 400 - 42) == added[42:]
    finally:
        await hub.stop()


@pytest.mark.asyncio
async def test_the_hub_survives_its_connections_being_killed(
    aredis: RedisClient, readers: RedisClient
) -> None:
    hub = StreamHub(aredis, readers, backoff_seconds=(0.05, 0.5))
    keys = [STACKS[0].trace, STACKS[2].trace]
    try:
        tails = [await hub.follow(key, "$") for key in keys]
        first = {key: await add_entries(aredis, key, 5) for key in keys}
        for tail in tails:
            assert await collect(tail, 5) == first[tail.key]
        await until(
            lambda: all(hub.position(key) == first[key][-1] for key in keys), "the hub to read"
        )
        killed = 0
        before = await _hub_connections(aredis)
        for client in before:  # as a Redis restart would
            nodes = [
                node
                for node in (aredis.get_nodes() if isinstance(aredis, RedisCluster) else [None])
                if node is None or client["laddr"].endswith(f":{node.port}")
            ]
            options = {"target_nodes": nodes[0]} if nodes[0] is not None else {}
            await aredis.execute_command("CLIENT KILL", "ID", client["id"], **options)
            killed += client["cmd"] == "xread"
        assert (
            killed
            == hub.reader_count
            == len({slot_group(k, isinstance(aredis, RedisCluster)) for k in keys})
        )
        later = {key: await add_entries(aredis, key, 5) for key in keys}
        for tail in tails:
            assert await collect(tail, 5) == later[tail.key]  # no gap, no duplicate
            assert await tail.next(0) == []
        after = await _hub_connections(aredis)
        assert {c["id"] for c in after if c["cmd"] == "xread"}.isdisjoint(c["id"] for c in before)
    finally:
        await hub.stop()
