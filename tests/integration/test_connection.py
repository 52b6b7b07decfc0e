"""Redis connections: a busy process waits for a free connection instead of failing."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from agentstack_core.connection import connect
from agentstack_devkit.redisserver import RedisServer
from agentstack_runner.service import Runner, RunnerConfig
from tests.integration.conftest import RedisBackend

pytestmark = pytest.mark.asyncio


async def test_more_blocking_commands_than_connections_wait_their_turn(
    redis_server: RedisServer,
) -> None:
    # Standalone only: redis-py's cluster client has no blocking pool; there the runner
    # relies on the pool being sized to its concurrency (the test below).
    client = connect(redis_server.url, cluster=False, max_connections=4)
    try:
        replies = await asyncio.gather(
            *(client.xread({"{default/demo}:idle": "$"}, block=100) for _ in range(12))
        )
    finally:
        await client.aclose()
    assert all(reply in ([], {}, None) for reply in replies)


async def test_runner_pool_is_sized_to_its_concurrency(redis_backend: RedisBackend) -> None:
    runner = Runner(RunnerConfig(redis_url=redis_backend.url, redis_cluster=False, concurrency=300))
    try:
        assert isinstance(runner.client, Redis)
        assert runner.client.connection_pool.max_connections >= 300
    finally:
        await runner.client.aclose()
