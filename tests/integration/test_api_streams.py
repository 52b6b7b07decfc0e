"""A stack's live streams on a real redis-server: the Server-Sent Events StreamViews
writes from a trace or feed stream, resumed, shared and dropped.

The service is read directly, with a ``disconnected`` callback the test controls, over
:class:`~tests.integration.streaming.WatchedRedis` (so a test sees where the hub read
from). The routes that serve these streams, and the fleet stream (which reads no Redis),
are tested in ``tests/unit/test_api_streams.py``.
"""

from __future__ import annotations

import json

import pytest
from prometheus_client import REGISTRY

from agentstack_api.auth import User
from agentstack_api.sse import KEEP_ALIVE, RETRY, StreamViews
from agentstack_api.views import FEED, TRACES
from agentstack_core.keys import StackKeys, StackRef
from agentstack_core.records import FeedRecord, TraceRecord
from tests.helpers import until
from tests.integration.streaming import WatchedRedis
from tests.unit import test_api_fakes as fakes

pytestmark = pytest.mark.asyncio

ALPHA = fakes.stack("team", "alpha")
KEYS = StackKeys(StackRef("team", "alpha"))


def _live(redis: WatchedRedis) -> StreamViews:
    """The real StreamViews over ``redis``, for a caller who may read namespace ``team``."""
    return fakes.services(fakes.FakeCache([ALPHA]), fakes.FakeAuthorizer({"team"}), redis)[2]


async def _traces(redis: WatchedRedis, count: int, first: int = 0) -> list[str]:
    """``count`` trace entries of ticks ``t{first}``…, added in one round trip; their ids."""
    pipe = redis.pipeline(transaction=False)
    for i in range(first, first + count):
        pipe.xadd(KEYS.trace, TraceRecord(tick_id=f"t{i}", agent="builder", at=1.5).to_fields())
    return [str(entry_id) for entry_id in await pipe.execute()]


async def test_a_stack_stream_resumes_after_the_last_event_id(
    watched_redis: WatchedRedis,
) -> None:
    ids = await _traces(watched_redis, 4)
    live = _live(watched_redis)
    live.heartbeat_seconds = 0
    chunks = await fakes.until_keep_alive(live.tail(ALPHA, TRACES, ids[1], fakes.stays_connected))
    assert chunks[0] == RETRY == "retry: 2000\n\n"
    assert chunks[-1] == KEEP_ALIVE == ": keep-alive\n\n"
    events = fakes.sse_events("".join(chunks))
    assert [(e["id"], e["event"]) for e in events] == [(ids[2], "trace"), (ids[3], "trace")]
    data = json.loads(events[0]["data"])
    assert (data["id"], data["tickId"], data["agent"], data["at"]) == (ids[2], "t2", "builder", 1.5)
    await live.hub.stop()


async def test_a_new_stack_stream_starts_after_the_newest_entry(
    watched_redis: WatchedRedis,
) -> None:
    redis = watched_redis
    ids = await _traces(redis, 3)
    await redis.xadd(KEYS.feed, FeedRecord(agent="communicator", content="old").to_fields())
    live = _live(redis)
    stream = live.tail(ALPHA, TRACES, "$", fakes.stays_connected)
    assert await anext(stream) == RETRY
    fresh = await _traces(redis, 2, first=3)
    got = [fakes.sse_events(await anext(stream))[0] for _ in fresh]
    assert [(e["id"], e["event"]) for e in got] == [(fresh[0], "trace"), (fresh[1], "trace")]
    later = await _traces(redis, 1, first=5)
    assert fakes.sse_events(await anext(stream))[0]["id"] == later[0]  # from the hub's queue
    assert redis.reads[0] == {KEYS.trace: ids[-1]}  # the hub read on from the newest
    await stream.aclose()
    await live.hub.stop()


async def test_a_stack_stream_ends_when_the_client_leaves(watched_redis: WatchedRedis) -> None:
    redis = watched_redis
    await _traces(redis, 2)
    live = _live(redis)
    checks = 0

    async def leaves_after_one_wait() -> bool:
        nonlocal checks
        checks += 1
        return checks > 1

    chunks = [chunk async for chunk in live.tail(ALPHA, FEED, "0-0", leaves_after_one_wait)]
    assert chunks == [RETRY, KEEP_ALIVE]  # the feed is empty; the trace stream is not read
    assert live.hub.subscriber_count == 0
    assert all(set(read) == {KEYS.feed} for read in redis.reads)
    await until(lambda: live.hub.reader_count == 0, "the reader to stop")


async def test_a_resumed_stream_sends_each_entry_once_when_catch_up_and_hub_overlap(
    watched_redis: WatchedRedis,
) -> None:
    redis = watched_redis
    ids = await _traces(redis, 3)
    live = _live(redis)
    live.heartbeat_seconds = 0
    stream = live.tail(ALPHA, TRACES, ids[0], fakes.stays_connected)
    assert await anext(stream) == RETRY  # registered with the hub, not caught up yet
    more = await _traces(redis, 3, first=3)
    await until(lambda: live.hub.position(KEYS.trace) == more[-1], "the hub to queue them")
    chunks = await fakes.until_keep_alive(stream)  # catch-up reads them too, then the queue
    assert [e["id"] for e in fakes.sse_events("".join(chunks))] == ids[1:] + more
    await live.hub.stop()


async def test_a_client_too_slow_for_its_queue_is_dropped_and_the_others_go_on(
    watched_redis: WatchedRedis,
) -> None:
    redis = watched_redis
    live = _live(redis)
    live.hub.queue_entries = 2
    slow = live.tail(ALPHA, TRACES, "$", fakes.stays_connected)
    fast = live.tail(ALPHA, TRACES, "$", fakes.stays_connected)
    assert (await anext(slow), await anext(fast)) == (RETRY, RETRY)
    ids: list[str] = []
    for i in range(5):
        ids.extend(await _traces(redis, 1, first=i))
        assert fakes.sse_events(await anext(fast))[0]["id"] == ids[-1]
    assert live.hub.subscriber_count == 1  # the slow one was dropped, nobody waited on it
    assert [chunk async for chunk in slow] == []  # its stream ends; it resumes by id
    await fast.aclose()
    await live.hub.stop()


async def test_open_streams_are_counted_in_the_subscribers_gauge(
    watched_redis: WatchedRedis,
) -> None:
    live = _live(watched_redis)

    def gauge() -> float | None:
        return REGISTRY.get_sample_value("agentstack_api_sse_subscribers")

    before = gauge() or 0
    stack = live.tail(ALPHA, FEED, "$", fakes.stays_connected)
    fleet = live.fleet(User("alice"), None, fakes.stays_connected)
    assert (await anext(stack), await anext(fleet)) == (RETRY, RETRY)
    assert await anext(fleet) == KEEP_ALIVE
    assert gauge() == before + 2
    await stack.aclose()
    await fleet.aclose()
    assert gauge() == before
    await live.hub.stop()
