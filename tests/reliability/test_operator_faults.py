"""Operator faults: the leader SIGKILLed (pool and Job executors), the leader hung
(SIGSTOP) while a standby takes over and then woken (SIGCONT), the API server stopped.

Besides the invariants, these cases check "one leader acts at a time" where it shows:
every tick request names the replica that sent it, and the Lease's holders are
recorded as the API server reported them; a replica never sends a tick after another
took the Lease over from it.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import pytest
import redis
from kubernetes import client

from agentstack_core.keys import FleetKeys
from agentstack_core.protocol import LANES
from agentstack_devkit.controlplane import ControlPlane
from agentstack_devkit.fakellm import FakeLLMServer
from agentstack_devkit.fleet import Fleet
from tests.e2e.stacks import Stacks
from tests.helpers import eventually
from tests.reliability.conftest import JobPlayer, LeaderLog
from tests.reliability.support import more_ticks, team_of_stacks, verify

STACKS = 20


@pytest.fixture
def leaders(fleet: Fleet, k8s_api: client.ApiClient) -> Iterator[LeaderLog]:
    log = LeaderLog(k8s_api, fleet.extra_env["AGENTSTACK_OPERATOR_NAMESPACE"])
    log.start()
    try:
        yield log
    finally:
        log.stop()


def _requests(reader: redis.Redis) -> list[dict[str, str]]:
    return [
        fields
        for lane in LANES
        for _id, fields in reader.xrange(FleetKeys.lane(lane))  # type: ignore[union-attr]
    ]


def _sent_after_losing_the_lease(reader: redis.Redis, leaders: LeaderLog) -> list[str]:
    """Requests a replica sent after the Lease went to another replica."""
    problems = []
    for fields in _requests(reader):
        sender, at = fields.get("dispatched_by", ""), float(fields["dispatched_at"])
        for seen, holder in leaders.changes:
            if holder not in (None, sender) and seen < at and _held_before(leaders, sender, seen):
                problems.append(f"{sender} sent {fields['tick_id']} at {at:.3f}, after {holder}")
                break
    return problems


def _held_before(leaders: LeaderLog, sender: str, moment: float) -> bool:
    """Whether ``sender`` held the Lease at some point before ``moment`` and lost it by
    then (so anything it sends after ``moment`` is a second leader acting)."""
    held = [seen for seen, holder in leaders.changes if holder == sender and seen < moment]
    later = [seen for seen, holder in leaders.changes if holder == sender and seen >= moment]
    return bool(held) and not later


def _leader(leaders: LeaderLog) -> str:
    return eventually(lambda: leaders.changes[-1][1] if leaders.changes else None, "a leader")


def _taken_over(leaders: LeaderLog, first: str) -> None:
    eventually(
        lambda: True if leaders.changes[-1][1] not in (None, first) else None,
        "the standby to take the Lease",
        timeout=30,
    )


@pytest.mark.parametrize("executor", ["pool", "job"])
def test_the_leader_killed_a_standby_takes_over_and_nothing_is_lost(
    executor: str,
    fleet: Fleet,
    gateway: FakeLLMServer,
    leaders: LeaderLog,
    k8s_api: client.ApiClient,
    namespace: str,
    reader: redis.Redis,
) -> None:
    stacks = Stacks(k8s_api, namespace, reader)
    count = STACKS if executor == "pool" else 4
    # Job pods hold only a stack's own keys: Job-executor stacks use the scripted team.
    names = team_of_stacks(
        stacks,
        count,
        gateway if executor == "pool" else None,
        tickIntervalSeconds=2 if executor == "pool" else 5,
        executor=executor,
    )
    job_env = {"AGENTSTACK_JOB_GRACE_SECONDS": "5", "AGENTSTACK_JOB_TTL_SECONDS": "600"}
    operators = {name: fleet.operator(name, **job_env)[0] for name in ("op-a", "op-b")}
    player = JobPlayer(k8s_api, [namespace], fleet) if executor == "job" else None
    if player is None:
        fleet.runner()
    else:
        player.start()
    try:
        more_ticks(stacks, names, 2 * count)
        first = _leader(leaders)
        operators[first].send_signal(signal.SIGKILL)
        operators[first].wait_exit()
        _taken_over(leaders, first)
        more_ticks(stacks, names, 2 * count)
        verify(f"leader SIGKILL ({executor})", fleet, k8s_api, reader, [namespace])
    finally:
        if player is not None:
            player.stop()
    assert _sent_after_losing_the_lease(reader, leaders) == []
    if player is not None:
        assert player.ran >= 2 * count


def test_a_hung_leader_woken_after_a_takeover_does_not_act(
    fleet: Fleet,
    gateway: FakeLLMServer,
    leaders: LeaderLog,
    k8s_api: client.ApiClient,
    namespace: str,
    reader: redis.Redis,
) -> None:
    stacks = Stacks(k8s_api, namespace, reader)
    names = team_of_stacks(stacks, STACKS, gateway, tickIntervalSeconds=2)
    operators = {name: fleet.operator(name)[0] for name in ("op-a", "op-b")}
    fleet.runner()
    more_ticks(stacks, names, STACKS)
    first = _leader(leaders)
    operators[first].send_signal(signal.SIGSTOP)  # hung: alive, holding its state
    try:
        _taken_over(leaders, first)
        more_ticks(stacks, names, STACKS)
    finally:
        operators[first].send_signal(signal.SIGCONT)
    woke = time.time()
    more_ticks(stacks, names, STACKS)  # the woken replica has had every chance to act

    verify("leader SIGSTOP/SIGCONT", fleet, k8s_api, reader, [namespace])
    assert _sent_after_losing_the_lease(reader, leaders) == []
    assert not [
        f
        for f in _requests(reader)
        if f.get("dispatched_by") == first and float(f["dispatched_at"]) > woke
    ]
    assert "is no longer the leader" in operators[first].log_tail(200)


def test_the_api_server_stopped_for_30_seconds(
    fleet: Fleet,
    gateway: FakeLLMServer,
    control_plane: ControlPlane,
    k8s_api: client.ApiClient,
    namespace: str,
    reader: redis.Redis,
) -> None:
    stacks = Stacks(k8s_api, namespace, reader)
    names = team_of_stacks(stacks, STACKS, gateway, tickIntervalSeconds=2)
    operator, _port = fleet.operator()
    fleet.runner()
    more_ticks(stacks, names, STACKS)
    apiserver = next(p for p in control_plane.processes if p.name == "kube-apiserver")
    apiserver.send_signal(signal.SIGSTOP)
    stopped = time.time()
    try:
        time.sleep(30)  # the fault itself: the API server is gone this long
    finally:
        apiserver.send_signal(signal.SIGCONT)
    resumed = time.time()
    more_ticks(stacks, names, 2 * STACKS, timeout=120)

    verify(f"API server stopped {resumed - stopped:.0f}s", fleet, k8s_api, reader, [namespace])
    assert operator.is_running()
    after = [h for name in names for h in stacks.history(name) if float(h["started_at"]) > resumed]
    assert after, "ticks resumed after the outage"
