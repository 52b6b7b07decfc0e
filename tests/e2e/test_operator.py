"""The operator against the real control plane, real Redis and a real runner process."""

from __future__ import annotations

import itertools
import time

import pytest
import redis
from kubernetes import client

from agentstack_core.keys import StackKeys, StackRef
from agentstack_core.resource import GROUP, PLURAL, VERSION
from agentstack_devkit.controlplane import ControlPlane
from agentstack_devkit.fleet import Fleet
from agentstack_operator.finalizing import FINALIZER
from tests.e2e.stacks import Stacks
from tests.helpers import eventually, gone


@pytest.fixture
def stacks(
    running_fleet: Fleet, k8s_api: client.ApiClient, namespace: str, redis_reader: redis.Redis
) -> Stacks:
    return Stacks(k8s_api, namespace, redis_reader)


def test_applied_stack_ticks_and_status_shows_it(stacks: Stacks) -> None:
    stacks.create("demo")
    status = stacks.wait_ticks("demo", 3)
    assert status["observedGeneration"] == 1
    assert status["lastTickResult"] == "Succeeded"
    assert status["lastTickReason"] == "Completed"
    assert status["tokensUsed"] > 0
    assert status["phase"] == "Running"
    assert stacks.condition("demo", "Ready")["status"] == "True"
    assert stacks.condition("demo", "Ticking")["reason"] == "Scheduled"
    conditions = stacks.status("demo")["conditions"]
    assert {c["type"] for c in conditions} == {
        "Ready",
        "Ticking",
        "Paused",
        "Degraded",
        "BudgetExceeded",
        "ToolsDegraded",
        "AwaitingApproval",
        "Stalled",
        "Completed",
    }
    assert all(c["observedGeneration"] == 1 for c in conditions)
    assert "Started" in stacks.events("demo")
    # The status counts what the runners recorded, not a guess.
    assert status["ticks"] <= len(stacks.executed("demo"))


def test_pause_stops_ticks_and_resume_continues_without_a_burst(
    stacks: Stacks, control_plane: ControlPlane
) -> None:
    stacks.create("worker")
    stacks.create("witness")
    stacks.wait_ticks("worker", 2)
    patched = control_plane.kubectl(
        "patch",
        "ags",
        "worker",
        "-n",
        stacks.namespace,
        "--type",
        "merge",
        "-p",
        '{"spec":{"executionState":"Paused"}}',
    )
    assert patched.returncode == 0, patched.stderr
    stacks.wait_condition("worker", "Paused", "True", "Paused")
    assert stacks.condition("worker", "Ticking")["reason"] == "Paused"
    stacks.wait_event("worker", "Paused")
    paused_at = time.time()
    frozen = len(stacks.dispatched("worker"))
    # While the witness (same interval) ticks three more times, the paused stack gets none.
    witness = len(stacks.executed("witness"))
    eventually(
        lambda: True if len(stacks.executed("witness")) >= witness + 3 else None,
        "three more witness ticks",
    )
    assert len(stacks.dispatched("worker")) == frozen
    assert "nextTickTime" not in stacks.status("worker")
    memory_before = stacks.redis.get(StackKeys(StackRef(stacks.namespace, "worker")).plan)
    assert memory_before  # paused keeps everything

    stacks.patch_spec("worker", executionState="Running")
    stacks.wait_condition("worker", "Paused", "False", "Resumed")
    stacks.wait_event("worker", "Resumed")
    resumed_at = time.time()
    eventually(
        lambda: True if len(stacks.dispatched("worker")) >= frozen + 3 else None,
        "ticks to continue after resume",
    )
    after = [float(d["dispatched_at"]) for d in stacks.dispatched("worker")[frozen:]]
    assert after[0] >= paused_at
    # No replay of the ticks missed while paused: one tick per interval, not a burst.
    assert all(b - a >= 0.8 for a, b in itertools.pairwise(after))
    assert after[0] - resumed_at < 3
    assert stacks.redis.get(StackKeys(StackRef(stacks.namespace, "worker")).plan)


def test_stopped_stack_ends_its_run(stacks: Stacks) -> None:
    stacks.create("finite")
    stacks.create("witness")
    stacks.wait_ticks("finite", 1)
    stacks.patch_spec("finite", executionState="Stopped")
    stacks.wait_condition("finite", "Ready", "False", "Stopped")
    assert stacks.condition("finite", "Ticking")["reason"] == "Stopped"
    assert stacks.status("finite")["phase"] == "Stopped"
    stacks.wait_event("finite", "Stopped")
    frozen = len(stacks.dispatched("finite"))
    witness = len(stacks.executed("witness"))
    eventually(
        lambda: True if len(stacks.executed("witness")) >= witness + 3 else None,
        "three more witness ticks",
    )
    assert len(stacks.dispatched("finite")) == frozen


def test_editing_the_interval_takes_effect_at_once(stacks: Stacks) -> None:
    stacks.create("slow", tickIntervalSeconds=3600)
    stacks.wait_ticks("slow", 1)  # the first tick of the period runs at once
    stacks.patch_spec("slow", tickIntervalSeconds=1)
    # With an hour between ticks this would time out; at one second it is quick.
    stacks.wait_ticks("slow", 4, timeout=20)
    assert stacks.status("slow")["effectiveIntervalSeconds"] == 1
    assert stacks.status("slow")["observedGeneration"] == 2


def test_missing_secret_is_a_condition_until_it_appears(stacks: Stacks) -> None:
    stacks.create(
        "keyed",
        llm={
            "model": {"provider": "groq"},
            "providers": {"groq": {"secretRef": {"name": "llm-keys", "key": "GROQ_API_KEY"}}},
        },
    )
    ready = stacks.wait_condition("keyed", "Ready", "False", "SecretNotFound")
    assert "llm-keys" in ready["message"]
    assert stacks.condition("keyed", "Ticking")["reason"] == "SecretNotFound"
    stacks.wait_event("keyed", "SecretNotFound")
    assert stacks.dispatched("keyed") == []

    stacks.core.create_namespaced_secret(
        stacks.namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="llm-keys"),
            string_data={"GROQ_API_KEY": "gsk-not-a-real-key"},
        ),
    )
    stacks.wait_condition("keyed", "Ready", "True", timeout=45)
    stacks.wait_event("keyed", "SecretFound")
    eventually(lambda: stacks.dispatched("keyed") or None, "a tick of the keyed stack")
    for key in stacks.redis.scan_iter(match="*"):
        if stacks.redis.type(key) == "hash":
            assert "gsk-not-a-real-key" not in str(stacks.redis.hgetall(key))


def test_spec_problems_the_schema_cannot_see_become_a_condition(stacks: Stacks) -> None:
    stacks.create("witness")
    stacks.create(
        "confused",
        llm={
            "model": {"provider": "scripted", "name": "scripted-v1"},
            "fallbackModels": [{"provider": "scripted", "name": "scripted-v1"}],
        },
    )
    ready = stacks.wait_condition("confused", "Ready", "False", "InvalidSpec")
    assert "already in the chain" in ready["message"]
    assert stacks.status("confused")["phase"] == "Invalid"
    stacks.wait_event("confused", "InvalidSpec")
    before = len(stacks.executed("witness"))
    eventually(
        lambda: True if len(stacks.executed("witness")) >= before + 2 else None,
        "the other stack to keep ticking",
    )
    assert stacks.dispatched("confused") == []
    stacks.patch_spec("confused", llm={"fallbackModels": []})
    stacks.wait_condition("confused", "Ready", "True")
    stacks.wait_ticks("confused", 1)


def test_unknown_model_degrades_the_stack_and_backs_off(stacks: Stacks) -> None:
    stacks.create("broken", llm={"model": {"provider": "scripted", "name": "gpt-9"}})
    degraded = stacks.wait_condition("broken", "Degraded", "True", "TicksFailing")
    assert "unknown model 'gpt-9'" in degraded["message"]
    stacks.wait_event("broken", "Degraded")
    status = stacks.status("broken")
    assert status["consecutiveFailures"] >= 3
    assert status["lastTickResult"] == "Failed"
    assert status["effectiveIntervalSeconds"] >= 2  # failure back-off doubled it


def test_spent_budget_stops_ticks_until_it_is_raised(stacks: Stacks) -> None:
    stacks.create("frugal", budget={"maxTicks": 2})
    stacks.wait_condition("frugal", "BudgetExceeded", "True")
    assert stacks.condition("frugal", "Ticking")["reason"] == "BudgetExceeded"
    stacks.wait_event("frugal", "BudgetExceeded")
    eventually(lambda: True if stacks.status("frugal").get("ticks") == 2 else None, "2 ticks")
    assert len(stacks.executed("frugal")) == 2

    stacks.patch_spec("frugal", budget={"maxTicks": 4})
    stacks.wait_condition("frugal", "BudgetExceeded", "False")
    stacks.wait_ticks("frugal", 4)


def test_deletion_cleans_redis_and_namespace_deletion_completes(
    stacks: Stacks, k8s_api: client.ApiClient
) -> None:
    stacks.create("doomed")
    stacks.wait_ticks("doomed", 1)
    assert stacks.get("doomed")["metadata"]["finalizers"] == [FINALIZER]
    keys = StackKeys(StackRef(stacks.namespace, "doomed"))
    assert stacks.redis.exists(keys.history)
    stacks.delete("doomed")
    eventually(lambda: gone(lambda: stacks.get("doomed")), "the stack to be deleted")
    assert list(stacks.redis.scan_iter(match=f"{keys.prefix}*")) == []

    stacks.create("last")
    stacks.wait_ticks("last", 1)
    core = client.CoreV1Api(k8s_api)
    core.delete_namespace(stacks.namespace)
    eventually(
        lambda: gone(lambda: core.read_namespace(stacks.namespace)),
        "the namespace to be deleted (no finalizer left hanging)",
        timeout=90,
    )
    last = StackKeys(StackRef(stacks.namespace, "last"))
    assert list(stacks.redis.scan_iter(match=f"{last.prefix}*")) == []


def test_other_controllers_finalizers_are_kept(stacks: Stacks) -> None:
    """Ours is added next to one a stack was created with, and removed alone."""
    theirs = "example.com/keep"
    stacks.custom.create_namespaced_custom_object(
        GROUP,
        VERSION,
        stacks.namespace,
        PLURAL,
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "AgentStack",
            "metadata": {"name": "shared", "finalizers": [theirs]},
            "spec": {"goal": "share", "tickIntervalSeconds": 1},
        },
    )
    stacks.wait_ticks("shared", 1)
    assert stacks.get("shared")["metadata"]["finalizers"] == [theirs, FINALIZER]
    stacks.delete("shared")
    eventually(
        lambda: True if stacks.get("shared")["metadata"]["finalizers"] == [theirs] else None,
        "our finalizer released, theirs kept",
    )
    keys = StackKeys(StackRef(stacks.namespace, "shared"))
    assert list(stacks.redis.scan_iter(match=f"{keys.prefix}*")) == []
    stacks.custom.patch_namespaced_custom_object(
        GROUP, VERSION, stacks.namespace, PLURAL, "shared", {"metadata": {"finalizers": None}}
    )
    eventually(lambda: gone(lambda: stacks.get("shared")), "the stack to be deleted")


def test_kubectl_shows_the_columns_filled_in(stacks: Stacks, control_plane: ControlPlane) -> None:
    stacks.create("shown")
    stacks.wait_ticks("shown", 1)
    row = control_plane.kubectl("get", "ags", "shown", "-n", stacks.namespace).stdout
    fields = row.splitlines()[1].split()
    assert fields[:3] == ["shown", "Running", "True"]
    assert int(fields[3]) >= 1
    wide = control_plane.kubectl("get", "ags", "shown", "-n", stacks.namespace, "-o", "wide")
    assert "Succeeded" in wide.stdout


@pytest.mark.parametrize(("policy", "catch_up"), [("Skip", False), ("RunOnce", True)])
def test_missed_tick_policy_decides_what_a_resume_runs(
    stacks: Stacks, policy: str, catch_up: bool
) -> None:
    name = f"resumed-{policy.lower()}"
    stacks.create(name, tickIntervalSeconds=2, missedTickPolicy=policy)
    stacks.create("witness")
    stacks.wait_ticks(name, 1)
    stacks.patch_spec(name, executionState="Paused")
    stacks.wait_condition(name, "Paused", "True")
    paused_dispatches = len(stacks.dispatched(name))
    witness = len(stacks.executed("witness"))
    eventually(  # at least two of its slots go by while it is paused
        lambda: True if len(stacks.executed("witness")) >= witness + 5 else None,
        "five witness ticks",
    )
    resumed_at = time.time()
    stacks.patch_spec(name, executionState="Running")
    after = eventually(
        lambda: (
            stacks.dispatched(name)[paused_dispatches:] or None
            if len(stacks.dispatched(name)) >= paused_dispatches + 2
            else None
        ),
        "two ticks after the resume",
    )
    # A tick's slot is its due time in milliseconds: a slot due before the resume is a
    # missed one being caught up.
    caught_up = [d for d in after if int(d["slot"]) / 1000 <= resumed_at]
    assert len(caught_up) == (1 if catch_up else 0)  # RunOnce: one; Skip: none; never a burst
    slots = [int(d["slot"]) for d in after]
    assert len(slots) == len(set(slots))
