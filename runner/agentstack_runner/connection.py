"""Connecting to Redis, standalone or cluster, the same way in every process.

``REDIS_URL`` names the server (``redis://host:port/0``, ``rediss://`` for TLS, a
password in the URL or in ``REDIS_PASSWORD``); ``AGENTSTACK_REDIS_CLUSTER=true`` makes
it the seed node of a Redis Cluster. Clients decode responses to ``str``: every value
this project stores is text.
"""

from __future__ import annotations

import os

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from agentstack_runner.protocol import RedisClient


def connect(url: str | None = None, *, cluster: bool | None = None) -> RedisClient:
    """A client for ``url`` (default ``$REDIS_URL``); cluster mode from the environment."""
    target = url or os.environ.get("REDIS_URL")
    if not target:
        raise ValueError("no Redis URL: set REDIS_URL (e.g. redis://127.0.0.1:6379/0)")
    if cluster is None:
        cluster = os.environ.get("AGENTSTACK_REDIS_CLUSTER", "").lower() in ("1", "true", "yes")
    password = os.environ.get("REDIS_PASSWORD") or None  # a password in the URL wins
    if cluster:
        return RedisCluster.from_url(target, decode_responses=True, password=password)
    return Redis.from_url(
        target, decode_responses=True, password=password, health_check_interval=30
    )
