"""Tool calls that wait for a person, end to end: a real MCP server, runner, operator,
API (Kubernetes authentication) and the control plane.

The stack ticks once an hour on its own, so every tick after the first is one an input
or a decision brought. Its builder asks to call a tool of a ``requireApproval`` server;
the call is not made but waits (condition ``AwaitingApproval``, Event
``ApprovalRequested``); RBAC decides who may decide (``update agentstacks/approvals``);
an approved call runs once, a denied one never; the decider is named in an Event.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client

from agentstack_core.keys import StackKeys, StackRef
from agentstack_devkit.mcpserver import ToolServer
from tests.e2e.accounts import account
from tests.e2e.stacks import Stacks
from tests.helpers import eventually

HOUR = 3600


@pytest.fixture(scope="module")
def setting(
    steering: tuple[str, Stacks], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[httpx.Client, Stacks, ToolServer]]:
    url, stacks = steering
    with (
        ToolServer(tmp_path_factory.mktemp("mcp")) as server,
        httpx.Client(base_url=url, timeout=10) as http,
    ):
        eventually(
            lambda: True if http.get("/readyz").status_code == 200 else None,
            "the API's cache to load",
        )
        yield http, stacks, server


def _waiting(http: httpx.Client, path: str, headers: dict[str, str]) -> list[dict[str, Any]]:
    def pending() -> list[dict[str, Any]] | None:
        items = http.get(f"{path}/approvals", headers=headers).json()["items"]
        found = [item for item in items if item["state"] == "Pending"]
        return found or None

    return eventually(pending, "a tool call waiting for approval", timeout=30)


def _state(
    http: httpx.Client, path: str, headers: dict[str, str], approval: str, state: str
) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        items = http.get(f"{path}/approvals", headers=headers).json()["items"]
        found = [item for item in items if item["id"] == approval and item["state"] == state]
        return found[0] if found else None

    return eventually(reached, f"approval {approval} to be {state}", timeout=30)


def test_a_call_waits_for_a_person_rbac_decides_who_and_it_runs_once(
    setting: tuple[httpx.Client, Stacks, ToolServer],
    k8s_api: client.ApiClient,
    tmp_path: Path,
) -> None:
    http, stacks, server = setting
    tools = {
        "servers": [
            {"name": "kb", "url": server.url, "allowedTools": ["lookup"], "requireApproval": True}
        ]
    }
    stacks.create("careful", tickIntervalSeconds=HOUR, tools=tools)
    path = f"/api/v1/namespaces/{stacks.namespace}/stacks/careful"
    onlooker = {"Authorization": f"Bearer {account(k8s_api, stacks.namespace, 'onlooker')}"}
    (asked,) = _waiting(http, path, onlooker)
    assert (asked["agent"], asked["tool"]) == ("builder", "kb/lookup")
    assert server.calls("lookup") == []  # asked, not called
    stacks.wait_event("careful", "ApprovalRequested")
    waiting = stacks.condition("careful", "AwaitingApproval")
    assert waiting["status"] == "True"
    assert asked["id"] in waiting["message"]

    decision = {"decision": "Approved", "reason": "read-only lookup"}
    refused = http.post(f"{path}/approvals/{asked['id']}", json=decision, headers=onlooker)
    assert refused.status_code == 403, refused.text
    assert "update agentstacks/approvals" in refused.json()["error"]["message"]

    token = account(k8s_api, stacks.namespace, "approver", "agentstacks/approvals")
    approver = {"Authorization": f"Bearer {token}"}
    # account grants `create`; a decision needs `update`: refused until that is granted.
    assert (
        http.post(f"{path}/approvals/{asked['id']}", json=decision, headers=approver).status_code
        == 403
    )
    client.RbacAuthorizationV1Api(k8s_api).patch_namespaced_role(
        "approver",
        stacks.namespace,
        {
            "rules": [
                {"apiGroups": ["agentstack.dev"], "resources": ["agentstacks"], "verbs": ["get"]},
                {
                    "apiGroups": ["agentstack.dev"],
                    "resources": ["agentstacks/approvals"],
                    "verbs": ["update"],
                },
            ]
        },
    )

    # Paused while the two decisions are made: the decision wakes the stack, and a tick
    # that claimed the call at once would make the second answer "Running by", not
    # "Approved by". A tick sees the pause once the spec in Redis says so.
    stacks.patch_spec("careful", executionState="Paused")
    spec_key = StackKeys(StackRef(stacks.namespace, "careful")).spec
    eventually(
        lambda: stacks.redis.hget(spec_key, "state") == "Paused" or None, "the pause published"
    )

    def approve() -> dict[str, Any] | None:
        answer = http.post(f"{path}/approvals/{asked['id']}", json=decision, headers=approver)
        return answer.json() if answer.status_code == 200 else None

    approved = eventually(approve, "the approver's grant to take effect")
    user = f"system:serviceaccount:{stacks.namespace}:approver"
    assert approved == {"id": asked["id"], "state": "Approved", "decidedBy": user}
    again = http.post(
        f"{path}/approvals/{asked['id']}", json={"decision": "Denied"}, headers=approver
    )
    assert again.status_code == 409, again.text
    assert "Approved by " + user in again.json()["error"]["message"]

    # Resumed, the hourly stack ticks again when an input wakes it; that tick runs the call.
    stacks.patch_spec("careful", executionState="Running")
    eventually(
        lambda: stacks.redis.hget(spec_key, "state") == "Running" or None, "the resume published"
    )
    token = account(k8s_api, stacks.namespace, "nudger", "agentstacks/inputs")
    nudger = {"Authorization": f"Bearer {token}"}
    nudge = {"agent": "builder", "content": "Go on."}
    sent = http.post(f"{path}/inputs", json=nudge, headers=nudger)
    assert sent.status_code == 202, sent.text

    executed = _state(http, path, approver, asked["id"], "Executed")
    assert executed["result"].startswith("Facts about")
    calls = [c for c in server.calls("lookup") if c["arguments"] == json.loads(asked["arguments"])]
    assert len(calls) == 1
    stacks.wait_event("careful", "ToolCallApproved")


def test_a_denied_call_never_runs(
    setting: tuple[httpx.Client, Stacks, ToolServer], control_plane: Any
) -> None:
    http, stacks, server = setting
    tools = {
        "servers": [
            {
                "name": "kb",
                "url": server.url,
                "allowedTools": ["add", "lookup"],
                "requireApproval": True,
            }
        ]
    }
    stacks.create("refused", tickIntervalSeconds=HOUR, tools=tools)
    path = f"/api/v1/namespaces/{stacks.namespace}/stacks/refused"
    admin = {"Authorization": f"Bearer {control_plane.admin_token}"}
    (asked,) = _waiting(http, path, admin)
    before = len(server.calls())
    denied = http.post(
        f"{path}/approvals/{asked['id']}",
        json={"decision": "Denied", "reason": "no"},
        headers=admin,
    )
    assert denied.status_code == 200, denied.text
    _state(http, path, admin, asked["id"], "Denied")
    stacks.wait_event("refused", "ToolCallDenied")
    eventually(
        lambda: (
            True
            if stacks.condition("refused", "AwaitingApproval").get("status") == "False"
            else None
        ),
        "nothing left waiting",
    )
    assert [
        c for c in server.calls()[before:] if c["arguments"] == json.loads(asked["arguments"])
    ] == []
