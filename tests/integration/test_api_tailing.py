"""The live streams' hub on one real redis-server: shared reads, positions, catch-up
without gap or duplicate, slow subscribers, failed reads.

The hub reads through :class:`~tests.integration.streaming.WatchedRedis` (requests and
readers alike, in short blocks), so a test sees where each ``XREAD`` read from; Redis
answers every read. A failing Redis is a real one, stopped and started again. Every
wait is on a condition with a timeout. (``test_sse_hub`` runs the hub at scale, on a
cluster too.)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from agentstack_api.tailing import DroppedError, StreamHub, Tail, stream_order
from agentstack_core.keys import StackKeys, StackRef
from agentstack_devkit.redisserver import RedisServer
from tests.helpers import until
from tests.integration.streaming import WAIT, WatchedRedis, add_entries, collect
from tests.unit.test_api_fakes import hub as short_reads_hub

pytestmark = pytest.mark.asyncio

ALPHA = StackKeys(StackRef("team", "alpha"))
BETA = StackKeys(StackRef("team", "beta"))


async def _follow(hub: StreamHub, key: str) -> Tail:
    """A subscriber of new entries, caught up: what it gets next comes from the hub."""
    tail = await hub.follow(key, "$")
    assert await tail.next(0) == []
    return tail


async def test_one_reader_reads_every_watched_key_in_one_blocking_read(
    watched_redis: WatchedRedis,
) -> None:
    redis = watched_redis
    hub = short_reads_hub(redis)
    keys = [ALPHA.trace, ALPHA.feed, BETA.trace]
    tails = [await _follow(hub, key) for key in keys for _ in range(3)]
    assert (hub.reader_count, hub.subscriber_count) == (1, 9)
    added = {key: await add_entries(redis, key, 2) for key in keys}
    for tail in tails:
        assert await collect(tail, 2) == added[tail.key]
    assert {ALPHA.trace, ALPHA.feed, BETA.trace} in [set(read) for read in redis.reads]
    for tail in tails:
        tail.close()
    await until(lambda: hub.reader_count == 0, "the reader to stop with its last subscriber")
    again = await _follow(hub, BETA.feed)  # a new reader starts with a new key
    assert hub.reader_count == 1
    added_again = await add_entries(redis, BETA.feed, 1)
    assert await collect(again, 1) == added_again
    await hub.stop()
    assert hub.reader_count == 0


async def test_a_resumed_subscriber_catches_up_then_takes_its_queue_each_entry_once(
    watched_redis: WatchedRedis,
) -> None:
    redis = watched_redis
    hub = short_reads_hub(redis)
    old = await add_entries(redis, ALPHA.trace, 250)  # more than one catch-up read
    resumed = await hub.follow(ALPHA.trace, old[9])
    assert hub.position(ALPHA.trace) == old[-1]  # the hub reads on from the newest
    watching = await hub.follow(ALPHA.trace, "$")
    new = await add_entries(redis, ALPHA.trace, 5)
    await until(lambda: hub.position(ALPHA.trace) == new[-1], "the hub to queue the new ones")
    assert await collect(watching, 5) == new  # "$": only what came after it subscribed
    ids = await collect(resumed, 240 + 5)
    assert ids == old[10:] + new
    assert await resumed.next(0) == []  # the queued copies of the new ones were dropped
    await hub.stop()


async def test_a_newly_watched_key_starts_at_the_newest_id_its_subscriber_saw(
    watched_redis: WatchedRedis,
) -> None:
    redis = watched_redis
    hub = short_reads_hub(redis)
    await add_entries(redis, ALPHA.trace, 3)
    busy = await hub.follow(ALPHA.feed, "$")
    await until(lambda: len(redis.reads) >= 2, "the reader to block on the feed alone")
    tail = await hub.follow(ALPHA.trace, "$")
    between = await add_entries(redis, ALPHA.trace, 2)  # before the key joins the next read
    assert await collect(tail, 2) == between
    busy.close()
    tail.close()
    await hub.stop()


async def test_a_full_queue_drops_its_subscriber_without_holding_the_others(
    watched_redis: WatchedRedis,
) -> None:
    redis = watched_redis
    hub = StreamHub(redis, redis, block_ms=20, queue_entries=3)
    slow = await _follow(hub, ALPHA.trace)
    fast = await _follow(hub, ALPHA.trace)
    for _ in range(10):  # one at a time: the fast one reads each before the next comes
        added = await add_entries(redis, ALPHA.trace, 1)
        assert await collect(fast, 1) == added
    assert slow.dropped
    assert hub.subscriber_count == 1
    with pytest.raises(DroppedError):
        await slow.next(0)
    slow.close()  # leaving after being dropped is harmless
    assert hub.subscriber_count == 1
    await hub.stop()


@pytest_asyncio.fixture
async def restartable() -> AsyncIterator[tuple[RedisServer, WatchedRedis]]:
    """A redis-server of this test's own (it is stopped and started again) and a client."""
    with RedisServer() as server:
        client = WatchedRedis.watching(server.url)
        try:
            yield server, client
        finally:
            await client.aclose()


async def test_a_failing_redis_is_retried_from_the_kept_positions(
    restartable: tuple[RedisServer, WatchedRedis],
) -> None:
    server, redis = restartable
    hub = short_reads_hub(redis)
    tail = await _follow(hub, ALPHA.trace)
    first = await add_entries(redis, ALPHA.trace, 2)
    assert await collect(tail, 2) == first
    await until(lambda: hub.position(ALPHA.trace) == first[-1], "the hub to read them")
    reads, failed = len(redis.reads), redis.failed_reads
    with server.outage():  # Redis is down: the read in flight fails, then every retry
        await until(lambda: redis.failed_reads >= failed + 4, "reads to fail while it is down")
    retries = len(redis.reads) - reads  # made while it was down (the server starts blocking)
    # Back, empty (it kept nothing on disk): new entries get newer ids than the old ones.
    later = await add_entries(redis, ALPHA.trace, 2)
    assert await collect(tail, 2) == later
    assert retries >= 3
    # Every retry, and the read that got the new entries, read from where it was.
    assert redis.reads[reads : reads + retries + 1] == [{ALPHA.trace: first[-1]}] * (retries + 1)
    assert hub.reader_count == 1
    await hub.stop()


async def test_a_read_in_flight_for_an_older_position_does_not_move_the_key_back(
    watched_redis: WatchedRedis,
) -> None:
    """A key left and watched again (from a newer id) while a read of it was in flight."""
    redis = watched_redis
    hub = StreamHub(redis, redis, block_ms=60_000)  # a read stays in flight until entries come
    old = await hub.follow(ALPHA.trace, "$")
    other = await hub.follow(BETA.trace, "$")
    await until(lambda: bool(redis.reads) and ALPHA.trace in redis.reads[-1], "a read of alpha")
    released = redis.hold_replies()  # its reply comes late, after the key is watched again
    old.close()
    ids = await add_entries(redis, ALPHA.trace, 150, atomic=True)  # the read gets the first 100
    new = await _follow(hub, ALPHA.trace)  # watched again, from ids[-1]
    reads = len(redis.reads)
    assert stream_order(redis.reads[-1][ALPHA.trace]) < stream_order(ids[0])  # in flight
    hub.block_ms = 20  # the reads after it are short again
    released.set()
    await until(lambda: len(redis.reads) > reads, "the late reply to be handled")
    more = await add_entries(redis, ALPHA.trace, 1)
    await until(lambda: hub.position(ALPHA.trace) == more[-1], "the hub to read on")
    assert await collect(new, 1) == more
    assert redis.failed_reads == 0  # the read in flight was answered (with older entries)
    positions = [read[ALPHA.trace] for read in redis.reads[reads:] if ALPHA.trace in read]
    assert all(stream_order(p) >= stream_order(ids[-1]) for p in positions), positions
    other.close()
    new.close()
    await hub.stop()


async def test_stop_cancels_the_readers(watched_redis: WatchedRedis) -> None:
    hub = short_reads_hub(watched_redis)
    tails = [await hub.follow(key, "$") for key in (ALPHA.trace, BETA.trace)]
    assert hub.reader_count == 1
    await hub.stop()
    assert (hub.reader_count, hub.subscriber_count) == (0, 0)
    tails[0].close()  # subscribers still open when the hub stopped leave harmlessly
    await asyncio.sleep(0)


async def test_stop_ends_a_reader_whose_cancellation_the_client_lost(
    watched_redis: WatchedRedis,
) -> None:
    """redis-py 8.1 can hand a cancelled reader its ``XREAD`` reply instead of the
    cancellation: a reader that then read on would keep ``stop`` (and the API's
    shutdown) waiting for ever."""
    redis = watched_redis
    hub = short_reads_hub(redis)
    await _follow(hub, ALPHA.trace)
    await until(lambda: bool(redis.reads), "a read in flight")
    redis.lose_cancellations = True
    await asyncio.wait_for(hub.stop(), WAIT)
    assert redis.lost_cancellations == 1
    assert hub.reader_count == 0
