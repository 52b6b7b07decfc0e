"""Live streams: the Server-Sent Events StreamViews writes, and the routes that serve them.

The service is read directly, with a fake Redis and a ``disconnected`` callback the test
controls; the routes are served from a small app whose stream service is a fake that
records what it was asked for and sends a finite stream (a real one never ends).
"""

from __future__ import annotations

import contextlib
import inspect
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY

from agentstack_core.keys import StackKeys, StackRef
from agentstack_core.records import FeedRecord, TraceRecord
from agentstack_operator.api.access import StackAccess
from agentstack_operator.api.auth import User
from agentstack_operator.api.routes import streams
from agentstack_operator.api.sse import KEEP_ALIVE, RETRY, StreamViews
from agentstack_operator.api.views import FEED, TRACES, StreamKind
from tests.unit import test_api_fakes as fakes

ALPHA = fakes.stack("team", "alpha")
KEYS = StackKeys(StackRef("team", "alpha"))
TOKEN = {"Authorization": "Bearer alice-token"}


def _events(text: str) -> list[dict[str, str]]:
    """Parse Server-Sent Events the way a browser does (comments dropped)."""
    events = []
    for block in text.split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in block.splitlines() if not line.startswith(":")
        )
        if "data" in fields:
            events.append(fields)
    return events


async def _until_keep_alive(stream: AsyncIterator[str], limit: int = 50) -> list[str]:
    """The chunks of a stream up to its first keep-alive (the client then leaves)."""
    chunks: list[str] = []
    async with contextlib.aclosing(stream):
        async for chunk in stream:
            chunks.append(chunk)
            if chunk == KEEP_ALIVE or len(chunks) >= limit:
                break
    return chunks


async def _connected() -> bool:
    return False


def _live(redis: fakes.FakeRedis, cache: fakes.FakeCache | None = None) -> StreamViews:
    """The real StreamViews over fakes, for a caller who may read namespace ``team``."""
    cache = cache if cache is not None else fakes.FakeCache([ALPHA])
    return fakes.services(cache, fakes.FakeAuthorizer({"team"}), redis)[2]


def _traces(redis: fakes.FakeRedis, count: int) -> list[str]:
    return [
        redis.add(KEYS.trace, TraceRecord(tick_id=f"t{i}", agent="builder", at=1.5).to_fields())
        for i in range(count)
    ]


@pytest.mark.asyncio
async def test_a_stack_stream_resumes_after_the_last_event_id() -> None:
    redis = fakes.FakeRedis()
    ids = _traces(redis, 4)
    live = _live(redis)
    live.heartbeat_seconds = 0
    chunks = await _until_keep_alive(live.tail(ALPHA, TRACES, ids[1], _connected))
    assert chunks[0] == RETRY == "retry: 2000\n\n"
    assert chunks[-1] == KEEP_ALIVE == ": keep-alive\n\n"
    events = _events("".join(chunks))
    assert [(e["id"], e["event"]) for e in events] == [(ids[2], "trace"), (ids[3], "trace")]
    data = json.loads(events[0]["data"])
    assert (data["id"], data["tickId"], data["agent"], data["at"]) == (ids[2], "t2", "builder", 1.5)


@pytest.mark.asyncio
async def test_a_new_stack_stream_starts_after_the_newest_entry() -> None:
    redis = fakes.FakeRedis()
    ids = _traces(redis, 3)
    redis.add(KEYS.feed, FeedRecord(agent="communicator", content="old").to_fields())
    live = _live(redis)
    stream = live.tail(ALPHA, TRACES, "$", _connected)
    assert await anext(stream) == RETRY
    fresh = [redis.add(KEYS.trace, TraceRecord(tick_id=f"t{i}").to_fields()) for i in (3, 4)]
    got = [_events(await anext(stream))[0] for _ in fresh]
    assert [(e["id"], e["event"]) for e in got] == [(fresh[0], "trace"), (fresh[1], "trace")]
    later = redis.add(KEYS.trace, TraceRecord(tick_id="t5").to_fields())
    assert _events(await anext(stream))[0]["id"] == later  # from the hub's queue
    assert redis.reads[0] == {KEYS.trace: ids[-1]}  # the hub read on from the newest
    await stream.aclose()


@pytest.mark.asyncio
async def test_a_stack_stream_ends_when_the_client_leaves() -> None:
    redis = fakes.FakeRedis()
    _traces(redis, 2)
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
    await fakes.until(lambda: live.hub.reader_count == 0, "the reader to stop")


@pytest.mark.asyncio
async def test_a_resumed_stream_sends_each_entry_once_when_catch_up_and_hub_overlap() -> None:
    redis = fakes.FakeRedis()
    ids = _traces(redis, 3)
    live = _live(redis)
    live.heartbeat_seconds = 0
    stream = live.tail(ALPHA, TRACES, ids[0], _connected)
    assert await anext(stream) == RETRY  # registered with the hub, not caught up yet
    more = _traces(redis, 3)
    await fakes.until(lambda: live.hub.position(KEYS.trace) == more[-1], "the hub to queue them")
    chunks = await _until_keep_alive(stream)  # catch-up reads them too, then the queue
    assert [e["id"] for e in _events("".join(chunks))] == ids[1:] + more


@pytest.mark.asyncio
async def test_a_client_too_slow_for_its_queue_is_dropped_and_the_others_go_on() -> None:
    redis = fakes.FakeRedis()
    live = _live(redis)
    live.hub.queue_entries = 2
    slow = live.tail(ALPHA, TRACES, "$", _connected)
    fast = live.tail(ALPHA, TRACES, "$", _connected)
    assert (await anext(slow), await anext(fast)) == (RETRY, RETRY)
    ids = []
    for _ in range(5):
        ids.extend(_traces(redis, 1))
        assert _events(await anext(fast))[0]["id"] == ids[-1]
    assert live.hub.subscriber_count == 1  # the slow one was dropped, nobody waited on it
    assert [chunk async for chunk in slow] == []  # its stream ends; it resumes by id
    await fast.aclose()


@pytest.mark.asyncio
async def test_open_streams_are_counted_in_the_subscribers_gauge() -> None:
    live = _live(fakes.FakeRedis(), fakes.FakeCache([ALPHA]))

    def gauge() -> float | None:
        return REGISTRY.get_sample_value("agentstack_api_sse_subscribers")

    before = gauge() or 0
    stack = live.tail(ALPHA, FEED, "$", _connected)
    fleet = live.fleet(User("alice"), None, _connected)
    assert (await anext(stack), await anext(fleet)) == (RETRY, RETRY)
    assert await anext(fleet) == KEEP_ALIVE
    assert gauge() == before + 2
    await stack.aclose()
    await fleet.aclose()
    assert gauge() == before


@pytest.mark.asyncio
async def test_the_fleet_stream_shows_only_allowed_namespaces_and_resumes() -> None:
    cache = fakes.FakeCache()
    live = _live(fakes.FakeRedis(), cache)
    cache.emit("upsert", fakes.stack("team", "alpha"))
    cache.emit("upsert", fakes.stack("hidden", "beta"))
    cache.emit("delete", fakes.stack("team", "gamma"))
    chunks = await _until_keep_alive(live.fleet(User("alice"), 0, _connected))
    assert chunks[0] == RETRY
    events = _events("".join(chunks))
    assert [(e["id"], e["event"]) for e in events] == [("1", "upsert"), ("3", "delete")]
    assert json.loads(events[0]["data"])["name"] == "alpha"
    assert cache._listeners == set()  # the subscription closed with the stream

    stream = live.fleet(User("alice"), None, _connected)
    assert await anext(stream) == RETRY
    assert await anext(stream) == KEEP_ALIVE  # nothing replayed without a Last-Event-ID
    change = cache.emit("upsert", fakes.stack("team", "alpha", state="Paused"))
    assert _events(await anext(stream))[0]["id"] == str(change.seq)
    await stream.aclose()


class FakeStreams:
    """Records each stream asked for, and sends one event and ends."""

    def __init__(self) -> None:
        self.asked: list[tuple[Any, ...]] = []

    async def tail(
        self, stack: dict[str, Any], kind: StreamKind[Any], start: str, disconnected: Any
    ) -> AsyncIterator[str]:
        self.asked.append((stack["metadata"]["name"], kind, start))
        yield RETRY
        yield f"id: 1-0\nevent: {kind.event}\ndata: {{}}\n\n"

    async def fleet(self, caller: User, after: int | None, disconnected: Any) -> AsyncIterator[str]:
        self.asked.append((caller.name, after))
        yield RETRY


def _app(fake: FakeStreams) -> httpx.AsyncClient:
    cache = fakes.FakeCache([ALPHA, fakes.stack("hidden", "beta")])
    auth = fakes.FakeAuthorizer({"team"}, tokens={"alice-token": User("alice")})
    access = StackAccess(cache, auth)
    return fakes.client(fakes.app_with(streams.router, access=access, streams=fake))


@pytest.mark.asyncio
@pytest.mark.parametrize(("suffix", "kind"), [("traces", TRACES), ("feed", FEED)])
async def test_a_stack_stream_route_serves_event_stream_text(
    suffix: str, kind: StreamKind[Any]
) -> None:
    fake = FakeStreams()
    path = f"/api/v1/namespaces/team/stacks/alpha/{suffix}/stream"
    async with _app(fake) as http:
        opened = await http.get(path, headers=TOKEN)
        resumed = await http.get(path, headers={**TOKEN, "Last-Event-ID": "1700-3"})
    assert opened.status_code == 200
    assert opened.headers["content-type"].startswith("text/event-stream")
    assert opened.headers["cache-control"] == "no-cache"
    assert opened.headers["x-accel-buffering"] == "no"
    assert _events(opened.text)[0]["event"] == kind.event
    assert fake.asked == [("alpha", kind, "$"), ("alpha", kind, "1700-3")]
    assert resumed.status_code == 200


@pytest.mark.asyncio
async def test_a_stack_stream_is_refused_before_it_opens() -> None:
    fake = FakeStreams()
    async with _app(fake) as http:
        base = "/api/v1/namespaces/{}/stacks/{}/traces/stream"
        for (namespace, name), headers, status, code in (
            (("team", "alpha"), {}, 401, "Unauthorized"),
            (("hidden", "beta"), TOKEN, 403, "Forbidden"),
            (("team", "nope"), TOKEN, 404, "NotFound"),
        ):
            response = await http.get(base.format(namespace, name), headers=headers)
            fakes.error_of(response, status, code)
        bad = await http.get(
            base.format("team", "alpha"), headers={**TOKEN, "Last-Event-ID": "not-an-id"}
        )
        assert "Last-Event-ID" in fakes.error_of(bad, 400, "InvalidParameter")
    assert fake.asked == []


@pytest.mark.asyncio
async def test_the_fleet_stream_route_resumes_from_a_change_number() -> None:
    fake = FakeStreams()
    async with _app(fake) as http:
        assert (await http.get("/api/v1/stacks/stream", headers=TOKEN)).text == RETRY
        await http.get("/api/v1/stacks/stream", headers={**TOKEN, "Last-Event-ID": "41"})
        bad = await http.get("/api/v1/stacks/stream", headers={**TOKEN, "Last-Event-ID": "1-0"})
        fakes.error_of(bad, 400, "InvalidParameter")
        fakes.error_of(await http.get("/api/v1/stacks/stream"), 401, "Unauthorized")
    assert fake.asked == [("alice", None), ("alice", 41)]


def test_the_stream_service_has_the_routes_methods() -> None:
    """FakeStreams stands in for StreamViews: same methods, same parameters."""
    for method in ("tail", "fleet"):
        fake = list(inspect.signature(getattr(FakeStreams, method)).parameters)
        real = list(inspect.signature(getattr(StreamViews, method)).parameters)
        assert fake == real
