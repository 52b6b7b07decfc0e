"""The fakes the read API's unit tests build apps with, and a check that they stay honest.

- :class:`FakeCache`: the watch cache as a dict of stack objects, a ``ready`` event, and
  fleet changes pushed by hand (through the real :class:`Subscription`);
- :class:`FakeAuthorizer`: allows a set of namespaces; with ``tokens`` set it accepts
  only those bearer tokens (like TokenReview), and it counts SubjectAccessReviews;
- :class:`FakeRedis`: the few Redis commands :class:`~agentstack_core.redis.reader.StackReader`
  and the live streams' hub send, over in-memory streams, hashes and strings; ``xread``
  blocks as Redis does (until an entry is added or ``block`` ms passed), and fails the
  next ``failures`` times it is called, as a restarting Redis would.

:func:`until` and :func:`collect` wait on the live streams' hub, bounded, on a condition
(the integration tests of the hub on real Redis use them too).

The tests at the end compare the fakes' method signatures with the real classes', so a
change to the cache, the Authorizer or the reader's commands breaks here, not silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Callable, Iterable
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from agentstack_core.spec import ExecutionState
from agentstack_operator.api.access import StackAccess
from agentstack_operator.api.auth import AuthError, OpenAccess, User
from agentstack_operator.api.cache import StackCache, StackChange, Subscription, summary
from agentstack_operator.api.errors import install_error_handlers
from agentstack_operator.api.sse import StreamViews
from agentstack_operator.api.tailing import StreamHub, Tail
from agentstack_operator.api.views import StackViews
from tests.helpers import eventually_async


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
        """(namespace, "verb subresource") pairs the fake allows besides ``get``."""
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

    async def may(self, user: User, namespace: str, verb: str, subresource: str = "") -> bool:
        if verb == "get" and not subresource:
            return await self.may_get(user, namespace)
        action = f"{verb} {subresource}".strip()
        self.reviews.append((user.name, f"{namespace}:{action}"))
        return (namespace, action) in self.steering


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


def _stream_key(entry_id: str) -> tuple[int, int]:
    millis, _, seq = entry_id.partition("-")
    return int(millis), int(seq or 0)


class _Pipeline:
    def __init__(self, redis: FakeRedis) -> None:
        self.redis = redis
        self.calls: list[tuple[str, str]] = []

    def hgetall(self, key: str) -> None:
        self.calls.append(("hgetall", key))

    def xlen(self, key: str) -> None:
        self.calls.append(("xlen", key))

    async def execute(self) -> list[Any]:
        return [await getattr(self.redis, command)(key) for command, key in self.calls]


class FakeRedis:
    """In-memory streams, hashes and strings, answering as redis-py does (decoded)."""

    def __init__(self) -> None:
        self.streams: dict[str, list[tuple[str, dict[str, str]]]] = {}
        self.hashes: dict[str, dict[str, str]] = {}
        self.strings: dict[str, str] = {}
        self.reads: list[dict[str, str]] = []
        self.failures = 0
        """How many of the next ``xread`` calls fail (a Redis restarting)."""
        self._added = asyncio.Event()

    def add(self, key: str, fields: dict[str, str], entry_id: str | None = None) -> str:
        """XADD: ``entry_id`` or the next one after the stream's newest; wakes blocked reads."""
        entries = self.streams.setdefault(key, [])
        if entry_id is None:
            newest = _stream_key(entries[-1][0]) if entries else (1700, -1)
            entry_id = f"{newest[0]}-{newest[1] + 1}"
        entries.append((entry_id, dict(fields)))
        self._added.set()
        self._added = asyncio.Event()
        return entry_id

    async def xrevrange(
        self, name: str, max: str = "+", min: str = "-", count: int | None = None
    ) -> list[tuple[str, dict[str, str]]]:
        entries = list(reversed(self.streams.get(name, [])))
        if max.startswith("("):
            entries = [e for e in entries if _stream_key(e[0]) < _stream_key(max[1:])]
        return entries[:count] if count is not None else entries

    async def xrange(
        self, name: str, min: str = "-", max: str = "+", count: int | None = None
    ) -> list[tuple[str, dict[str, str]]]:
        entries = self.streams.get(name, [])
        if min.startswith("("):
            entries = [e for e in entries if _stream_key(e[0]) > _stream_key(min[1:])]
        return entries[:count] if count is not None else list(entries)

    async def xread(
        self, streams: dict[str, str], count: int | None = None, block: int | None = None
    ) -> list[list[Any]]:
        self.reads.append(dict(streams))
        if self.failures:
            self.failures -= 1
            raise RedisConnectionError("Connection refused (Redis is restarting)")
        deadline = asyncio.get_running_loop().time() + (block or 0) / 1000
        while True:
            added = self._added
            reply = []
            for key, last in streams.items():
                newer = [
                    e for e in self.streams.get(key, []) if _stream_key(e[0]) > _stream_key(last)
                ]
                if newer:
                    reply.append([key, newer[:count]])
            left = deadline - asyncio.get_running_loop().time()
            if reply or block is None or left <= 0:
                await asyncio.sleep(0)
                return reply
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(added.wait(), left)

    async def xlen(self, name: str) -> int:
        return len(self.streams.get(name, []))

    async def get(self, name: str) -> str | None:
        return self.strings.get(name)

    async def hgetall(self, name: str) -> dict[str, str]:
        return dict(self.hashes.get(name, {}))

    def pipeline(self, transaction: bool = True) -> _Pipeline:
        return _Pipeline(self)


def hub(redis: FakeRedis) -> StreamHub:
    """The real hub over one fake (requests and readers alike), reading in short blocks."""
    client: Any = redis
    return StreamHub(client, client, block_ms=20, backoff_seconds=(0.01, 0.05))


def services(
    cache: FakeCache, auth: FakeAuthorizer, redis: FakeRedis | None = None
) -> tuple[StackAccess, StackViews, StreamViews]:
    """The real services over the fakes (no Redis: a fresh FakeRedis)."""
    fake = redis if redis is not None else FakeRedis()
    client: Any = fake
    access = StackAccess(cache, auth)
    return access, StackViews(client), StreamViews(hub(fake), access, heartbeat_seconds=0.05)


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


def error_of(response: httpx.Response, status: int, code: str) -> str:
    """The message of the one error body, after checking its shape."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert (body["error"]["status"], body["error"]["code"]) == (status, code)
    return str(body["error"]["message"])


# -- waiting on the hub ------------------------------------------------------------------


async def until(condition: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    """Return once ``condition()`` holds; fail after ``timeout`` seconds."""

    async def check() -> bool | None:
        return True if condition() else None

    await eventually_async(check, what, timeout)


async def collect(tail: Tail, count: int, timeout: float = 5.0) -> list[str]:
    """The ids of the next ``count`` entries ``tail`` returns; fail after ``timeout``."""
    ids: list[str] = []
    async with asyncio.timeout(timeout):
        while len(ids) < count:
            ids.extend(entry_id for entry_id, _ in await tail.next(timeout))
    return ids


# -- the fakes keep the real signatures -------------------------------------------------


def _same_parameters(fake: Any, real: Any) -> None:
    fake_params = list(inspect.signature(fake).parameters)
    real_params = list(inspect.signature(real).parameters)
    assert fake_params == real_params[: len(fake_params)], (fake, fake_params, real_params)


@pytest.mark.parametrize("method", ["get", "items", "subscribe"])
def test_the_fake_cache_reads_like_the_watch_cache(method: str) -> None:
    _same_parameters(getattr(FakeCache, method), getattr(StackCache, method))


@pytest.mark.parametrize("method", ["authenticate", "may_get"])
def test_the_fake_authorizer_answers_like_an_authorizer(method: str) -> None:
    _same_parameters(getattr(FakeAuthorizer, method), getattr(OpenAccess, method))


@pytest.mark.parametrize(
    "method", ["xrevrange", "xrange", "xread", "xlen", "get", "hgetall", "pipeline"]
)
def test_the_fake_redis_takes_redis_py_arguments(method: str) -> None:
    _same_parameters(getattr(FakeRedis, method), getattr(Redis, method))
