"""The live streams' hub: shared reads, positions, catch-up without gap or duplicate.

The hub runs over :class:`~tests.unit.test_api_fakes.FakeRedis`, whose ``xread`` blocks
until an entry is added, so the readers behave as on Redis; every wait is on a
condition with a timeout (:func:`~tests.unit.test_api_fakes.until`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from agentstack_core.keys import StackKeys, StackRef
from agentstack_operator.api.tailing import DroppedError, StreamHub, Tail, slot_group, stream_order
from tests.unit import test_api_fakes as fakes

ALPHA = StackKeys(StackRef("team", "alpha"))
BETA = StackKeys(StackRef("team", "beta"))
WAIT = 5.0


def _add(redis: fakes.FakeRedis, key: str, count: int) -> list[str]:
    return [redis.add(key, {"n": str(i)}) for i in range(count)]


async def _follow(hub: StreamHub, key: str) -> Tail:
    """A subscriber of new entries, caught up: what it gets next comes from the hub."""
    tail = await hub.follow(key, "$")
    assert await tail.next(0) == []
    return tail


async def _collect(tail: Tail, count: int) -> list[str]:
    return await fakes.collect(tail, count, WAIT)


async def _until(condition: Callable[[], bool], what: str) -> None:
    await fakes.until(condition, what, WAIT)


def test_stream_ids_order_by_time_then_sequence() -> None:
    assert stream_order("1700-10") > stream_order("1700-9") > stream_order("1699-99")
    assert sorted(["2-0", "10-0", "2-10", "2-9"], key=stream_order) == [
        "2-0",
        "2-9",
        "2-10",
        "10-0",
    ]


def test_on_a_cluster_a_stacks_keys_share_a_group_and_stacks_spread() -> None:
    assert slot_group(ALPHA.trace, True) == slot_group(ALPHA.feed, True)
    assert slot_group(ALPHA.trace, True) != slot_group(BETA.trace, True)
    assert {slot_group(k, False) for k in (ALPHA.trace, ALPHA.feed, BETA.trace)} == {0}


@pytest.mark.asyncio
async def test_one_reader_reads_every_watched_key_in_one_blocking_read() -> None:
    redis = fakes.FakeRedis()
    hub = fakes.hub(redis)
    keys = [ALPHA.trace, ALPHA.feed, BETA.trace]
    tails = [await _follow(hub, key) for key in keys for _ in range(3)]
    assert (hub.reader_count, hub.subscriber_count) == (1, 9)
    added = {key: _add(redis, key, 2) for key in keys}
    for tail in tails:
        assert await _collect(tail, 2) == added[tail.key]
    assert {ALPHA.trace, ALPHA.feed, BETA.trace} in [set(read) for read in redis.reads]
    for tail in tails:
        tail.close()
    await _until(lambda: hub.reader_count == 0, "the reader to stop with its last subscriber")
    again = await _follow(hub, BETA.feed)  # a new reader starts with a new key
    assert hub.reader_count == 1
    added = _add(redis, BETA.feed, 1)
    assert await _collect(again, 1) == added
    await hub.stop()
    assert hub.reader_count == 0


@pytest.mark.asyncio
async def test_a_resumed_subscriber_catches_up_then_takes_its_queue_each_entry_once() -> None:
    redis = fakes.FakeRedis()
    hub = fakes.hub(redis)
    old = _add(redis, ALPHA.trace, 250)  # more than one catch-up read
    resumed = await hub.follow(ALPHA.trace, old[9])
    assert hub.position(ALPHA.trace) == old[-1]  # the hub reads on from the newest
    watching = await hub.follow(ALPHA.trace, "$")
    new = _add(redis, ALPHA.trace, 5)
    await _until(lambda: hub.position(ALPHA.trace) == new[-1], "the hub to queue the new ones")
    assert await _collect(watching, 5) == new  # "$": only what came after it subscribed
    ids = await _collect(resumed, 240 + 5)
    assert ids == old[10:] + new
    assert await resumed.next(0) == []  # the queued copies of the new ones were dropped
    await hub.stop()


@pytest.mark.asyncio
async def test_a_newly_watched_key_starts_at_the_newest_id_its_subscriber_saw() -> None:
    redis = fakes.FakeRedis()
    hub = fakes.hub(redis)
    _add(redis, ALPHA.trace, 3)
    busy = await hub.follow(ALPHA.feed, "$")
    await _until(lambda: len(redis.reads) >= 2, "the reader to block on the feed alone")
    tail = await hub.follow(ALPHA.trace, "$")
    between = _add(redis, ALPHA.trace, 2)  # before the key joins the group's next read
    assert await _collect(tail, 2) == between
    busy.close()
    tail.close()
    await hub.stop()


@pytest.mark.asyncio
async def test_a_full_queue_drops_its_subscriber_without_holding_the_others() -> None:
    redis = fakes.FakeRedis()
    hub = StreamHub(redis, redis, block_ms=20, queue_entries=3)  # type: ignore[arg-type]
    slow = await _follow(hub, ALPHA.trace)
    fast = await _follow(hub, ALPHA.trace)
    for _ in range(10):  # one at a time: the fast one reads each before the next comes
        added = _add(redis, ALPHA.trace, 1)
        assert await _collect(fast, 1) == added
    assert slow.dropped
    assert hub.subscriber_count == 1
    with pytest.raises(DroppedError):
        await slow.next(0)
    slow.close()  # leaving after being dropped is harmless
    assert hub.subscriber_count == 1
    await hub.stop()


@pytest.mark.asyncio
async def test_a_failing_redis_is_retried_from_the_kept_positions() -> None:
    redis = fakes.FakeRedis()
    hub = fakes.hub(redis)
    tail = await _follow(hub, ALPHA.trace)
    first = _add(redis, ALPHA.trace, 2)
    assert await _collect(tail, 2) == first
    redis.failures = 3  # Redis restarts: the next reads fail
    reads = len(redis.reads)
    await _until(lambda: redis.failures == 0, "the reads to fail")
    later = _add(redis, ALPHA.trace, 2)
    assert await _collect(tail, 2) == later
    assert redis.reads[reads : reads + 4] == [{ALPHA.trace: first[-1]}] * 4  # where it was
    assert hub.reader_count == 1
    await hub.stop()


@pytest.mark.asyncio
async def test_a_read_in_flight_for_an_older_position_does_not_move_the_key_back() -> None:
    """A key left and watched again (from a newer id) while a read of it was in flight."""
    redis = fakes.FakeRedis()
    hub = fakes.hub(redis)
    other = await hub.follow(BETA.trace, "$")
    old = await hub.follow(ALPHA.trace, "$")
    await _until(
        lambda: bool(redis.reads) and ALPHA.trace in redis.reads[-1], "a read of alpha in flight"
    )
    old.close()
    ids = _add(redis, ALPHA.trace, 150)  # the read in flight returns the first 100
    new = await _follow(hub, ALPHA.trace)  # watched again, from ids[-1]
    reads = len(redis.reads)
    more = _add(redis, ALPHA.trace, 1)
    await _until(lambda: hub.position(ALPHA.trace) == more[-1], "the hub to read on")
    assert await _collect(new, 1) == more
    positions = [read[ALPHA.trace] for read in redis.reads[reads:] if ALPHA.trace in read]
    assert all(stream_order(p) >= stream_order(ids[-1]) for p in positions), positions
    other.close()
    new.close()
    await hub.stop()


@pytest.mark.asyncio
async def test_stop_cancels_the_readers() -> None:
    redis = fakes.FakeRedis()
    hub = fakes.hub(redis)
    tails = [await hub.follow(key, "$") for key in (ALPHA.trace, BETA.trace)]
    assert hub.reader_count == 1
    await hub.stop()
    assert (hub.reader_count, hub.subscriber_count) == (0, 0)
    tails[0].close()  # subscribers still open when the hub stopped leave harmlessly
    await asyncio.sleep(0)
