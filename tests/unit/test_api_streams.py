"""Live streams: the fleet stream StreamViews writes, and the routes that serve them all.

The fleet stream reads only the watch cache: the service is read directly, over a
Redis client of no server, with a ``disconnected`` callback the test controls. A
stack's streams read Redis: they are tested on a real redis-server
(``tests/integration/test_api_streams.py``). The routes are served from a small app
whose stream service is a fake that records what it was asked for and sends a finite
stream (a real one never ends); it keeps StreamViews' signatures.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from agentstack_api.access import StackAccess
from agentstack_api.auth import User
from agentstack_api.routes import streams
from agentstack_api.sse import KEEP_ALIVE, RETRY, Disconnected, StreamViews
from agentstack_api.views import FEED, TRACES, StreamKind
from agentstack_core.keys import StackKeys, StackRef
from tests.helpers import assert_same_signature
from tests.unit import test_api_fakes as fakes

ALPHA = fakes.stack("team", "alpha")
KEYS = StackKeys(StackRef("team", "alpha"))
TOKEN = {"Authorization": "Bearer alice-token"}


@pytest.mark.asyncio
async def test_the_fleet_stream_shows_only_allowed_namespaces_and_resumes() -> None:
    cache = fakes.FakeCache()
    live = fakes.services(cache, fakes.FakeAuthorizer({"team"}), fakes.unreachable_redis())[2]
    cache.emit("upsert", fakes.stack("team", "alpha"))
    cache.emit("upsert", fakes.stack("hidden", "beta"))
    cache.emit("delete", fakes.stack("team", "gamma"))
    chunks = await fakes.until_keep_alive(live.fleet(User("alice"), 0, fakes.stays_connected))
    assert chunks[0] == RETRY
    events = fakes.sse_events("".join(chunks))
    assert [(e["id"], e["event"]) for e in events] == [("1", "upsert"), ("3", "delete")]
    assert json.loads(events[0]["data"])["name"] == "alpha"
    assert cache._listeners == set()  # the subscription closed with the stream

    stream = live.fleet(User("alice"), None, fakes.stays_connected)
    assert await anext(stream) == RETRY
    assert await anext(stream) == KEEP_ALIVE  # nothing replayed without a Last-Event-ID
    change = cache.emit("upsert", fakes.stack("team", "alpha", state="Paused"))
    assert fakes.sse_events(await anext(stream))[0]["id"] == str(change.seq)
    await stream.aclose()


class FakeStreams:
    """Records each stream asked for, and sends one event and ends."""

    def __init__(self) -> None:
        self.asked: list[tuple[Any, ...]] = []

    async def tail(
        self, stack: dict[str, Any], kind: StreamKind[Any], start: str, disconnected: Disconnected
    ) -> AsyncIterator[str]:
        self.asked.append((stack["metadata"]["name"], kind, start))
        yield RETRY
        yield f"id: 1-0\nevent: {kind.event}\ndata: {{}}\n\n"

    async def fleet(
        self, caller: User, after: int | None, disconnected: Disconnected
    ) -> AsyncIterator[str]:
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
    assert fakes.sse_events(opened.text)[0]["event"] == kind.event
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


@pytest.mark.parametrize("method", ["tail", "fleet"])
def test_the_stream_service_has_the_routes_methods(method: str) -> None:
    """FakeStreams stands in for StreamViews: same methods, same parameters."""
    assert_same_signature(getattr(FakeStreams, method), getattr(StreamViews, method))
