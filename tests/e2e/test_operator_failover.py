"""Restarts and replicas: ticks are neither run twice nor lost."""

from __future__ import annotations

import os
import signal
import urllib.request
from collections.abc import Iterator

import pytest
import redis
from kubernetes import client

from agentstack_devkit.fleet import Fleet
from tests.e2e.stacks import Stacks
from tests.helpers import eventually


@pytest.fixture
def processes(fleet: Fleet) -> Iterator[Fleet]:
    """The module's fleet, with every process of the test stopped afterwards."""
    try:
        yield fleet
    finally:
        fleet.stop()


@pytest.fixture
def stacks(k8s_api: client.ApiClient, namespace: str, redis_reader: redis.Redis) -> Stacks:
    return Stacks(k8s_api, namespace, redis_reader)


def _is_leader(port: int) -> bool:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return "agentstack_operator_leader 1.0" in response.read().decode()


def _assert_each_tick_once(stacks: Stacks, name: str) -> None:
    recorded = [entry["tick_id"] for entry in stacks.history(name)]
    assert len(recorded) == len(set(recorded)), "a tick was recorded twice"
    dispatched = {entry["tick_id"] for entry in stacks.dispatched(name)}
    # Nothing dispatched was lost: every request ended up recorded (run or dropped).
    eventually(
        lambda: True if dispatched <= {e["tick_id"] for e in stacks.history(name)} else None,
        "every dispatched tick to be recorded",
    )


def _quiesce(stacks: Stacks, name: str) -> None:
    """Pause, then wait until status has caught up with what the runners recorded."""
    stacks.patch_spec(name, executionState="Paused")
    stacks.wait_condition(name, "Paused", "True")
    eventually(
        lambda: True if stacks.status(name).get("ticks") == len(stacks.executed(name)) else None,
        "status to count every executed tick",
    )


def test_operator_killed_mid_run_is_replaced_without_duplicate_or_lost_ticks(
    processes: Fleet, stacks: Stacks
) -> None:
    first, _ = processes.operator("operator-a")
    processes.runner()
    stacks.create("steady")
    before = int(stacks.wait_ticks("steady", 3)["ticks"])
    os.kill(first.pid or 0, signal.SIGKILL)  # a crash: no lease release, no clean-up
    processes.operator("operator-b")
    stacks.wait_ticks("steady", before + 3, timeout=60)
    _assert_each_tick_once(stacks, "steady")
    _quiesce(stacks, "steady")


def test_two_replicas_elect_one_leader_and_fail_over(processes: Fleet, stacks: Stacks) -> None:
    first, first_port = processes.operator("operator-a")
    second, second_port = processes.operator("operator-b")
    processes.runner()

    def leader_flags() -> list[bool] | None:
        flags = [_is_leader(first_port), _is_leader(second_port)]
        return flags if any(flags) else None

    leaders = eventually(leader_flags, "a leader to be elected")
    assert leaders.count(True) == 1
    stacks.create("shared")
    before = int(stacks.wait_ticks("shared", 4)["ticks"])
    dispatched = [entry["tick_id"] for entry in stacks.dispatched("shared")]
    assert len(dispatched) == len(set(dispatched)), "both replicas dispatched"

    leader, standby_port = (first, second_port) if leaders[0] else (second, first_port)
    os.kill(leader.pid or 0, signal.SIGTERM)  # a rollout: the lease is released
    eventually(lambda: True if _is_leader(standby_port) else None, "the standby to lead", 30)
    stacks.wait_ticks("shared", before + 3)
    _assert_each_tick_once(stacks, "shared")
    _quiesce(stacks, "shared")
