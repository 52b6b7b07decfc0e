"""Runner faults: SIGKILL mid-step, again and again; a tick longer than the visibility
timeout. Afterwards the invariant checker reads Redis and the API server."""

from __future__ import annotations

import json
import signal

import redis
from kubernetes import client

from agentstack_devkit.fakellm import Delay, FakeLLMServer, RecordedRequest, Reply
from agentstack_devkit.fleet import Fleet
from tests.e2e.stacks import Stacks
from tests.helpers import eventually
from tests.reliability.conftest import JobPlayer
from tests.reliability.support import (
    POSTED,
    QUIET,
    consolidating,
    kill_runners_during,
    more_ticks,
    on_gateway,
    sleep_calls,
    team_of_stacks,
    verify,
)


def test_runners_killed_mid_step_again_and_again_lose_and_repeat_nothing(
    fleet: Fleet,
    gateway: FakeLLMServer,
    k8s_api: client.ApiClient,
    namespace: str,
    reader: redis.Redis,
) -> None:
    stacks = Stacks(k8s_api, namespace, reader)
    names = team_of_stacks(stacks, 24, gateway, tickIntervalSeconds=2)
    fleet.operator()
    victim = fleet.runner("runner-0")[0]
    fleet.runner("steady")
    for kill in range(1, 5):
        more_ticks(stacks, names, 10)  # ticks flowing, calls in flight: crash a runner
        victim.send_signal(signal.SIGKILL)
        victim.wait_exit()
        victim = fleet.runner(f"runner-{kill}")[0]

    report = verify("runner SIGKILL x4", fleet, k8s_api, reader, [namespace])
    assert report.executed >= 40


def test_a_tick_longer_than_the_visibility_timeout_runs_once(
    fleet: Fleet,
    gateway: FakeLLMServer,
    k8s_api: client.ApiClient,
    namespace: str,
    reader: redis.Redis,
) -> None:
    """Builder calls take 6 s, the visibility timeout is 4 s, two runners share the
    lanes: the running tick is kept alive, never claimed, never run twice."""
    gateway.add_rule(
        Delay(6, Reply(QUIET)), headers={"X-Agentstack-Agent": "builder"}, repeat_last=True
    )
    stacks = Stacks(k8s_api, namespace, reader)
    stacks.create("slow", tickIntervalSeconds=10, tickTimeoutSeconds=60, **on_gateway(gateway))
    fleet.operator()
    fleet.runner("runner-a")
    fleet.runner("runner-b")
    stacks.wait_ticks("slow", 3, timeout=120)

    verify("long ticks (6 s calls, 4 s visibility)", fleet, k8s_api, reader, [namespace])
    executed = stacks.executed("slow")
    assert len(executed) >= 3
    assert all(entry["outcome"] == "Succeeded" for entry in executed)


def test_runners_killed_during_consolidations_consolidate_once(
    fleet: Fleet,
    gateway: FakeLLMServer,
    k8s_api: client.ApiClient,
    namespace: str,
    reader: redis.Redis,
) -> None:
    """Every second tick is followed by a consolidation whose call takes a second; a
    runner is killed while one is in flight, four times. The checker proves no
    consolidation was written twice or lost (memory versions, notes, sleep counts)."""
    consolidating(gateway, 1)
    stacks = Stacks(k8s_api, namespace, reader)
    names = team_of_stacks(
        stacks, 6, gateway, tickIntervalSeconds=1, memory={"consolidateEveryTicks": 2}
    )
    fleet.operator()
    victim = fleet.runner("runner-0")[0]
    fleet.runner("steady")
    kill_runners_during(
        fleet, victim, 4, lambda: len(sleep_calls(gateway)), "a consolidation call in flight"
    )
    more_ticks(stacks, names, 12)

    report = verify("runner SIGKILL during consolidations x4", fleet, k8s_api, reader, [namespace])
    assert report.consolidations >= 4


def _recalling_builder(request: RecordedRequest) -> str:
    """A builder that first recalls, then writes what it found (one artifact a tick)."""
    if "recall-results" in str(request.messages[-1]["content"]):
        tick = str(request.headers.get("x-agentstack-tick", "")).rsplit("/", 1)[-1]
        write = {"type": "write_artifact", "name": f"note-{tick}.md", "content": "recalled"}
        return json.dumps({"thought": "write", "actions": [write]})
    return json.dumps({"thought": "look back", "actions": [{"type": "recall", "query": "quiet"}]})


def test_runners_killed_after_a_recall_commit_its_step_once(
    fleet: Fleet,
    gateway: FakeLLMServer,
    k8s_api: client.ApiClient,
    namespace: str,
    reader: redis.Redis,
) -> None:
    """The builder recalls, and its next call (with what the recall found) takes a
    second; a runner is killed while such calls are in flight, three times. The resumed
    step recalls again and commits once: no step, artifact version or archive item
    doubled."""
    gateway.add_rule(
        Delay(1, Reply(_recalling_builder)),
        headers={"X-Agentstack-Agent": "builder"},
        repeat_last=True,
    )
    gateway.add_rule(
        Reply(POSTED), headers={"X-Agentstack-Agent": "communicator"}, repeat_last=True
    )
    stacks = Stacks(k8s_api, namespace, reader)
    names = team_of_stacks(stacks, 6, gateway, tickIntervalSeconds=2)
    fleet.operator()
    victim = fleet.runner("runner-0")[0]
    fleet.runner("steady")
    kill_runners_during(
        fleet,
        victim,
        3,
        lambda: len(_after_recall(gateway)),
        "a builder call with recall results in flight",
    )
    more_ticks(stacks, names, 12)

    report = verify("runner SIGKILL after recalls x3", fleet, k8s_api, reader, [namespace])
    assert report.executed >= 12


def _after_recall(gateway: FakeLLMServer) -> list[RecordedRequest]:
    return [
        r
        for r in gateway.requests
        if r.headers.get("x-agentstack-agent") == "builder"
        and "recall-results" in str(r.messages[-1]["content"])
    ]


def test_tick_jobs_whose_pods_are_deleted_mid_tick_lose_and_repeat_nothing(
    fleet: Fleet,
    gateway: FakeLLMServer,
    k8s_api: client.ApiClient,
    namespace: str,
    reader: redis.Redis,
) -> None:
    """``executor: job``: three tick pods SIGKILLed while their runner holds the tick,
    then deleted (a drain, a node lost). Each of those ticks is recorded, failed, once
    its dead runner's lease has expired; none runs twice; the stacks go on."""
    gateway.add_rule(
        Delay(2, Reply(QUIET)), headers={"X-Agentstack-Agent": "builder"}, repeat_last=True
    )
    stacks = Stacks(k8s_api, namespace, reader)
    # Job pods hold only their stack's own key (from its Secret), never the pool's.
    stacks.core.create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="own-key"), string_data={"key": "sk-job-own"}
        ),
    )
    llm = {
        "model": {"provider": "openai", "name": "gpt-4o-mini"},
        "providers": {
            "openai": {
                "baseURL": gateway.openai_base_url,
                "secretRef": {"name": "own-key", "key": "key"},
            }
        },
    }
    names = team_of_stacks(
        stacks, 3, executor="job", tickIntervalSeconds=5, tickTimeoutSeconds=30, llm=llm
    )
    fleet.operator(AGENTSTACK_JOB_GRACE_SECONDS="5", AGENTSTACK_JOB_TTL_SECONDS="600")
    player = JobPlayer(k8s_api, [namespace], fleet, kill_mid_tick=3, reader=reader)
    player.start()
    try:
        eventually(
            lambda: True if len(player.killed) == 3 else None,
            "three tick pods killed while their runner held the tick",
            timeout=120,
        )
        more_ticks(stacks, names, 3)
        report = verify("tick Jobs' pods deleted mid-tick", fleet, k8s_api, reader, [namespace])
    finally:
        player.stop()
    assert report.executed >= 3
    recorded = {e["tick_id"]: e for name in names for e in stacks.history(name)}
    for tick in player.killed:
        assert (recorded[tick]["outcome"], recorded[tick]["reason"]) == ("Failed", "JobFailed")
