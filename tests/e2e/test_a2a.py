"""Stacks as A2A agents, end to end, through the ``a2a-sdk``'s own client: the API
(Kubernetes authentication on), the operator, a runner with the offline ``scripted``
provider, Redis and the control plane, all real.

A message is an input (RBAC: ``create agentstacks/inputs``), its task the fate of that
input: the stacks here tick once an hour, so the tick that reads a message is one the
message woke.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from a2a.client import (
    A2ACardResolver,
    A2AClientError,
    AgentCardResolutionError,
    Client,
    ClientConfig,
    ClientFactory,
)
from a2a.types.a2a_pb2 import (
    AgentCard,
    GetTaskRequest,
    Message,
    Part,
    Role,
    SendMessageRequest,
    StreamResponse,
    TaskState,
)
from a2a.utils.constants import PROTOCOL_VERSION_0_3, PROTOCOL_VERSION_1_0, VERSION_HEADER
from a2a.utils.errors import TaskNotFoundError
from kubernetes import client

from agentstack_core.keys import StackKeys, StackRef
from agentstack_devkit.controlplane import ControlPlane
from tests.e2e.accounts import account
from tests.e2e.stacks import Stacks
from tests.helpers import eventually

HOUR = 3600
TEAM = [
    {"name": "lead", "role": "planner"},
    {"name": "maker", "role": "builder"},
    {"name": "checker", "role": "reviewer"},
]
GOAL = "Keep the release notes of the payments service current."


@pytest.fixture(scope="module")
def setting(
    steering: tuple[str, Stacks], k8s_api: client.ApiClient
) -> tuple[str, Stacks, dict[str, str]]:
    """The API's URL, the stacks, and tokens: ``sender`` may create inputs, ``reader``
    may only get stacks. One stack, ``helper``, ticking hourly with a team of three."""
    url, stacks = steering
    with httpx.Client(base_url=url, timeout=10) as http:
        eventually(
            lambda: True if http.get("/readyz").status_code == 200 else None,
            "the API's cache to load",
        )
    tokens = {
        "sender": account(k8s_api, stacks.namespace, "a2a-sender", "agentstacks/inputs"),
        "reader": account(k8s_api, stacks.namespace, "a2a-reader"),
    }
    stacks.create("helper", goal=GOAL, tickIntervalSeconds=HOUR, agents=TEAM)
    stacks.wait_ticks("helper", 1)  # its start tick: the spec is in Redis
    return url, stacks, tokens


def _endpoint(url: str, stacks: Stacks, name: str) -> str:
    return f"{url}/api/v1/namespaces/{stacks.namespace}/stacks/{name}/a2a"


def _http(token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60)


async def _card(http: httpx.AsyncClient, endpoint: str) -> AgentCard:
    return await A2ACardResolver(http, endpoint).get_agent_card()


def _client(http: httpx.AsyncClient, card: AgentCard, *, streaming: bool) -> Client:
    return ClientFactory(ClientConfig(streaming=streaming, httpx_client=http)).create(card)


def _message(ident: str, text: str, **metadata: str) -> SendMessageRequest:
    message = Message(message_id=ident, role=Role.ROLE_USER, parts=[Part(text=text)])
    if metadata:
        message.metadata.update(metadata)
    return SendMessageRequest(message=message)


async def _sent(a2a: Client, request: SendMessageRequest) -> list[StreamResponse]:
    return [event async for event in a2a.send_message(request)]


def _inputs(url: str, stacks: Stacks, name: str, token: str) -> list[dict[str, Any]]:
    path = f"{url}/api/v1/namespaces/{stacks.namespace}/stacks/{name}/inputs"
    response = httpx.get(path, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


@pytest.mark.asyncio
async def test_the_card_is_derived_from_the_spec(
    setting: tuple[str, Stacks, dict[str, str]],
) -> None:
    url, stacks, tokens = setting
    endpoint = _endpoint(url, stacks, "helper")
    async with _http(tokens["reader"]) as http:  # reading the card needs get alone
        card = await _card(http, endpoint)
    assert card.name == "helper"
    assert card.description == GOAL
    assert [(s.id, list(s.tags)) for s in card.skills] == [
        (agent["name"], [agent["role"]]) for agent in TEAM
    ]
    assert card.capabilities.streaming
    assert [(i.url, i.protocol_binding, i.protocol_version) for i in card.supported_interfaces] == [
        (endpoint, "JSONRPC", PROTOCOL_VERSION_1_0),
        (endpoint, "JSONRPC", PROTOCOL_VERSION_0_3),
    ]
    assert list(card.default_input_modes) == ["text/plain"]


@pytest.mark.asyncio
async def test_a_message_is_an_input_and_its_task_follows_the_tick_that_reads_it(
    setting: tuple[str, Stacks, dict[str, str]],
) -> None:
    url, stacks, tokens = setting
    endpoint = _endpoint(url, stacks, "helper")
    async with _http(tokens["sender"]) as http:
        a2a = _client(http, await _card(http, endpoint), streaming=False)
        request = _message("release-1", "Add a section on rollbacks.")
        (answer,) = await _sent(a2a, request)
        task = answer.task
        # message/send waits for the tick the message woke: it is over when it answers.
        assert task.id.startswith("input-"), task
        assert task.status.state == TaskState.TASK_STATE_COMPLETED, task.status
        number = int(task.metadata["input"])
        tick = task.metadata["tickId"]
        assert task.metadata["agent"] == "lead"  # the first agent reads by default
        assert f"lead read input #{number} in tick {tick}" in task.status.message.parts[0].text
        assert all(a.metadata["tickId"] == tick for a in task.artifacts)

        logged = _inputs(url, stacks, "helper", tokens["sender"])
        entry = next(i for i in logged if i["number"] == number)
        assert entry["sender"] == f"system:serviceaccount:{stacks.namespace}:a2a-sender"
        assert entry["content"] == "Add a section on rollbacks."
        assert (entry["state"], entry["readBy"], entry["tickId"]) == ("Read", "lead", tick)

        # A retried message (the same id) is the same task, not a second input.
        (again,) = await _sent(a2a, _message("release-1", "Add a section on rollbacks."))
        assert again.task.id == task.id
        assert len(_inputs(url, stacks, "helper", tokens["sender"])) == len(logged)

        got = await a2a.get_task(GetTaskRequest(id=task.id))
        assert got.status.state == TaskState.TASK_STATE_COMPLETED
        assert [a.name for a in got.artifacts] == [a.name for a in task.artifacts]


@pytest.mark.asyncio
async def test_a_streamed_message_to_a_named_agent_goes_from_submitted_to_completed(
    setting: tuple[str, Stacks, dict[str, str]],
) -> None:
    url, stacks, tokens = setting
    endpoint = _endpoint(url, stacks, "helper")
    async with _http(tokens["sender"]) as http:
        a2a = _client(http, await _card(http, endpoint), streaming=True)
        events = await _sent(
            a2a, _message("release-2", "Mention the new refund API.", agent="maker")
        )
    first = events[0]
    assert first.HasField("task"), first
    ident = first.task.id
    states = [first.task.status.state] + [
        e.status_update.status.state for e in events if e.HasField("status_update")
    ]
    # Put in, read by the woken tick, which then ended: each state once, in order (a
    # tick that reads and ends between two looks is reported working all the same).
    assert states[-2:] == [TaskState.TASK_STATE_WORKING, TaskState.TASK_STATE_COMPLETED]
    assert states in (states[-2:], [TaskState.TASK_STATE_SUBMITTED, *states[-2:]])
    assert all(e.status_update.task_id == ident for e in events if e.HasField("status_update"))
    number = int(first.task.metadata["input"])
    entry = next(
        i for i in _inputs(url, stacks, "helper", tokens["sender"]) if i["number"] == number
    )
    assert (entry["agent"], entry["readBy"]) == ("maker", "maker")


@pytest.mark.asyncio
async def test_a_message_no_tick_has_read_is_a_submitted_task(
    setting: tuple[str, Stacks, dict[str, str]],
) -> None:
    """A stack whose inputs do not wake it reads them in its next scheduled tick (an
    hour away here): until then the task is submitted, asked as often as one likes."""
    url, stacks, tokens = setting
    stacks.create("quiet", tickIntervalSeconds=HOUR, inputs={"wake": False})
    stacks.wait_ticks("quiet", 1)
    async with _http(tokens["sender"]) as http:
        card = await _card(http, _endpoint(url, stacks, "quiet"))
        config = ClientConfig(streaming=False, polling=True, httpx_client=http)
        a2a = ClientFactory(config).create(card)  # polling: answer at once, not at the end
        (answer,) = await _sent(a2a, _message("queued-1", "Read me next hour."))
        assert answer.task.status.state == TaskState.TASK_STATE_SUBMITTED
        assert "waits in the inbox" in answer.task.status.message.parts[0].text
        got = await a2a.get_task(GetTaskRequest(id=answer.task.id))
        assert got.status.state == TaskState.TASK_STATE_SUBMITTED
        with pytest.raises(TaskNotFoundError):
            await a2a.get_task(GetTaskRequest(id="input-2"))
    (entry,) = _inputs(url, stacks, "quiet", tokens["sender"])
    assert (entry["number"], entry["state"]) == (1, "Queued")


@pytest.mark.asyncio
async def test_callers_without_the_right_and_unknown_stacks_are_refused(
    setting: tuple[str, Stacks, dict[str, str]], control_plane: ControlPlane
) -> None:
    url, stacks, tokens = setting
    endpoint = _endpoint(url, stacks, "helper")
    before = _inputs(url, stacks, "helper", tokens["sender"])
    async with _http(tokens["reader"]) as http:
        a2a = _client(http, await _card(http, endpoint), streaming=False)
        with pytest.raises(A2AClientError, match="403"):
            await _sent(a2a, _message("sneaky-1", "Delete the notes."))
    assert _inputs(url, stacks, "helper", tokens["sender"]) == before  # nothing written

    async with httpx.AsyncClient(timeout=10) as anonymous:
        with pytest.raises(AgentCardResolutionError, match="401"):
            await _card(anonymous, endpoint)

    async with _http(control_plane.admin_token) as http:
        with pytest.raises(AgentCardResolutionError, match="404"):
            await _card(http, _endpoint(url, stacks, "missing"))
        missing = await http.post(
            _endpoint(url, stacks, "missing"),
            json={"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {}},
        )
        assert missing.status_code == 404, missing.text
        assert missing.json()["error"]["code"] == "NotFound"


@pytest.mark.asyncio
async def test_bad_messages_are_json_rpc_errors_that_write_nothing(
    setting: tuple[str, Stacks, dict[str, str]],
) -> None:
    """Sent the way curl would (A2A 1.0 and 0.3 method names alike)."""
    url, stacks, tokens = setting
    endpoint = _endpoint(url, stacks, "helper")
    before = _inputs(url, stacks, "helper", tokens["sender"])

    async def call(method: str, message: dict[str, Any], version: str, **params: Any) -> Any:
        async with _http(tokens["sender"]) as http:
            answer = await http.post(
                endpoint,
                headers={VERSION_HEADER: version},
                json={
                    "jsonrpc": "2.0",
                    "id": 7,
                    "method": method,
                    "params": {"message": message, **params},
                },
            )
        assert answer.status_code == 200, answer.text
        return answer.json()

    user = {"role": "ROLE_USER", "messageId": "bad-1"}
    image = {**user, "parts": [{"url": "https://example.com/a.png"}]}
    assert "text parts only" in (await call("SendMessage", image, "1.0"))["error"]["message"]
    nobody = {**user, "parts": [{"text": "hi"}], "metadata": {"agent": "nobody"}}
    refused = (await call("SendMessage", nobody, "1.0"))["error"]
    assert refused["code"] == -32602
    assert "lead, maker, checker" in refused["message"]
    legacy = {"role": "user", "messageId": "bad-2", "kind": "message", "parts": []}
    assert (await call("message/send", legacy, "0.3"))["error"]["code"] == -32602  # no text
    async with _http(tokens["sender"]) as http:
        garbage = await http.post(endpoint, content=b"{not json")
    assert garbage.status_code == 400, garbage.text  # not a JSON-RPC call at all
    assert garbage.json()["error"]["code"] == "InvalidParameter"
    assert _inputs(url, stacks, "helper", tokens["sender"]) == before

    # The README's curl: a good message, answered at once.
    good = {**user, "messageId": "curl-1", "parts": [{"text": "Add a section on rollbacks."}]}
    sent = await call("SendMessage", good, "1.0", configuration={"returnImmediately": True})
    assert sent["result"]["task"]["id"].startswith("input-"), sent
    legacy = {"role": "user", "messageId": "curl-2", "kind": "message"}
    legacy["parts"] = [{"kind": "text", "text": "And one on canaries."}]
    task = (await call("message/send", legacy, "0.3"))["result"]
    assert (task["kind"], task["status"]["state"]) == ("task", "completed")


def test_a_stack_asks_another_stack_through_its_a2a_peer_tool(
    setting: tuple[str, Stacks, dict[str, str]], k8s_api: client.ApiClient
) -> None:
    """Our client against our server: the asker's builder (scripted: it consults the
    first tool it is offered) sends ``helper`` a message with a token from a Secret; the
    message wakes helper, and the builder reads the task its tick completed."""
    url, stacks, _tokens = setting
    token = account(k8s_api, stacks.namespace, "peer-caller", "agentstacks/inputs")
    client.CoreV1Api(k8s_api).create_namespaced_secret(
        stacks.namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="peer-token"),
            string_data={"header": f"Bearer {token}"},
        ),
    )
    header = {"name": "Authorization", "secretKeyRef": {"name": "peer-token", "key": "header"}}
    peer = {
        "name": "helper",
        "protocol": "A2A",
        "url": _endpoint(url, stacks, "helper"),
        "allowedTools": ["lead"],
        "agents": ["builder"],
        "timeoutSeconds": 60,
        "headers": [header],
    }
    before = {i["number"] for i in _inputs(url, stacks, "helper", token)}
    stacks.create("asker", tickIntervalSeconds=HOUR, tools={"servers": [peer]})

    def asked() -> list[dict[str, Any]] | None:
        new = [i for i in _inputs(url, stacks, "helper", token) if i["number"] not in before]
        return new or None

    [message] = eventually(asked, "the asker's message to helper", timeout=90)
    assert message["sender"] == f"system:serviceaccount:{stacks.namespace}:peer-caller"
    assert message["agent"] == "lead"  # the skill it asked for
    keys = StackKeys(StackRef(stacks.namespace, "asker"))

    def builder_use() -> dict[str, Any] | None:
        for _id, fields in stacks.redis.xrange(keys.trace):
            uses = json.loads(fields.get("tools") or "[]")
            if fields.get("agent") == "builder" and uses:
                return dict(uses[0])
        return None

    use = eventually(builder_use, "the builder's call in the asker's trace", timeout=90)
    assert (use["tool"], use["outcome"]) == ("helper/lead", "ok")
    quoted = eventually(
        lambda: next(
            (
                a
                for a in stacks.redis.hvals(keys.artifacts)
                if "From helper/lead (ok): task input-" in a
            ),
            None,
        ),
        "the builder's artifact quoting the answer",
    )
    assert ": completed" in quoted
