"""Tools through MCP against a real MCP server (the ``mcp`` SDK's, in its own process).

The server's log says what reached it, so each test proves what was sent — and what
was refused before sending: tools off the allow-list, arguments that break the tool's
schema. A hanging tool, a failing one, a megabyte answer and a server that is down
each come back to the agent as a result, never as a wedged step.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentstack_core.approvals import Approval
from agentstack_core.approvals import ApprovalState as State
from agentstack_core.keys import StackKeys
from agentstack_core.protocol import RedisClient
from agentstack_core.redis.approvals import claim_approval as claim
from agentstack_core.redis.approvals import decide_approval as decide
from agentstack_core.redis.approvals import read_approvals as approvals
from agentstack_core.redis.publishing import delete_stack
from agentstack_core.spec import SecretKeyRef, parse_spec
from agentstack_devkit.mcpserver import HUGE_CHARS, ToolServer
from agentstack_devkit.processes import free_port
from agentstack_runner.tools import MAX_RESULT_CHARS, ListingCache, Toolbox
from tests.integration.support import STACK, make_engine, publish, request

KEYS = StackKeys(STACK)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ToolServer]:
    with ToolServer(tmp_path_factory.mktemp("mcp")) as running:
        yield running


class Secrets:
    """The runner's Secret reader, for one Secret of the stack's namespace."""

    def __init__(self, values: dict[tuple[str, str], str]) -> None:
        self.values = values
        self.reads: list[tuple[str, str, str]] = []
        self.forgotten: list[tuple[str, str]] = []

    async def secret_value(self, namespace: str, ref: SecretKeyRef) -> str:
        self.reads.append((namespace, ref.name, ref.key))
        return self.values[(ref.name, ref.key)]

    def forget(self, namespace: str, name: str) -> None:
        self.forgotten.append((namespace, name))


def _spec(url: str, **server: Any) -> dict[str, Any]:
    return {
        "goal": "Write a short guide to Redis streams",
        "tools": {"servers": [{"name": "kb", "url": url, "allowedTools": ["lookup"], **server}]},
    }


def _toolbox(raw: dict[str, Any], agent: str = "builder", secrets: Any = None) -> Toolbox:
    spec = parse_spec(raw)
    (member,) = [a for a in spec.agents if a.name == agent]
    return Toolbox("team", spec, member, secrets or Secrets({}), ListingCache())


@pytest.mark.asyncio
async def test_only_allow_listed_tools_are_offered_or_called(server: ToolServer) -> None:
    toolbox = _toolbox(_spec(server.url, allowedTools=["lookup", "add"]))
    offer = await toolbox.offer()
    assert [tool.ref for tool in offer.tools] == ["kb/lookup", "kb/add"]
    assert offer.problems == []
    (lookup,) = [tool for tool in offer.tools if tool.name == "lookup"]
    assert lookup.input_schema["required"] == ["query"]  # as the server lists it
    before = len(server.calls())
    refused = await toolbox.call("kb/secret", {})
    assert refused.use.outcome == "refused"
    assert server.calls("secret") == []
    assert len(server.calls()) == before


@pytest.mark.asyncio
async def test_arguments_are_checked_against_the_schema_before_the_call(server: ToolServer) -> None:
    toolbox = _toolbox(_spec(server.url, allowedTools=["add"]))
    await toolbox.offer()
    invalid = await toolbox.call("kb/add", {"a": "two", "b": 3})
    assert invalid.use.outcome == "invalid"
    assert "a: 'two' is not of type 'integer'" in invalid.text
    missing = await toolbox.call("kb/add", {"a": 2})
    assert missing.use.outcome == "invalid"
    assert server.calls("add") == []  # neither was sent
    added = await toolbox.call("kb/add", {"a": 2, "b": 3})
    assert (added.use.outcome, added.text) == ("ok", "5")
    assert [call["arguments"] for call in server.calls("add")] == [{"a": 2, "b": 3}]


@pytest.mark.asyncio
async def test_failing_hanging_and_huge_tools_come_back_as_results(server: ToolServer) -> None:
    raw = _spec(server.url, allowedTools=["fail", "huge"])
    # The same server under a second name with a short timeout, for the tool that hangs
    # (the others keep the default, so a loaded machine does not time them out).
    raw["tools"]["servers"].append(
        {"name": "slow", "url": server.url, "allowedTools": ["hang"], "timeoutSeconds": 2}
    )
    toolbox = _toolbox(raw)
    await toolbox.offer()
    failed = await toolbox.call("kb/fail", {})
    assert failed.use.outcome == "error"
    assert "fail" in failed.text
    hung = await toolbox.call("slow/hang", {})
    assert hung.use.outcome == "timeout"
    assert "within 2s" in hung.text
    huge = await toolbox.call("kb/huge", {})
    assert huge.use.outcome == "ok"
    assert huge.text.startswith("x" * 100)
    assert f"cut: {HUGE_CHARS} characters in all" in huge.text
    assert len(huge.text) < MAX_RESULT_CHARS + 100
    assert huge.use.chars == len(huge.text)
    # The server is still there for the next caller: a hang held nothing of ours.
    assert (await toolbox.call("kb/fail", {})).use.outcome == "error"


@pytest.mark.asyncio
async def test_headers_come_from_the_stacks_secret_and_reach_the_server(
    server: ToolServer,
) -> None:
    secrets = Secrets({("kb-token", "token"): "Bearer kb-s3cret"})
    headers = [{"name": "Authorization", "secretKeyRef": {"name": "kb-token", "key": "token"}}]
    toolbox = _toolbox(_spec(server.url, headers=headers), secrets=secrets)
    await toolbox.offer()
    await toolbox.call("kb/lookup", {"query": "streams"})
    assert ("team", "kb-token", "token") in secrets.reads
    assert any(h.get("authorization") == "Bearer kb-s3cret" for h in server.request_headers())


class CachedSecrets(Secrets):
    """Secrets as the runner reads them: cached until forgotten (a refused header)."""

    def __init__(self, values: dict[tuple[str, str], str]) -> None:
        super().__init__(values)
        self.cache: dict[tuple[str, str], str] = {}

    async def secret_value(self, namespace: str, ref: SecretKeyRef) -> str:
        key = (ref.name, ref.key)
        if key not in self.cache:
            self.cache[key] = await super().secret_value(namespace, ref)
        return self.cache[key]

    def forget(self, namespace: str, name: str) -> None:
        super().forget(namespace, name)
        self.cache = {key: value for key, value in self.cache.items() if key[0] != name}


@pytest.mark.asyncio
async def test_a_rotated_header_token_costs_one_refused_attempt_not_the_call(
    server: ToolServer,
) -> None:
    """The server takes only a new token and the Secret holds it, while the runner's
    cache still has the old one: the refused attempt (401) makes it read the Secret
    again and call once more, and the call is made once."""
    secrets = CachedSecrets({("kb-token", "token"): "Bearer before"})
    headers = [{"name": "Authorization", "secretKeyRef": {"name": "kb-token", "key": "token"}}]
    toolbox = _toolbox(_spec(server.url, headers=headers), secrets=secrets)
    await toolbox.offer()
    secrets.values[("kb-token", "token")] = "Bearer after"
    server.require_authorization("Bearer after")
    try:
        before, seen = len(server.calls("lookup")), len(server.entries())
        result = await toolbox.call("kb/lookup", {"query": "rotation"})
    finally:
        server.require_authorization(None)
    assert result.use.outcome == "ok", result.text
    assert secrets.forgotten == [("team", "kb-token")]
    assert [c["arguments"] for c in server.calls("lookup")[before:]] == [{"query": "rotation"}]
    sent = [e["headers"]["authorization"] for e in server.entries()[seen:] if "request" in e]
    # One session with the old token (refused: its requests never reached the tool),
    # then only the new one.
    switched = sent.index("Bearer after")
    assert switched > 0
    assert set(sent[:switched]) == {"Bearer before"}
    assert set(sent[switched:]) == {"Bearer after"}


@pytest.mark.asyncio
async def test_the_builder_calls_a_tool_and_quotes_its_result(
    aredis: RedisClient, server: ToolServer
) -> None:
    await publish(aredis, _spec(server.url))
    before = len(server.calls("lookup"))
    result = (await make_engine(aredis).execute(request(1))).result
    assert result is not None
    assert result.outcome.value == "Succeeded"
    assert result.tool_problems == ""
    calls = server.calls("lookup")[before:]
    assert [call["arguments"] for call in calls] == [
        {"query": "Outline the approach to: Write a short guide to Redis streams"}
    ]
    artifact = json.loads(await aredis.hget(KEYS.artifacts, "t1.md"))
    assert "From kb/lookup (ok): Facts about Outline the approach" in artifact["content"]
    traces = {f["agent"]: f for _id, f in await aredis.xrange(KEYS.trace)}
    (use,) = json.loads(traces["builder"]["tools"])
    assert (use["tool"], use["outcome"]) == ("kb/lookup", "ok")
    assert json.loads(traces["planner"]["tools"]) == []  # the planner had tools, used none


@pytest.mark.asyncio
async def test_a_server_that_is_down_degrades_the_tick_but_never_wedges_it(
    aredis: RedisClient, tmp_path: Path
) -> None:
    down = f"http://127.0.0.1:{free_port()}/mcp"
    await publish(aredis, _spec(down, timeoutSeconds=2))
    result = (await make_engine(aredis).execute(request(1))).result
    assert result is not None
    assert result.outcome.value == "Succeeded"  # the team worked on without the tool
    assert result.tool_problems.startswith("kb: ")
    assert "password" not in result.tool_problems
    artifact = json.loads(await aredis.hget(KEYS.artifacts, "t1.md"))
    assert "From kb/" not in artifact["content"]


@pytest.mark.asyncio
async def test_a_server_serves_only_the_agents_it_names(
    aredis: RedisClient, server: ToolServer
) -> None:
    await publish(aredis, _spec(server.url, agents=["reviewer"]))
    before = len(server.calls())
    result = (await make_engine(aredis).execute(request(1))).result
    assert result is not None
    assert result.outcome.value == "Succeeded"
    assert server.calls()[before:] == []  # the builder was offered nothing to call
    artifact = json.loads(await aredis.hget(KEYS.artifacts, "t1.md"))
    assert "From kb/" not in artifact["content"]


# -- calls that wait for a person ------------------------------------------------------------


async def _approvals(aredis: RedisClient) -> list[Approval]:
    return await approvals(aredis, STACK)


@pytest.mark.asyncio
async def test_a_call_needing_approval_waits_then_runs_once_when_approved(
    aredis: RedisClient, server: ToolServer
) -> None:
    await publish(aredis, _spec(server.url, requireApproval=True))
    before = len(server.calls("lookup"))
    first = (await make_engine(aredis).execute(request(1))).result
    assert first is not None
    assert first.approvals == 1
    (waiting,) = await _approvals(aredis)
    assert (waiting.agent, waiting.tool, waiting.state) == (
        "builder",
        "kb/lookup",
        State.PENDING,
    )
    assert json.loads(waiting.arguments)["query"].startswith("Outline the approach")
    assert len(server.calls("lookup")) == before  # asked, not called
    artifact = json.loads(await aredis.hget(KEYS.artifacts, "t1.md"))
    assert "(awaiting-approval)" in artifact["content"]

    assert await decide(aredis, STACK, waiting.id, approved=True, by="alice") == (
        State.APPROVED,
        True,
    )
    assert await decide(aredis, STACK, waiting.id, approved=False, by="bob") == (
        State.APPROVED,
        False,
    )
    assert await decide(aredis, STACK, waiting.id, approved=True, by="al") == (
        State.APPROVED,
        False,
    )

    await make_engine(aredis).execute(request(2))
    done = next(a for a in await _approvals(aredis) if a.id == waiting.id)
    assert (done.state, done.reported, done.run_tick) == (
        State.EXECUTED,
        True,
        "team/demo/2",
    )
    assert done.result.startswith("Facts about Outline the approach")
    calls = [
        c
        for c in server.calls("lookup")[before:]
        if c["arguments"] == json.loads(waiting.arguments)
    ]
    assert len(calls) == 1
    artifact = json.loads(await aredis.hget(KEYS.artifacts, "t1.md"))
    assert f"Approval {waiting.id} for kb/lookup: Executed: Facts about" in artifact["content"]
    for slot in (3, 4):  # later steps neither call it again nor tell it again
        await make_engine(aredis).execute(request(slot))
    calls = [
        c
        for c in server.calls("lookup")[before:]
        if c["arguments"] == json.loads(waiting.arguments)
    ]
    assert len(calls) == 1


@pytest.mark.asyncio
async def test_a_denied_or_expired_call_never_runs(aredis: RedisClient, server: ToolServer) -> None:
    await publish(aredis, _spec(server.url, requireApproval=True))
    before = len(server.calls())
    await make_engine(aredis).execute(request(1))
    (waiting,) = await _approvals(aredis)
    denial = await decide(aredis, STACK, waiting.id, approved=False, by="bob", reason="no")
    assert denial == (State.DENIED, True)
    await make_engine(aredis).execute(request(2))
    denied = next(a for a in await _approvals(aredis) if a.id == waiting.id)
    assert (denied.state, denied.reported, denied.decided_by) == (State.DENIED, True, "bob")
    # A request nobody decides expires, and a late decision cannot revive it.
    later = [a for a in await _approvals(aredis) if a.state == State.PENDING]
    for record in later:
        late = await decide(
            aredis, STACK, record.id, approved=True, by="x", now=record.expires_at + 1
        )
        assert late == (State.EXPIRED, True)
    await make_engine(aredis).execute(request(3))
    assert [c for c in server.calls()[before:] if c["tool"] == "lookup"] == []


@pytest.mark.asyncio
async def test_an_approved_call_interrupted_mid_step_is_never_made_again(
    aredis: RedisClient, server: ToolServer
) -> None:
    await publish(aredis, _spec(server.url, requireApproval=True))
    await make_engine(aredis).execute(request(1))
    (waiting,) = await _approvals(aredis)
    await decide(aredis, STACK, waiting.id, approved=True, by="alice")
    # A runner took tick 2's lease and claimed the call, then died (its lease expired).
    token = "team/demo/2|dead-runner|0"
    await aredis.set(KEYS.lease, token)
    assert await claim(aredis, STACK, waiting.id, token=token, tick="team/demo/2") == "Claimed"
    await aredis.delete(KEYS.lease)
    before = len(server.calls("lookup"))
    await make_engine(aredis).execute(request(2))  # the tick, resumed by another runner
    record = next(a for a in await _approvals(aredis) if a.id == waiting.id)
    assert (record.state, record.reported) == (State.INTERRUPTED, True)
    calls = [
        c
        for c in server.calls("lookup")[before:]
        if c["arguments"] == json.loads(waiting.arguments)
    ]
    assert calls == []


@pytest.mark.asyncio
async def test_no_tool_round_starts_once_the_token_budget_is_spent(
    aredis: RedisClient, server: ToolServer
) -> None:
    # The planner's step costs the same every time (the scripted team is deterministic):
    # measure it, then give the stack a budget that leaves the builder one token.
    await publish(aredis, _spec(server.url))
    await make_engine(aredis).execute(request(1))
    traces = {f["agent"]: f for _id, f in await aredis.xrange(KEYS.trace)}
    planner = int(traces["planner"]["prompt_tokens"]) + int(traces["planner"]["completion_tokens"])
    await delete_stack(aredis, STACK)
    await publish(aredis, {**_spec(server.url), "budget": {"maxTokens": planner + 1}})
    before = len(server.calls("lookup"))
    await make_engine(aredis).execute(request(1))
    builder = next(f for _id, f in await aredis.xrange(KEYS.trace) if f["agent"] == "builder")
    assert "lookup results not read: the token budget is spent" in json.loads(builder["refused"])
    assert len(json.loads(builder["attempts"])) == 1  # the call that asked; no second one
    assert len(server.calls("lookup")) == before + 1


@pytest.mark.asyncio
async def test_an_approved_call_waits_while_its_server_is_unreachable(
    aredis: RedisClient, server: ToolServer
) -> None:
    await publish(aredis, _spec(server.url, requireApproval=True))
    await make_engine(aredis).execute(request(1))
    (waiting,) = await _approvals(aredis)
    await decide(aredis, STACK, waiting.id, approved=True, by="alice")
    down = f"http://127.0.0.1:{free_port()}/mcp"
    await publish(aredis, _spec(down, requireApproval=True, timeoutSeconds=2), generation=2)
    await make_engine(aredis).execute(request(2, generation=2))
    still = next(a for a in await _approvals(aredis) if a.id == waiting.id)
    assert (still.state, still.reported) == (State.APPROVED, False)  # not claimed, not lost
    await publish(aredis, _spec(server.url, requireApproval=True), generation=3)
    await make_engine(aredis).execute(request(3, generation=3))
    done = next(a for a in await _approvals(aredis) if a.id == waiting.id)
    assert done.state == State.EXECUTED


@pytest.mark.asyncio
async def test_pause_agent_makes_the_asking_agent_sit_out_until_the_decision(
    aredis: RedisClient, server: ToolServer
) -> None:
    raw = _spec(server.url, requireApproval=True)
    raw["tools"]["whilePending"] = "PauseAgent"
    await publish(aredis, raw)
    await make_engine(aredis).execute(request(1))
    (waiting,) = await _approvals(aredis)

    await make_engine(aredis).execute(request(2))
    steps = [f for _id, f in await aredis.xrange(KEYS.trace) if f["tick_id"] == "team/demo/2"]
    builder = next(f for f in steps if f["agent"] == "builder")
    assert (builder["outcome"], builder["reason"]) == ("Succeeded", "AwaitingApproval")
    assert json.loads(builder["attempts"]) == []  # no model was asked
    assert next(f for f in steps if f["agent"] == "reviewer")["reason"] == "Succeeded"

    await decide(aredis, STACK, waiting.id, approved=True, by="alice")
    await make_engine(aredis).execute(request(3))
    steps = [f for _id, f in await aredis.xrange(KEYS.trace) if f["tick_id"] == "team/demo/3"]
    builder = next(f for f in steps if f["agent"] == "builder")
    assert builder["reason"] == "Succeeded"
    assert next(a for a in await _approvals(aredis) if a.id == waiting.id).state == State.EXECUTED


@pytest.mark.asyncio
async def test_one_tool_of_a_server_can_need_approval_and_the_others_not(
    server: ToolServer,
) -> None:
    toolbox = _toolbox(
        _spec(server.url, allowedTools=["lookup", "add"], requireApprovalFor=["add"])
    )
    await toolbox.offer()
    assert toolbox.needs_approvals
    looked = await toolbox.call("kb/lookup", {"query": "streams"}, tick="team/demo/1")
    assert looked.use.outcome == "ok"
    before = len(server.calls("add"))
    asked = await toolbox.call("kb/add", {"a": 1, "b": 2}, tick="team/demo/1")
    assert asked.use.outcome == "awaiting-approval"
    assert [a.tool for a in toolbox.requested] == ["kb/add"]
    assert len(server.calls("add")) == before
