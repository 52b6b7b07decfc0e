"""The API killed in the middle of a rollback and of a fork: the stack keeps its old
state or gets the new one whole, never a mix — and asking again finishes the job. And a
shadowed fork's tool calls reach no tool server before a person approves them."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path
from typing import Any

import httpx
import redis
from kubernetes import client

from agentstack_core.keys import StackKeys, StackRef
from agentstack_core.redis.checkpoints import CheckpointState
from agentstack_devkit.fakellm import FakeLLMServer, Held, Reply
from agentstack_devkit.fleet import Fleet
from agentstack_devkit.mcpserver import ToolServer
from agentstack_devkit.processes import LOOPBACK
from tests.e2e.stacks import Stacks
from tests.helpers import eventually
from tests.reliability.support import (
    approval_tools,
    approve,
    on_gateway,
    pending_approval,
    verify,
)


def _state(reader: redis.Redis, keys: StackKeys, agents: list[str]) -> dict[str, Any]:
    """What a rollback or a seed replaces, read key by key."""
    return {
        "plan": reader.get(keys.plan),
        "artifacts": reader.hgetall(keys.artifacts),
        "cursors": reader.hgetall(keys.cursors),
        "goal": reader.get(keys.goal),
        "memories": {agent: reader.hgetall(keys.memory(agent)) for agent in agents},
    }


def _kept(state: CheckpointState) -> dict[str, Any]:
    return {
        "plan": state.plan or None,
        "artifacts": state.artifacts,
        "cursors": state.cursors,
        "goal": state.goal or None,
        "memories": {agent: kept.memory for agent, kept in state.agents.items()},
    }


def _post(port: int, path: str, body: dict[str, Any]) -> httpx.Response | None:
    """POST, or ``None`` when the API died under the request."""
    try:
        return httpx.post(f"http://{LOOPBACK}:{port}{path}", json=body, timeout=60)
    except httpx.HTTPError:
        return None


def test_an_api_killed_during_a_rollback_leaves_the_old_state_and_a_retry_restores(
    fleet: Fleet,
    gateway: FakeLLMServer,
    k8s_api: client.ApiClient,
    namespace: str,
    reader: redis.Redis,
) -> None:
    stacks = Stacks(k8s_api, namespace, reader)
    stacks.create("kept", **on_gateway(gateway, tickIntervalSeconds=1))
    fleet.operator()
    fleet.runner()
    _api, port = fleet.api("api-a")
    keys = StackKeys(StackRef(namespace, "kept"))
    eventually(lambda: True if reader.zcard(keys.checkpoints) >= 3 else None, "3 checkpoints")
    first = reader.zrange(keys.checkpoints, 0, 0)[0]
    kept = CheckpointState.from_json(reader.hget(keys.checkpoint_states, first))
    agents = list(kept.agents)

    # A tick holds the lease (its builder's call waits), so the rollback waits for it.
    release = threading.Event()
    gateway.add_rule(
        Held(release, Reply('{"actions": []}')), headers={"X-Agentstack-Agent": "builder"}
    )
    eventually(lambda: True if reader.get(keys.lease) else None, "a tick holding the lease")
    path = f"/api/v1/namespaces/{namespace}/stacks/kept/rollback"
    answers: list[httpx.Response | None] = []
    asking = threading.Thread(target=lambda: answers.append(_post(port, path, {"to": first})))
    asking.start()
    eventually(
        lambda: True if stacks.get("kept")["spec"].get("executionState") == "Paused" else None,
        "the rollback's pause",
    )
    before = _state(reader, keys, agents)
    _api.send_signal(signal.SIGKILL)  # while it waits for the tick to end
    _api.wait_exit()
    asking.join(60)
    assert answers == [None]
    gateway.clear_rules()
    release.set()
    eventually(lambda: True if reader.get(keys.lease) is None else None, "the tick's end")
    assert _state(reader, keys, agents) == before  # the old state, whole
    assert not [
        f for _i, f in reader.xrange(keys.archive) if f.get("ref", "").startswith("rollback")
    ]

    _api, port = fleet.api("api-b")
    answer = _post(port, path, {"to": first})
    assert answer is not None
    assert answer.status_code == 200, answer.text
    assert answer.json()["seq"] == 1
    assert _state(reader, keys, agents) == _kept(kept)  # the new state, whole
    verify("API SIGKILL during a rollback", fleet, k8s_api, reader, [namespace])


def test_an_api_killed_during_a_fork_leaves_an_empty_paused_fork_and_a_retry_seeds_it(
    fleet: Fleet,
    gateway: FakeLLMServer,
    k8s_api: client.ApiClient,
    namespace: str,
    reader: redis.Redis,
) -> None:
    stacks = Stacks(k8s_api, namespace, reader)
    stacks.create("source", **on_gateway(gateway, tickIntervalSeconds=1))
    operator = fleet.operator()[0]
    fleet.runner()
    api, port = fleet.api("api-a")
    source = StackKeys(StackRef(namespace, "source"))
    eventually(lambda: True if reader.zcard(source.checkpoints) >= 2 else None, "2 checkpoints")
    tick = reader.zrange(source.checkpoints, -1, -1)[0]
    kept = CheckpointState.from_json(reader.hget(source.checkpoint_states, tick))

    # No operator: the fork is created but never published, so the API waits to seed it.
    operator.send_signal(signal.SIGKILL)
    operator.wait_exit()
    path = f"/api/v1/namespaces/{namespace}/stacks/source/fork"
    body = {"name": "copy", "at": tick, "set": ["spec.goal=try"]}
    answers: list[httpx.Response | None] = []
    asking = threading.Thread(target=lambda: answers.append(_post(port, path, body)))
    asking.start()
    eventually(lambda: _exists(stacks, "copy"), "the fork's object")
    api.send_signal(signal.SIGKILL)
    api.wait_exit()
    asking.join(60)
    assert answers == [None]
    made = stacks.get("copy")
    assert made["spec"]["executionState"] == "Paused"
    fork = StackKeys(StackRef(namespace, "copy"))
    assert not reader.exists(fork.plan, fork.artifacts, fork.archive)  # nothing half-seeded

    fleet.operator("operator-b")
    _api, port = fleet.api("api-b")
    answer = _post(port, path, {**body, "paused": True})
    assert answer is not None
    assert answer.status_code == 201, answer.text
    assert answer.json()["uid"] == made["metadata"]["uid"]  # the same fork, finished
    assert _state(reader, fork, list(kept.agents)) == _kept(kept)  # seeded whole
    stacks.patch_spec("copy", executionState="Running")
    eventually(lambda: True if stacks.executed("copy") else None, "the fork's first tick")
    again = _post(port, path, body)
    assert again is not None
    assert again.status_code == 409
    assert "seeded already" in json.dumps(again.json())
    verify("API SIGKILL during a fork", fleet, k8s_api, reader, [namespace])


def _exists(stacks: Stacks, name: str) -> bool | None:
    try:
        stacks.get(name)
    except client.ApiException:
        return None
    return True


def test_a_shadowed_forks_tool_calls_wait_for_a_person(
    fleet: Fleet,
    k8s_api: client.ApiClient,
    namespace: str,
    reader: redis.Redis,
    tmp_path: Path,
) -> None:
    with ToolServer(tmp_path / "mcp") as server:
        stacks = Stacks(k8s_api, namespace, reader)
        tools = approval_tools(server)
        tools["servers"][0]["requireApproval"] = False  # the source calls freely
        stacks.create("free", tickIntervalSeconds=3600, tools=tools)
        fleet.operator()
        fleet.runner()
        _api, port = fleet.api()
        server.wait_calls("slow", 1)  # the source's builder called the tool itself
        keys = StackKeys(StackRef(namespace, "free"))
        eventually(lambda: True if reader.zcard(keys.checkpoints) else None, "a checkpoint")
        stacks.patch_spec("free", executionState="Paused")
        with httpx.Client(base_url=f"http://{LOOPBACK}:{port}", timeout=30) as http:
            made = http.post(
                f"/api/v1/namespaces/{namespace}/stacks/free/fork", json={"name": "shadow"}
            )
            assert made.status_code == 201, made.text
            server_spec = stacks.get("shadow")["spec"]["tools"]["servers"][0]
            assert server_spec["requireApproval"] is True
            path = f"/api/v1/namespaces/{namespace}/stacks/shadow"
            approval = pending_approval(http, path)  # the fork's builder asked
            assert len(server.calls("slow")) == 1  # and nothing reached the server
            approve(http, path, approval)
            server.wait_calls("slow", 2)  # approved: it runs, once
        verify("a shadowed fork's tool call", fleet, k8s_api, reader, [namespace])
