"""Redis faults: killed and restarted with its append-only file while consolidations
run (nothing it acknowledged may be lost, no consolidation doubled), restarted with no
persistence at all (everything must recover: consumer groups recreated, specs published
again, stacks ticking), and down while a stack is deleted (the stack is held until its
keys are gone)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from kubernetes import client

from agentstack_core.keys import StackKeys, StackRef
from agentstack_devkit.controlplane import ControlPlane
from agentstack_devkit.fakellm import FakeLLMServer
from agentstack_devkit.fleet import Fleet
from agentstack_devkit.redisserver import RedisServer
from agentstack_operator.finalizing import FINALIZER
from tests.e2e.stacks import Stacks
from tests.helpers import eventually, gone
from tests.reliability.support import (
    consolidating,
    fleet_on,
    more_ticks,
    on_gateway,
    sleep_calls,
    team_of_stacks,
    verify,
)

STACKS = 20


def _history_after(stacks: Stacks, names: list[str], moment: float) -> int:
    return sum(1 for name in names for h in stacks.history(name) if float(h["started_at"]) > moment)


def test_redis_killed_and_restarted_from_its_append_only_file_loses_nothing(
    fleet: Fleet,
    fault_redis: RedisServer,
    gateway: FakeLLMServer,
    k8s_api: client.ApiClient,
    namespace: str,
    reader: redis.Redis,
) -> None:
    # Consolidations every other tick, their calls slow: the kill lands while some run.
    consolidating(gateway, 0.5)
    stacks = Stacks(k8s_api, namespace, reader)
    names = team_of_stacks(
        stacks, STACKS, gateway, tickIntervalSeconds=2, memory={"consolidateEveryTicks": 2}
    )
    fleet.operator()
    fleet.runner("runner-a")
    fleet.runner("runner-b")
    more_ticks(stacks, names, 2 * STACKS)
    calls = len(sleep_calls(gateway))
    eventually(
        lambda: True if len(sleep_calls(gateway)) > calls else None,
        "a consolidation call in flight",
        timeout=60,
    )
    fault_redis.restart(kill=True)  # SIGKILL mid-flight; AOF (fsync always) on disk
    restarted = time.time()
    eventually(
        lambda: True if _history_after(stacks, names, restarted) >= 2 * STACKS else None,
        "ticks after the restart",
        timeout=120,
    )
    report = verify("Redis SIGKILL + AOF restart", fleet, k8s_api, reader, [namespace])
    assert report.consolidations >= 1


def test_a_stack_deleted_while_redis_is_down_is_held_until_its_keys_are_gone(
    fleet: Fleet,
    fault_redis: RedisServer,
    gateway: FakeLLMServer,
    k8s_api: client.ApiClient,
    namespace: str,
    reader: redis.Redis,
) -> None:
    stacks = Stacks(k8s_api, namespace, reader)
    doomed, witness = team_of_stacks(stacks, 2, gateway, tickIntervalSeconds=2)
    operator, _port = fleet.operator()
    fleet.runner()
    more_ticks(stacks, [doomed, witness], 4)
    ref = StackRef(namespace, doomed)
    with fault_redis.outage():
        stacks.delete(doomed)
        eventually(
            lambda: True if f"cleanup of {ref} failed" in operator.log_path.read_text() else None,
            "the operator to try the cleanup while Redis is down",
            timeout=60,
        )
        held = stacks.get(doomed)["metadata"]
        assert held["deletionTimestamp"]
        assert FINALIZER in held["finalizers"]  # not released: its keys are still there
    eventually(lambda: gone(lambda: stacks.get(doomed)), "the stack to be released", timeout=60)
    assert list(reader.scan_iter(match=f"{StackKeys(ref).prefix}*")) == []
    more_ticks(stacks, [witness], 2)
    verify("stack deleted while Redis was down", fleet, k8s_api, reader, [namespace], deleted=[ref])


@pytest.fixture
def scratch_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """Redis without persistence: a restart comes back empty."""
    with RedisServer(data_dir=tmp_path / "scratch-redis") as server:
        yield server


def test_redis_restarted_empty_and_the_fleet_recovers_by_itself(
    scratch_redis: RedisServer,
    control_plane: ControlPlane,
    gateway: FakeLLMServer,
    k8s_api: client.ApiClient,
    crd: str,
    namespace: str,
    tmp_path: Path,
) -> None:
    reader = redis.Redis.from_url(scratch_redis.url, decode_responses=True)
    with fleet_on(
        control_plane, k8s_api, scratch_redis.url, gateway=gateway, logs_dir=tmp_path / "logs"
    ) as fleet:
        stacks = Stacks(k8s_api, namespace, reader)
        names = team_of_stacks(stacks, STACKS, gateway, tickIntervalSeconds=2)
        fleet.operator()
        fleet.runner()
        more_ticks(stacks, names, 2 * STACKS)
        scratch_redis.restart(kill=True)  # everything in Redis is gone
        restarted = time.time()
        # Groups recreated (NOGROUP handled), specs published again, every stack ticks.
        eventually(
            lambda: (
                True
                if all(
                    any(float(h["started_at"]) > restarted for h in stacks.history(n))
                    for n in names
                )
                else None
            ),
            "every stack to tick again after the restart",
            timeout=120,
        )
        verify("Redis restarted empty", fleet, k8s_api, reader, [namespace])
    reader.close()


def test_redis_restored_from_an_earlier_snapshot_and_the_fleet_reconciles(
    scratch_redis: RedisServer,
    control_plane: ControlPlane,
    gateway: FakeLLMServer,
    k8s_api: client.ApiClient,
    crd: str,
    namespace: str,
    tmp_path: Path,
) -> None:
    """A restore (docs/reliability.md, "Backup and restore"): Redis comes back with a
    snapshot taken before a stack's spec changed and before another stack was created.
    The marker is in the snapshot, so only the publications counter tells the leader that
    Redis went back: it publishes every spec again, and each stack ticks at its current
    generation (without that, the changed one dropped every tick as SpecNotPublished
    and the new one never ticked)."""
    reader = redis.Redis.from_url(scratch_redis.url, decode_responses=True)
    with fleet_on(
        control_plane, k8s_api, scratch_redis.url, gateway=gateway, logs_dir=tmp_path / "logs"
    ) as fleet:
        stacks = Stacks(k8s_api, namespace, reader)
        names = team_of_stacks(stacks, 4, gateway, tickIntervalSeconds=2)
        fleet.operator()
        fleet.runner()
        more_ticks(stacks, names, 8)
        assert reader.save()  # the snapshot: dump.rdb, loaded when Redis starts again
        changed, newcomer = names[0], "team-new"
        stacks.patch_spec(changed, goal="a goal set after the snapshot")
        stacks.create(newcomer, **on_gateway(gateway, tickIntervalSeconds=2))
        eventually(
            lambda: (
                True
                if any(h["generation"] == "2" for h in stacks.history(changed))
                and stacks.history(newcomer)
                else None
            ),
            "the changed and the new stack to tick before the restore",
        )
        scratch_redis.restart(kill=True)  # back to the snapshot
        restored = time.time()
        assert not stacks.history(newcomer)  # it is as the snapshot had it

        def current(name: str, generation: str) -> bool:
            return any(
                float(h["started_at"]) > restored
                and h["generation"] == generation
                and h["outcome"] != "Dropped"
                for h in stacks.history(name)
            )

        eventually(
            lambda: (
                True
                if all(current(name, "1") for name in names[1:])
                and current(changed, "2")
                and current(newcomer, "1")
                else None
            ),
            "every stack to tick at its current generation after the restore",
            timeout=120,
        )
        verify("Redis restored from an earlier snapshot", fleet, k8s_api, reader, [namespace])
    reader.close()
