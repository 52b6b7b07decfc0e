"""Inputs that wake a stack, end to end: API (with Kubernetes authentication), operator,
runner, Redis and the control plane, all real.

RBAC decides who may send (``create agentstacks/inputs``, checked by a
SubjectAccessReview), the stack's ``spec.inputs`` bounds how much, and an input gets
an extra tick at once: the stacks here tick once an hour, so any tick after the first
that reads an input is one the input brought.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from kubernetes import client

from agentstack_devkit.controlplane import ControlPlane
from tests.e2e.accounts import account
from tests.e2e.stacks import Stacks
from tests.helpers import eventually

HOUR = 3600


@pytest.fixture(scope="module")
def setting(steering: tuple[str, Stacks]) -> Iterator[tuple[httpx.Client, Stacks]]:
    """A client of the API (authentication on) and a namespace of stacks."""
    url, stacks = steering
    with httpx.Client(base_url=url, timeout=10) as http:
        eventually(
            lambda: True if http.get("/readyz").status_code == 200 else None,
            "the API's cache to load",
        )
        yield http, stacks


def _started(stacks: Stacks, name: str) -> None:
    """The stack's first (start) tick is recorded: its spec is in Redis."""
    stacks.wait_ticks(name, 1)


def _inputs(http: httpx.Client, path: str, headers: dict[str, str]) -> list[dict[str, Any]]:
    response = http.get(f"{path}/inputs", headers=headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def _read(http: httpx.Client, path: str, headers: dict[str, str], number: int) -> dict[str, Any]:
    def read() -> dict[str, Any] | None:
        found = [i for i in _inputs(http, path, headers) if i["number"] == number]
        return found[0] if found and found[0]["state"] == "Read" else None

    return eventually(read, f"input #{number} to be read", timeout=30)


def test_rbac_decides_who_may_send_and_the_input_wakes_the_stack(
    setting: tuple[httpx.Client, Stacks], k8s_api: client.ApiClient
) -> None:
    http, stacks = setting
    stacks.create("hourly", tickIntervalSeconds=HOUR)
    _started(stacks, "hourly")
    path = f"/api/v1/namespaces/{stacks.namespace}/stacks/hourly"
    body = {"agent": "planner", "content": "Add a section on rollbacks."}

    reader = {"Authorization": f"Bearer {account(k8s_api, stacks.namespace, 'reader')}"}
    refused = http.post(f"{path}/inputs", json=body, headers=reader)
    assert refused.status_code == 403, refused.text
    assert "create agentstacks/inputs" in refused.json()["error"]["message"]
    assert _inputs(http, path, reader) == []  # nothing was written

    token = account(k8s_api, stacks.namespace, "sender", "agentstacks/inputs")
    sender = {"Authorization": f"Bearer {token}"}
    sent = http.post(f"{path}/inputs", json=body, headers=sender)
    assert sent.status_code == 202, sent.text
    accepted = sent.json()
    assert accepted["number"] == 1
    assert accepted["sender"] == f"system:serviceaccount:{stacks.namespace}:sender"
    assert accepted["agent"] == "planner"
    assert accepted["wakes"] is True

    read = _read(http, path, sender, 1)
    assert read["readBy"] == "planner"
    # The planner's step records the input as read; the tick's history entry follows
    # when its last step is done.
    ticks = eventually(
        lambda: [h["tick_id"] for h in stacks.history("hourly")][1:] or None,
        "the woken tick in the history",
    )
    # The hourly stack had its start tick; the input brought one more, at once.
    assert read["tickId"] in ticks, ticks
    assert read["content"] == body["content"]
    assert read["sender"] == accepted["sender"]
    # The trace of that tick shows the planner reading it, and the feed the answer.
    traces = http.get(f"{path}/traces", headers=sender).json()["items"]
    step = next(t for t in traces if t["tickId"] == read["tickId"] and t["agent"] == "planner")
    assert "read input #1" in step["actions"]
    feed = http.get(f"{path}/feed", headers=sender).json()["items"]
    assert any(f["content"].startswith("Input #1 from system:serviceaccount:") for f in feed)


def test_bad_inputs_are_refused_with_a_reason_and_leave_nothing(
    setting: tuple[httpx.Client, Stacks], control_plane: ControlPlane
) -> None:
    http, stacks = setting
    stacks.create("bounded", tickIntervalSeconds=HOUR, inputs={"maxPerMinute": 2, "maxBytes": 16})
    stacks.create("stopped", tickIntervalSeconds=HOUR, executionState="Stopped")
    _started(stacks, "bounded")
    admin = {"Authorization": f"Bearer {control_plane.admin_token}"}
    path = f"/api/v1/namespaces/{stacks.namespace}/stacks"

    def post(name: str, body: dict[str, Any]) -> httpx.Response:
        return http.post(f"{path}/{name}/inputs", json=body, headers=admin)

    def refused(response: httpx.Response, status: int, code: str) -> str:
        assert response.status_code == status, response.text
        assert response.json()["error"]["code"] == code
        return str(response.json()["error"]["message"])

    assert "maxBytes" in refused(post("bounded", {"content": "x" * 17}), 413, "InputTooLarge")
    assert "builder" in refused(
        post("bounded", {"agent": "nobody", "content": "hi"}), 404, "NotFound"
    )
    refused(post("bounded", {"content": ""}), 400, "InvalidParameter")
    refused(post("bounded", {"text": "no content field"}), 400, "InvalidParameter")
    refused(post("stopped", {"content": "hi"}), 409, "StackStopped")
    refused(post("missing", {"content": "hi"}), 404, "NotFound")
    assert [post("bounded", {"content": f"m{i}"}).status_code for i in range(2)] == [202, 202]
    flood = post("bounded", {"content": "one too many"})
    assert "maxPerMinute" in refused(flood, 429, "TooManyInputs")
    assert 1 <= int(flood.headers["retry-after"]) <= 60
    logged = _inputs(http, f"{path}/bounded", admin)
    assert [i["number"] for i in logged] == [2, 1]  # newest first; nothing refused is kept


def test_pause_and_resume_through_the_api_are_patches_made_with_the_callers_token(
    setting: tuple[httpx.Client, Stacks], k8s_api: client.ApiClient
) -> None:
    """The API runs as the admin here: a caller refused by RBAC proves that the patch
    was made with the caller's token, not the API's."""
    http, stacks = setting
    stacks.create("steered", tickIntervalSeconds=HOUR)
    path = f"/api/v1/namespaces/{stacks.namespace}/stacks/steered/state"
    onlooker = {"Authorization": f"Bearer {account(k8s_api, stacks.namespace, 'onlooker')}"}
    refused = http.post(path, json={"executionState": "Paused"}, headers=onlooker)
    assert refused.status_code == 403, refused.text
    assert stacks.get("steered")["spec"]["executionState"] == "Running"

    rbac = client.RbacAuthorizationV1Api(k8s_api)
    rbac.patch_namespaced_role(
        "onlooker",
        stacks.namespace,
        {
            "rules": [
                {"apiGroups": ["agentstack.dev"], "resources": ["agentstacks"], "verbs": ["get"]},
                {"apiGroups": ["agentstack.dev"], "resources": ["agentstacks"], "verbs": ["patch"]},
            ]
        },
    )

    def paused() -> bool | None:
        answer = http.post(path, json={"executionState": "Paused"}, headers=onlooker)
        return True if answer.status_code == 200 else None

    eventually(paused, "the patch grant to take effect")
    assert stacks.get("steered")["spec"]["executionState"] == "Paused"
    eventually(
        lambda: True if stacks.condition("steered", "Paused").get("status") == "True" else None,
        "the operator to report the stack Paused",
    )
    resumed = http.post(path, json={"executionState": "Running"}, headers=onlooker)
    assert resumed.status_code == 200, resumed.text
    assert stacks.get("steered")["spec"]["executionState"] == "Running"
