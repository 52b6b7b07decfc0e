"""Connecting to Redis, standalone or cluster, the same way in every process.

``REDIS_URL`` names the server (``redis://host:port/0``, ``rediss://`` for TLS, a
password in the URL or in ``REDIS_PASSWORD``, an ACL user in the URL or in
``REDIS_USERNAME`` — a tick pod's, see ``agentstack_operator.tickcredentials``);
``AGENTSTACK_REDIS_CLUSTER=true`` makes it the seed node of a Redis Cluster. Clients
decode responses to ``str``: every value this project stores is text.
"""

from __future__ import annotations

import os

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster

from agentstack_core.environment import env_bool
from agentstack_core.protocol import RedisClient

DEFAULT_MAX_CONNECTIONS = 256
POOL_TIMEOUT_SECONDS = 30.0


def connect(
    url: str | None = None,
    *,
    cluster: bool | None = None,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
) -> RedisClient:
    """A client for ``url`` (default ``$REDIS_URL``); cluster mode from the environment.

    The pool holds up to ``max_connections`` connections (per node on a cluster) and
    makes a command wait for a free one rather than fail: redis-py's default of 100
    with "Too many connections" errors would lose ticks of a runner with more ticks
    in flight than that (each blocks a connection while it waits on Redis). redis-py's
    cluster client has no blocking pool: there the size is all that protects it.
    """
    target = url or os.environ.get("REDIS_URL")
    if not target:
        raise ValueError("no Redis URL: set REDIS_URL (e.g. redis://127.0.0.1:6379/0)")
    if cluster is None:
        cluster = env_bool("AGENTSTACK_REDIS_CLUSTER")
    # Credentials in the URL win over these.
    password = os.environ.get("REDIS_PASSWORD") or None
    username = os.environ.get("REDIS_USERNAME") or None
    if cluster:
        return RedisCluster.from_url(
            target,
            decode_responses=True,
            username=username,
            password=password,
            max_connections=max_connections,
        )
    pool = BlockingConnectionPool.from_url(
        target,
        decode_responses=True,
        username=username,
        password=password,
        health_check_interval=30,
        max_connections=max_connections,
        timeout=POOL_TIMEOUT_SECONDS,
    )
    return Redis.from_pool(pool)  # the client owns its pool: aclose() closes both
