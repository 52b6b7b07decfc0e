"""Kubernetes triggers end to end: real Events and Pods on the control plane, the operator
(its one watch per kind), a runner and Redis.

What a trigger sent is read back from Redis (the stack's inputs log, what became of each
input, the deliveries it remembers), who may watch what from the stack's conditions
and Events, and the watches from the operator's own metric.
"""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

import httpx
import pytest
import redis
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from agentstack_core.keys import StackKeys, StackRef
from agentstack_core.records import InputRecord
from agentstack_devkit.fleet import Fleet
from tests.e2e.stacks import Stacks
from tests.helpers import bind_service_account, eventually

HOUR = 3600
CRASHING = (
    "object.status.containerStatuses.exists(c, has(c.state.waiting) && "
    "c.state.waiting.reason == 'CrashLoopBackOff')"
)


@pytest.fixture(scope="module")
def metrics_port(fleet: Fleet) -> int:
    """The module's operator (its metrics port) and a runner."""
    _process, port = fleet.operator()
    fleet.runner()
    return port


@pytest.fixture
def stacks(
    metrics_port: int, k8s_api: client.ApiClient, namespace: str, redis_reader: redis.Redis
) -> Stacks:
    """Stacks of a fresh namespace whose ServiceAccount ``watcher`` may list and watch
    Pods and Events, and ``nobody`` nothing."""
    core = client.CoreV1Api(k8s_api)
    for account in ("watcher", "nobody"):
        core.create_namespaced_service_account(
            namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=account))
        )
    _grant(k8s_api, namespace, "watcher", ["pods", "events"])
    return Stacks(k8s_api, namespace, redis_reader)


def _grant(api: client.ApiClient, namespace: str, account: str, resources: list[str]) -> None:
    rbac = client.RbacAuthorizationV1Api(api)
    name = f"{account}-watches"
    rbac.create_namespaced_role(
        namespace,
        client.V1Role(
            metadata=client.V1ObjectMeta(name=name),
            rules=[
                client.V1PolicyRule(api_groups=[""], resources=resources, verbs=["list", "watch"])
            ],
        ),
    )
    bind_service_account(api, namespace, account, name)


def _event(
    core: client.CoreV1Api, namespace: str, pod: str, reason: str, **fields: Any
) -> client.CoreV1Event:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    return core.create_namespaced_event(
        namespace,
        client.CoreV1Event(
            metadata=client.V1ObjectMeta(generate_name=f"{pod}."),
            involved_object=client.V1ObjectReference(
                kind="Pod", name=pod, namespace=namespace, uid=f"uid-{pod}"
            ),
            reason=reason,
            message=f"{reason} for {pod}",
            type="Warning",
            first_timestamp=now,
            last_timestamp=now,
            count=1,
            source=client.V1EventSource(component="kubelet"),
            **fields,
        ),
    )


def _inputs(stacks: Stacks, name: str) -> list[InputRecord]:
    keys = StackKeys(StackRef(stacks.namespace, name))
    return [InputRecord.from_fields(fields) for _id, fields in stacks.redis.xrange(keys.inputs)]


def _wait_inputs(stacks: Stacks, name: str, count: int) -> list[InputRecord]:
    return eventually(
        lambda: found if len(found := _inputs(stacks, name)) >= count else None,
        f"{count} input(s) of {name}",
    )


def _deliveries(stacks: Stacks, name: str) -> list[str]:
    keys = StackKeys(StackRef(stacks.namespace, name))
    return [str(d) for d in stacks.redis.zrange(keys.deliveries, 0, -1)]


def test_an_event_wakes_the_stack_with_what_happened_once_per_object(
    stacks: Stacks, k8s_api: client.ApiClient
) -> None:
    core = client.CoreV1Api(k8s_api)
    stacks.create(
        "crash",
        tickIntervalSeconds=HOUR,
        triggers=[
            {
                "name": "backoff",
                "serviceAccountName": "watcher",
                "agent": "builder",
                "event": {"reasons": ["BackOff"], "involvedObjectKind": "Pod"},
            }
        ],
    )
    stacks.wait_ticks("crash", 1)
    elsewhere = f"other-{secrets.token_hex(3)}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=elsewhere)))
    try:
        _event(core, elsewhere, "web-1", "BackOff")  # another namespace: not the stack's
        _event(core, stacks.namespace, "web-1", "Pulled")  # another reason
        first = _event(core, stacks.namespace, "web-1", "BackOff")
        [sent] = _wait_inputs(stacks, "crash", 1)
        assert (sent.agent, sent.sender) == ("builder", "trigger/backoff")
        assert sent.content == (
            "trigger backoff: Warning Event BackOff on Pod web-1: BackOff for web-1"
        )
        # The input woke the stack (it ticks once an hour) and its tick read the input.
        keys = StackKeys(StackRef(stacks.namespace, "crash"))
        eventually(lambda: stacks.redis.hget(keys.input_outcomes, "1"), "the input read")
        eventually(  # the reading step commits before its tick is in the history
            lambda: True if len(stacks.executed("crash")) >= 2 else None, "the woken tick"
        )

        # The same Event counted again, then an Event of another pod: only the second
        # is sent (the watch delivers in order, so the first was seen before it).
        first.count = 5
        core.replace_namespaced_event(first.metadata.name, stacks.namespace, first)
        _event(core, stacks.namespace, "web-2", "BackOff")
        inputs = _wait_inputs(stacks, "crash", 2)
        assert [i.content.split(" on ")[1].split(":")[0] for i in inputs] == [
            "Pod web-1",
            "Pod web-2",
        ]
        assert len(_deliveries(stacks, "crash")) == 2
    finally:
        core.delete_namespace(elsewhere)


def _pod(core: client.CoreV1Api, namespace: str, name: str, app: str) -> None:
    core.create_namespaced_pod(
        namespace,
        client.V1Pod(
            metadata=client.V1ObjectMeta(name=name, labels={"app": app}),
            spec=client.V1PodSpec(containers=[client.V1Container(name="app", image="app:1")]),
        ),
    )


def _crash_loop(core: client.CoreV1Api, namespace: str, name: str, restarts: int) -> None:
    """The status a kubelet writes for a container that keeps failing."""
    core.patch_namespaced_pod_status(
        name,
        namespace,
        {
            "status": {
                "phase": "Running",
                "containerStatuses": [
                    {
                        "name": "app",
                        "image": "app:1",
                        "imageID": "",
                        "ready": False,
                        "restartCount": restarts,
                        "state": {
                            "waiting": {
                                "reason": "CrashLoopBackOff",
                                "message": "back-off restarting failed container",
                            }
                        },
                    }
                ],
            }
        },
    )


def test_an_object_whose_state_matches_its_condition_sends_once_per_window(
    stacks: Stacks, k8s_api: client.ApiClient
) -> None:
    core = client.CoreV1Api(k8s_api)
    _pod(core, stacks.namespace, "web", "web")
    _pod(core, stacks.namespace, "batch", "batch")
    _crash_loop(core, stacks.namespace, "web", 1)  # crash-looping before the stack exists
    stacks.create(
        "pods",
        tickIntervalSeconds=HOUR,
        triggers=[
            {
                "name": "crashloop",
                "serviceAccountName": "watcher",
                "windowSeconds": 86400,
                "object": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "selector": {"matchLabels": {"app": "web"}},
                    "condition": CRASHING,
                },
            }
        ],
    )
    [sent] = _wait_inputs(stacks, "pods", 1)  # found by a list: it was so already
    assert sent.sender == "trigger/crashloop"
    head, shown = sent.content.split("\n", 1)
    assert head == f"trigger crashloop: Pod web matches {CRASHING}"
    assert shown.startswith("  status.containerStatuses: [")
    assert '"reason":"CrashLoopBackOff"' in shown

    _crash_loop(core, stacks.namespace, "web", 2)  # still crash-looping: same window
    _crash_loop(core, stacks.namespace, "batch", 1)  # not selected
    _pod(core, stacks.namespace, "web-2", "web")
    _crash_loop(core, stacks.namespace, "web-2", 1)
    inputs = _wait_inputs(stacks, "pods", 2)
    pods = [i.content.split(" matches ")[0].rsplit(" ", 1)[1] for i in inputs]
    windows = {d.rsplit("/", 1)[1] for d in _deliveries(stacks, "pods")}
    # One input per pod and window (a day: two windows only if the test ran across
    # midnight UTC).
    assert sorted(set(pods)) == ["web", "web-2"]
    for pod in ("web", "web-2"):
        assert 1 <= pods.count(pod) <= len(windows)
    assert len(_deliveries(stacks, "pods")) == len(pods)


def test_a_service_account_without_the_right_holds_the_stack_until_it_has_it(
    stacks: Stacks, k8s_api: client.ApiClient
) -> None:
    stacks.create("denied", triggers=[{"name": "all", "serviceAccountName": "nobody", "event": {}}])
    ready = stacks.wait_condition("denied", "Ready", "False", reason="TriggerNotAllowed")
    assert ready["message"] == (
        "trigger all: ServiceAccount 'nobody' may not list and watch events in namespace "
        f"{stacks.namespace}"
    )
    stacks.wait_event("denied", "TriggerNotAllowed")
    assert stacks.status("denied").get("ticks", 0) == 0

    _grant(k8s_api, stacks.namespace, "nobody", ["events"])
    stacks.wait_condition("denied", "Ready", "True", timeout=90)
    stacks.wait_event("denied", "TriggersAllowed")
    stacks.wait_ticks("denied", 1)


def test_secrets_are_never_a_trigger_kind(stacks: Stacks) -> None:
    with pytest.raises(ApiException) as refused:
        stacks.create(
            "peek",
            triggers=[
                {
                    "name": "keys",
                    "serviceAccountName": "watcher",
                    "object": {"apiVersion": "v1", "kind": "Secret"},
                }
            ],
        )
    assert refused.value.status == 422
    assert "Secrets are never watched by a trigger" in str(refused.value.body)
    with pytest.raises(ApiException) as both:
        stacks.create(
            "both",
            triggers=[
                {
                    "name": "t",
                    "serviceAccountName": "watcher",
                    "event": {},
                    "object": {"apiVersion": "v1", "kind": "Pod"},
                }
            ],
        )
    assert "a trigger takes exactly one of event and object" in str(both.value.body)


def _watches(port: int) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith("agentstack_operator_trigger_watches "):
            return float(line.split()[1])
    raise AssertionError("agentstack_operator_trigger_watches not exposed")


def test_stacks_share_one_watch_per_kind(stacks: Stacks, metrics_port: int) -> None:
    """Twenty stacks, two kinds: the operator holds two watches (this module's other
    stacks watch the same two kinds)."""
    pod_trigger = {"apiVersion": "v1", "kind": "Pod", "condition": CRASHING}
    for index in range(10):
        stacks.create(
            f"p{index}",
            tickIntervalSeconds=HOUR,
            triggers=[{"name": "t", "serviceAccountName": "watcher", "object": pod_trigger}],
        )
        stacks.create(
            f"e{index}",
            tickIntervalSeconds=HOUR,
            triggers=[{"name": "t", "serviceAccountName": "watcher", "event": {}}],
        )
    for index in range(10):
        stacks.wait_ticks(f"p{index}", 1)
        stacks.wait_ticks(f"e{index}", 1)
    eventually(lambda: True if _watches(metrics_port) == 2 else None, "two watches")
