"""A namespace's ``AgentBudget`` end to end: the real API server, Redis, an operator and a
runner process. The budget caps tokens in fixed windows of 30 s (the shortest), so a
window is spent in a few ticks and rolls over within the test: the budget reports its
level and posts Events, every stack of the namespace stops with ``BudgetExceeded``
naming it, and ticks again when the window rolls over; another namespace's stacks are
not touched."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from kubernetes import client

from agentstack_core.keys import NamespaceKeys
from agentstack_devkit.fleet import Fleet
from tests.e2e.stacks import Stacks
from tests.helpers import eventually

GROUP, VERSION, BUDGETS = "agentstack.dev", "v1alpha1", "agentbudgets"
WINDOW = 30


def _create_budget(api: client.ApiClient, namespace: str, name: str, spec: dict[str, Any]) -> None:
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        BUDGETS,
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "AgentBudget",
            "metadata": {"name": name},
            "spec": spec,
        },
    )


def _budget_status(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    got = client.CustomObjectsApi(api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, BUDGETS, name
    )
    return dict(got.get("status") or {})


def _level_reached(
    api: client.ApiClient, namespace: str, name: str, level: str
) -> dict[str, Any] | None:
    status = _budget_status(api, namespace, name)
    return status if status.get("level") == level else None


def _budget_events(core: client.CoreV1Api, namespace: str) -> list[str]:
    listed = core.list_namespaced_event(namespace, field_selector="involvedObject.kind=AgentBudget")
    return [event.reason for event in listed.items]


def _ticks(stacks: Stacks, names: list[str]) -> dict[str, int]:
    return {name: int(stacks.status(name).get("ticks") or 0) for name in names}


@pytest.mark.timeout(300)
def test_a_spent_namespace_stops_every_stack_and_resumes_when_its_window_rolls_over(
    running_fleet: Fleet,
    k8s_api: client.ApiClient,
    redis_reader: redis.Redis,
    namespace: str,
) -> None:
    core = client.CoreV1Api(k8s_api)
    other = f"{namespace}-other"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=other)))
    try:
        stacks = Stacks(k8s_api, namespace, redis_reader)
        names = ["a", "b", "c"]
        for name in names:
            stacks.create(name, tickIntervalSeconds=1)
        bystander = Stacks(k8s_api, other, redis_reader)
        bystander.create("free", tickIntervalSeconds=1)
        stacks.wait_ticks("a", 1)
        # A window holds a handful of ticks: the tokens of one tick, measured, times 4.
        per_tick = max(1, int(stacks.status("a").get("tokensUsed") or 0))
        cap = 4 * per_tick
        _create_budget(
            k8s_api,
            namespace,
            "cap",
            {
                "maxTokens": cap,
                "window": {"seconds": WINDOW},
                "thresholds": {"warnPercent": 50, "throttlePercent": 75},
            },
        )

        # Exceeded: the budget says so, with an Event, and so does every stack.
        exceeded = eventually(
            lambda: _level_reached(k8s_api, namespace, "cap", "Exceeded"),
            "the budget to be exceeded",
            timeout=2 * WINDOW,
        )
        window = exceeded["window"]
        assert int(exceeded["tokens"]) <= cap  # held before each call: never over
        for name in names:
            held = stacks.wait_condition(name, "BudgetExceeded", "True", "NamespaceBudgetSpent")
            assert "AgentBudget cap" in held["message"]
            assert stacks.status(name)["phase"] == "BudgetExceeded"
        assert "NamespaceBudgetExceeded" in _budget_events(core, namespace)
        # Held: no stack ticks until the window rolls over (a tick in flight may finish).
        held_at = _ticks(stacks, names)
        spent = int(redis_reader.hget(NamespaceKeys(namespace).spend, f"cap|{window}|tokens") or 0)
        assert spent <= cap
        # The other namespace ticks on, untouched.
        free_before = int(bystander.status("free").get("ticks") or 0)
        bystander.wait_ticks("free", free_before + 2)
        assert bystander.condition("free", "BudgetExceeded")["reason"] == "WithinBudget"

        # The window rolls over: back to Ok (an Event; the status may be exceeded
        # again by the time it is read), and every stack ticks again.
        eventually(
            lambda: True if "NamespaceBudgetOk" in _budget_events(core, namespace) else None,
            "the budget's next window",
            timeout=2 * WINDOW,
        )
        assert _budget_status(k8s_api, namespace, "cap")["window"] != window
        for name in names:
            stacks.wait_ticks(name, held_at[name] + 1, timeout=2 * WINDOW)
        # Every window's spend stayed within the cap, as the ledger counted it.
        counters = redis_reader.hgetall(NamespaceKeys(namespace).spend)
        windows = {field.split("|")[1] for field in counters if field.startswith("cap|")}
        for each in windows:
            assert int(counters.get(f"cap|{each}|tokens", 0)) <= cap, counters
        # A budget deleted leaves the ledger, and nothing holds the stacks.
        client.CustomObjectsApi(k8s_api).delete_namespaced_custom_object(
            GROUP, VERSION, namespace, BUDGETS, "cap"
        )
        eventually(
            lambda: True if not redis_reader.exists(NamespaceKeys(namespace).budgets) else None,
            "the budget to leave the ledger",
            timeout=30,
        )
        for name in names:
            stacks.wait_condition(name, "BudgetExceeded", "False", "WithinBudget", timeout=30)
    finally:
        core.delete_namespace(other)


@pytest.mark.timeout(180)
def test_a_quota_caps_the_stacks_at_admission_and_stretches_their_ticks_together(
    running_fleet: Fleet,
    k8s_api: client.ApiClient,
    redis_reader: redis.Redis,
    namespace: str,
) -> None:
    """``quota.maxStacks`` becomes a ResourceQuota the operator keeps, so the API server
    refuses the stack too many; ``quota.maxTicksPerSecond`` stretches every interval of
    the namespace by the factor their sum asks for."""
    core = client.CoreV1Api(k8s_api)
    _create_budget(k8s_api, namespace, "quota", {"quota": {"maxStacks": 3, "maxTicksPerSecond": 1}})
    kept = eventually(
        lambda: _enforced_quota(core, namespace, "agentbudget-quota"),
        "the operator's ResourceQuota to be in force",
        timeout=60,
    )
    assert kept.spec.hard == {"count/agentstacks.agentstack.dev": "3"}
    assert kept.metadata.owner_references[0].kind == "AgentBudget"
    stacks = Stacks(k8s_api, namespace, redis_reader)
    for name in ("a", "b", "c"):
        stacks.create(name, tickIntervalSeconds=2)
    with pytest.raises(client.ApiException) as refused:
        stacks.create("d", tickIntervalSeconds=2)
    assert refused.value.status == 403
    assert "exceeded quota: agentbudget-quota" in str(refused.value.body)
    # Three stacks every 2 s ask for 1.5 ticks/s; the quota allows 1: each waits 3 s.
    for name in ("a", "b", "c"):
        stretched = stacks.wait_condition(
            name, "BudgetExceeded", "False", "NamespaceQuotaThrottled", timeout=30
        )
        assert "every interval stretched 1.5x" in stretched["message"]
        eventually(
            lambda name=name: (
                True if stacks.status(name).get("effectiveIntervalSeconds") == 3 else None
            ),
            f"{name}'s interval to be stretched",
            timeout=30,
        )


def _enforced_quota(
    core: client.CoreV1Api, namespace: str, name: str
) -> client.V1ResourceQuota | None:
    """The ResourceQuota once the controller has counted what it caps (before that,
    admission refuses every stack: "status unknown for quota")."""
    try:
        quota = core.read_namespaced_resource_quota(name, namespace)
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise
    counted = quota.status is not None and "count/agentstacks.agentstack.dev" in (
        quota.status.used or {}
    )
    return quota if counted else None
