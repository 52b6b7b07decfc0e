"""The suite's Redis is a real redis-server: data and streams round-trip."""

from __future__ import annotations

import redis

from agentstack_devkit.redisserver import RedisServer


def test_values_round_trip(redis_client: redis.Redis) -> None:
    redis_client.set("{default/demo}:greeting", "hello")
    assert redis_client.get("{default/demo}:greeting") == "hello"


def test_stream_with_consumer_group_delivers_and_acknowledges(redis_client: redis.Redis) -> None:
    stream = "{default/demo}:ticks"
    redis_client.xgroup_create(stream, "runners", id="0", mkstream=True)
    sent = redis_client.xadd(stream, {"tick": "1"})
    delivered = redis_client.xreadgroup("runners", "runner-a", {stream: ">"}, count=10)
    assert delivered == [[stream, [(sent, {"tick": "1"})]]]
    assert redis_client.xpending(stream, "runners")["pending"] == 1
    assert redis_client.xack(stream, "runners", sent) == 1
    assert redis_client.xpending(stream, "runners")["pending"] == 0


def test_server_reports_its_real_version(redis_server: RedisServer) -> None:
    connection = redis.Redis.from_url(redis_server.url)
    try:
        version = str(connection.info("server")["redis_version"])
    finally:
        connection.close()
    assert int(version.split(".")[0]) >= 6  # streams with XAUTOCLAIM need 6.2+
