"""Fixtures of the runner suite: the same tests run on standalone Redis and on a cluster."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest
import pytest_asyncio
from redis.asyncio.cluster import RedisCluster

from agentstack_core.connection import connect
from agentstack_core.endpoints import ALLOWED_BASE_URLS_ENV
from agentstack_core.protocol import RedisClient
from agentstack_devkit.fakellm import FakeLLMServer
from agentstack_devkit.redisserver import RedisServer
from tests.integration.streaming import WatchedRedis
from tests.integration.support import close_engines


@dataclass(frozen=True)
class RedisBackend:
    kind: str
    url: str

    @property
    def cluster(self) -> bool:
        return self.kind == "cluster"

    def env(self) -> dict[str, str]:
        """Environment for a runner process using this backend."""
        return {"REDIS_URL": self.url, "AGENTSTACK_REDIS_CLUSTER": str(self.cluster).lower()}


@pytest.fixture(params=["standalone", "cluster"])
def redis_backend(request: pytest.FixtureRequest) -> RedisBackend:
    """Each test using it runs twice: on one redis-server, and on a three-node cluster."""
    if request.param == "cluster":
        return RedisBackend("cluster", request.getfixturevalue("redis_cluster").url)
    return RedisBackend("standalone", request.getfixturevalue("redis_server").url)


@pytest_asyncio.fixture
async def aredis(redis_backend: RedisBackend) -> AsyncIterator[RedisClient]:
    """An async client of the backend; every node is flushed after the test."""
    client = connect(redis_backend.url, cluster=redis_backend.cluster)
    try:
        yield client
    finally:
        if isinstance(client, RedisCluster):
            await client.flushall(target_nodes=RedisCluster.PRIMARIES)
        else:
            await client.flushall()
        await client.aclose()


@pytest_asyncio.fixture
async def watched_redis(redis_server: RedisServer) -> AsyncIterator[WatchedRedis]:
    """A client of the session's redis-server that keeps what it was asked to read
    (:class:`~tests.integration.streaming.WatchedRedis`); flushed after the test."""
    client = WatchedRedis.watching(redis_server.url)
    try:
        yield client
    finally:
        await client.flushall()
        await client.aclose()


@pytest_asyncio.fixture(autouse=True)
async def _close_engines() -> AsyncIterator[None]:
    """A test's engines hold HTTP sessions (to the fake LLM server): closed after it."""
    yield
    await close_engines()


@pytest.fixture
def fake_llm(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeLLMServer]:
    """A scripted OpenAI-compatible server; the runner's default keys point at nothing real.

    The server stands for a gateway the platform allow-lists, so the runner's own
    (fake) keys may be sent to it; a server of a stack author's would not be listed.
    """
    monkeypatch.setenv("OPENAI_API_KEY", "sk-fake-openai")
    monkeypatch.setenv("GROQ_API_KEY", "gsk-fake-groq")
    with FakeLLMServer() as server:
        monkeypatch.setenv(
            ALLOWED_BASE_URLS_ENV, f"{server.groq_base_url},{server.openai_base_url}"
        )
        yield server
