"""The fakes the read API's unit tests build apps with, and a check that they stay honest.

- :class:`FakeCache`: the watch cache as a dict of stack objects, a ``ready`` event, and
  fleet changes pushed by hand (through the real :class:`Subscription`);
- :class:`FakeAuthorizer`: allows a set of namespaces; with ``tokens`` set it accepts
  only those bearer tokens (like TokenReview), and it counts SubjectAccessReviews;
- :class:`FakeStateWriter`: records each state patch (the API server's side).

Redis is never faked: a test that reads it is an integration test on a real
``redis-server`` (``tests/integration/test_api_stacks.py``, ``test_api_streams.py``,
``test_api_tailing.py``); :func:`services` and :func:`hub` build the real services over
whatever client it is given, and an app whose unit tests read nothing from Redis gets
:func:`unreachable_redis`.

The tests at the end compare the fakes' method signatures with the real classes', so a
change to the cache, the Authorizer or the state writer breaks here, not silently.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from redis.asyncio import Redis

from agentstack_api.access import StackAccess
from agentstack_api.auth import AuthError, OpenAccess, User
from agentstack_api.cache import StackCache, StackChange, Subscription, summary
from agentstack_api.errors import install_error_handlers
from agentstack_api.executionstate import KubeStateWriter
from agentstack_api.sse import KEEP_ALIVE, StreamViews
from agentstack_api.tailing import StreamHub
from agentstack_api.views import StackViews
from agentstack_core.protocol import RedisClient
from agentstack_core.resource import PLURAL
from agentstack_core.spec import ExecutionState
from tests.helpers import assert_same_signature


def stack(namespace: str, name: str, *, state: str | None = None, **spec: Any) -> dict[str, Any]:
    """An AgentStack object as the watch delivers it."""
    if state is not None:
        spec["executionState"] = state
    return {
        "metadata": {"namespace": namespace, "name": name, "uid": f"uid-{name}", "generation": 1},
        "spec": {"goal": f"goal of {name}", **spec},
        "status": {"ticks": 3, "conditions": [{"type": "Ready", "status": "True"}]},
    }


class FakeCache:
    """The watch cache without a watch: stacks are put in by the test."""

    def __init__(self, stacks: Iterable[dict[str, Any]] = (), *, ready: bool = True) -> None:
        self.ready = asyncio.Event()
        if ready:
            self.ready.set()
        self.stacks = {(s["metadata"]["namespace"], s["metadata"]["name"]): s for s in stacks}
        self.changes: list[StackChange] = []
        self._listeners: set[asyncio.Queue[StackChange]] = set()

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.stacks.get((namespace, name))

    def items(self) -> list[dict[str, Any]]:
        return [self.stacks[key] for key in sorted(self.stacks)]

    def subscribe(self, after: int | None) -> Subscription:
        subscription = Subscription(self._listeners)
        for change in self.changes:
            if after is not None and change.seq > after:
                subscription.queue.put_nowait(change)
        return subscription

    def emit(self, kind: str, obj: dict[str, Any]) -> StackChange:
        change = StackChange(len(self.changes) + 1, kind, summary(obj))
        self.changes.append(change)
        for queue in self._listeners:
            queue.put_nowait(change)
        return change


class FakeAuthorizer:
    """Allows ``allowed`` namespaces; ``tokens``: the only accepted bearer tokens."""

    def __init__(
        self, allowed: Iterable[str] = (), *, tokens: dict[str, User] | None = None
    ) -> None:
        self.allowed = set(allowed)
        self.forwards_token = tokens is not None
        self.steering: set[tuple[str, str]] = set()
        """(namespace, "verb subresource") pairs the fake allows besides ``get`` (for a
        resource other than ``agentstacks``: "verb resource")."""
        self.tokens = tokens
        self.reviews: list[tuple[str, str]] = []

    async def authenticate(self, authorization: str | None) -> User:
        if self.tokens is None:
            return User("anonymous")
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or token not in self.tokens:
            raise AuthError("the token was not accepted")
        return self.tokens[token]

    async def may_get(self, user: User, namespace: str) -> bool:
        self.reviews.append((user.name, namespace))
        return namespace in self.allowed

    async def may(
        self,
        user: User,
        namespace: str,
        verb: str,
        subresource: str = "",
        *,
        resource: str = PLURAL,
    ) -> bool:
        if verb == "get" and not subresource and resource == PLURAL:
            return await self.may_get(user, namespace)
        action = f"{verb} {subresource}".strip() if resource == PLURAL else f"{verb} {resource}"
        self.reviews.append((user.name, f"{namespace}:{action}"))
        return (namespace, action) in self.steering


class FakeSecrets:
    """SecretSource: keys by (namespace, Secret, key)."""

    def __init__(self, keys: dict[tuple[str, str, str], bytes] | None = None) -> None:
        self.keys = keys or {}

    async def key(self, namespace: str, name: str, key: str) -> bytes | None:
        return self.keys.get((namespace, name, key))


class FakeStateWriter:
    """StateWriter: records each patch and the token it was made with; ``refusal`` is
    raised instead while set (the API server's verdict)."""

    def __init__(self) -> None:
        self.patches: list[tuple[str, str, str, str | None]] = []
        self.refusal: Exception | None = None

    async def set_state(
        self, namespace: str, name: str, state: ExecutionState, token: str | None
    ) -> None:
        if self.refusal is not None:
            raise self.refusal
        self.patches.append((namespace, name, state.value, token))


def unreachable_redis() -> RedisClient:
    """A real client of no server, for apps whose unit tests read nothing from Redis: a
    route that tried would fail (a 500), never read an answer a fake made up."""
    return Redis(unix_socket_path="/nonexistent/agentstack-unit-tests.sock")


def hub(redis: RedisClient) -> StreamHub:
    """The real hub over one client (requests and readers alike), reading in short blocks
    and retrying soon after a failed read."""
    return StreamHub(redis, redis, block_ms=20, backoff_seconds=(0.01, 0.05))


def services(
    cache: FakeCache, auth: FakeAuthorizer, redis: RedisClient
) -> tuple[StackAccess, StackViews, StreamViews]:
    """The real services over the fake cache and Authorizer, and ``redis``."""
    access = StackAccess(cache, auth)
    return access, StackViews(redis), StreamViews(hub(redis), access, heartbeat_seconds=0.05)


def app_with(
    *routers: APIRouter,
    access: Any,
    views: Any = None,
    streams: Any = None,
    state_writer: Any = None,
) -> FastAPI:
    """A small app: only ``routers``, the one error body, and the given services."""
    app = FastAPI()
    install_error_handlers(app)
    app.state.access, app.state.views, app.state.streams = access, views, streams
    app.state.state_writer = state_writer
    for router in routers:
        app.include_router(router)
    return app


def client(app: FastAPI) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://api.test")


def sse_events(text: str) -> list[dict[str, str]]:
    """Parse Server-Sent Events the way a browser does (comments dropped)."""
    events = []
    for block in text.split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in block.splitlines() if not line.startswith(":")
        )
        if "data" in fields:
            events.append(fields)
    return events


async def until_keep_alive(stream: AsyncIterator[str], limit: int = 50) -> list[str]:
    """The chunks of a stream up to its first keep-alive (the client then leaves)."""
    chunks: list[str] = []
    async with contextlib.aclosing(stream):
        async for chunk in stream:
            chunks.append(chunk)
            if chunk == KEEP_ALIVE or len(chunks) >= limit:
                break
    return chunks


async def stays_connected() -> bool:
    """A ``disconnected`` callback of a client that stays."""
    return False


def error_of(response: httpx.Response, status: int, code: str) -> str:
    """The message of the one error body, after checking its shape."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert (body["error"]["status"], body["error"]["code"]) == (status, code)
    return str(body["error"]["message"])


# -- the fakes keep the real signatures -------------------------------------------------


@pytest.mark.parametrize("method", ["get", "items", "subscribe"])
def test_the_fake_cache_reads_like_the_watch_cache(method: str) -> None:
    assert_same_signature(getattr(FakeCache, method), getattr(StackCache, method))


@pytest.mark.parametrize("method", ["authenticate", "may_get", "may"])
def test_the_fake_authorizer_answers_like_an_authorizer(method: str) -> None:
    assert_same_signature(getattr(FakeAuthorizer, method), getattr(OpenAccess, method))


def test_the_fake_state_writer_patches_like_the_real_one() -> None:
    assert_same_signature(FakeStateWriter.set_state, KubeStateWriter.set_state)
