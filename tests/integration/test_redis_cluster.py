"""The suite's Redis Cluster is a real cluster: hash-tagged keys work, others are refused.

AgentStack keys carry the hash tag ``{namespace/name}`` so that one stack's keys share a
slot; these tests pin down that this is what makes multi-key commands and scripts work
on a cluster, and that the fixture is a genuine cluster (keys spread over three masters,
cross-slot commands fail) rather than a single server in disguise.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redis.cluster
from redis.exceptions import ClusterCrossSlotError, MovedError, RedisClusterException

from agentstack_core.connection import connect
from agentstack_devkit.processes import LOOPBACK, DevEnvError
from agentstack_devkit.rediscluster import SLOT_COUNT, RedisClusterServers

TAGGED_A = "{default/demo}:a"
TAGGED_B = "{default/demo}:b"


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline:
            found.append(int(entry.name))
    return found


def _keys_on_two_nodes(client: redis.cluster.RedisCluster) -> tuple[str, str]:
    """Two keys of different stacks whose slots belong to different masters."""
    first = "{default/demo}:state"
    owner = client.get_node_from_key(first)
    for index in range(100):
        other = f"{{default/other-{index}}}:state"
        if client.get_node_from_key(other) != owner:
            return first, other
    raise AssertionError("100 differently tagged keys all landed on one node")


@pytest.fixture
def cluster_client(redis_cluster: RedisClusterServers) -> Iterator[redis.cluster.RedisCluster]:
    """A cluster client of the session's cluster; every master is flushed afterwards."""
    connection = redis_cluster.client(decode_responses=True)
    try:
        yield connection
    finally:
        connection.flushall(target_nodes=redis.cluster.RedisCluster.PRIMARIES)
        connection.close()


def test_cluster_is_ok_with_three_masters_sharing_all_slots(
    redis_cluster: RedisClusterServers,
) -> None:
    assert redis_cluster.url == f"redis://{LOOPBACK}:{redis_cluster.ports[0]}"
    assert len(set(redis_cluster.ports)) == 3
    for port in redis_cluster.ports:
        node = redis.Redis(host=LOOPBACK, port=port, decode_responses=True)
        try:
            info = str(node.execute_command("CLUSTER", "INFO"))
            nodes = str(node.execute_command("CLUSTER", "NODES"))
        finally:
            node.close()
        assert "cluster_state:ok" in info
        assert f"cluster_slots_assigned:{SLOT_COUNT}" in info
        assert "cluster_size:3" in info
        masters = [line for line in nodes.splitlines() if "master" in line.split()[2]]
        assert len(masters) == 3
        assert {int(line.split()[1].split(":")[1].split("@")[0]) for line in masters} == set(
            redis_cluster.ports
        )


def test_client_sees_three_primaries(cluster_client: redis.cluster.RedisCluster) -> None:
    primaries = cluster_client.get_primaries()
    assert len(primaries) == 3
    assert cluster_client.get_replicas() == []


def test_keys_sharing_a_hash_tag_share_a_slot(cluster_client: redis.cluster.RedisCluster) -> None:
    slot = cluster_client.cluster_keyslot(TAGGED_A)
    assert cluster_client.cluster_keyslot(TAGGED_B) == slot
    assert cluster_client.keyslot(TAGGED_A) == slot  # the client's CRC16 agrees with the server
    assert cluster_client.get_node_from_key(TAGGED_A) == cluster_client.get_node_from_key(TAGGED_B)


def test_multi_key_command_on_one_tag_works(cluster_client: redis.cluster.RedisCluster) -> None:
    assert cluster_client.mset({TAGGED_A: "1", TAGGED_B: "2"})
    assert cluster_client.mget(TAGGED_A, TAGGED_B) == ["1", "2"]


def test_lua_script_over_keys_of_one_tag_works(
    cluster_client: redis.cluster.RedisCluster,
) -> None:
    move = cluster_client.register_script(
        "local value = redis.call('GET', KEYS[1]); "
        "redis.call('SET', KEYS[2], value); "
        "redis.call('DEL', KEYS[1]); "
        "return value"
    )
    cluster_client.set(TAGGED_A, "moved")
    assert move(keys=[TAGGED_A, TAGGED_B]) == "moved"
    assert cluster_client.get(TAGGED_A) is None
    assert cluster_client.get(TAGGED_B) == "moved"


def test_xreadgroup_over_two_streams_of_one_tag_works(
    cluster_client: redis.cluster.RedisCluster,
) -> None:
    inbox, ticks = "{default/demo}:inbox", "{default/demo}:ticks"
    for stream in (inbox, ticks):
        cluster_client.xgroup_create(stream, "runners", id="0", mkstream=True)
    sent_inbox = cluster_client.xadd(inbox, {"msg": "hi"})
    sent_tick = cluster_client.xadd(ticks, {"tick": "1"})
    delivered = cluster_client.xreadgroup("runners", "runner-a", {inbox: ">", ticks: ">"})
    assert sorted(delivered) == sorted(
        [[inbox, [(sent_inbox, {"msg": "hi"})]], [ticks, [(sent_tick, {"tick": "1"})]]]
    )


def test_keys_with_different_tags_spread_over_all_masters(
    cluster_client: redis.cluster.RedisCluster,
) -> None:
    keys = [f"{{default/stack-{index}}}:state" for index in range(30)]
    slots = {cluster_client.cluster_keyslot(key) for key in keys}
    owners = {cluster_client.get_node_from_key(key).name for key in keys}
    assert len(slots) > 1
    assert len(owners) == 3
    for key in keys:
        cluster_client.set(key, key)
    assert [cluster_client.get(key) for key in keys] == keys


def test_cross_slot_commands_are_refused(
    redis_cluster: RedisClusterServers, cluster_client: redis.cluster.RedisCluster
) -> None:
    first, other = _keys_on_two_nodes(cluster_client)
    # The client refuses before sending...
    with pytest.raises(RedisClusterException, match="same key slot"):
        cluster_client.mset({first: "1", other: "2"})
    # ...and the server itself refuses a multi-key command across slots.
    owner = cluster_client.get_node_from_key(first)
    node = redis.Redis(host=owner.host, port=owner.port, decode_responses=True)
    try:
        with pytest.raises(ClusterCrossSlotError):  # the server's CROSSSLOT reply
            node.execute_command("MSET", first, "1", other, "2")
        with pytest.raises(ClusterCrossSlotError):  # a script's keys must share a slot too
            node.eval("return redis.call('GET', KEYS[1])", 2, first, other)
        # A key owned by another master is redirected, not stored here.
        with pytest.raises(MovedError):
            node.set(other, "2")
    finally:
        node.close()
    assert cluster_client.get(first) is None
    assert cluster_client.get(other) is None


@pytest.mark.asyncio
async def test_async_client_round_trips(
    redis_cluster: RedisClusterServers,
) -> None:
    connection = redis_cluster.async_client(decode_responses=True)
    try:
        assert await connection.set("{default/demo}:async", "hello")
        assert await connection.get("{default/demo}:async") == "hello"
        assert await connection.delete("{default/demo}:async") == 1
    finally:
        await connection.aclose()


@pytest.mark.asyncio
async def test_a_fresh_clients_first_commands_at_once_all_succeed(
    redis_cluster: RedisClusterServers,
) -> None:
    """The guard of :func:`~agentstack_core.connection.connect` against redis-py's race:
    without it about one fresh client in fifty, first used by 64 commands at once, had
    one of them fail (``'NoneType' object has no attribute 'writelines'``), so 200
    clients fail this test nearly always; with it, none did in any run."""
    failures = []
    for attempt in range(200):
        client = connect(redis_cluster.url, cluster=True)
        try:
            done = await asyncio.gather(
                *(client.set(f"{{race-{n}}}:first", attempt) for n in range(64)),
                return_exceptions=True,
            )
        finally:
            await client.aclose()
        failures += [repr(result) for result in done if isinstance(result, BaseException)]
    assert failures == []


def test_stop_leaves_no_node_running_and_removes_data() -> None:
    cluster = RedisClusterServers()
    data_dir = cluster.data_dir
    with cluster:
        assert len(_processes_mentioning(str(data_dir))) == 3
        connection = cluster.client()
        try:
            assert connection.ping()
        finally:
            connection.close()
    assert _processes_mentioning(str(data_dir)) == []
    assert not data_dir.exists()


def test_failed_start_stops_what_it_started(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def refuse(self: RedisClusterServers) -> None:
        assert len(_processes_mentioning(str(tmp_path))) == 3
        raise DevEnvError("assembly refused by the test")

    monkeypatch.setattr(RedisClusterServers, "_assemble", refuse)
    cluster = RedisClusterServers(data_dir=tmp_path)
    with pytest.raises(DevEnvError, match="assembly refused"):
        cluster.start()
    assert _processes_mentioning(str(tmp_path)) == []
    assert tmp_path.exists()  # a data dir that was given is kept, with the nodes' logs
    assert len(list(tmp_path.glob("node-*/redis-server.log"))) == 3
