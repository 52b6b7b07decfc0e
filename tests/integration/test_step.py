"""One agent step, method by method, on the real parts: the openai SDK against the fake
LLM server, Redis (standalone and cluster), and the dev kit's MCP server.

Each test drives one method of :class:`~agentstack_runner.step.AgentStep` — ask,
answer (and its repair), lookup round (tools and recalls), settle approvals, embed,
commit — and checks what it did from what reached the LLM server, the tool server and
Redis.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio

from agentstack_core.approvals import Approval, ApprovalState
from agentstack_core.context import AgentContext
from agentstack_core.keys import StackKeys
from agentstack_core.pricing import PriceTable
from agentstack_core.protocol import RedisClient
from agentstack_core.reasons import StepReason
from agentstack_core.records import ArchiveRecord, StepRecord, TraceRecord
from agentstack_core.redis.approvals import read_approvals
from agentstack_core.redis.inputs import send_input
from agentstack_core.redis.tick import TickStore, lease_token
from agentstack_core.spec import parse_spec
from agentstack_devkit.fakellm import Fail, FakeLLMServer, Reply
from agentstack_devkit.mcpserver import ToolServer
from agentstack_runner.actions import CallTool, Recall
from agentstack_runner.embeddings import cosine, decode_vector, embedder_for
from agentstack_runner.llm.base import ChatRequest
from agentstack_runner.llm.router import Router
from agentstack_runner.providers import ProviderRegistry
from agentstack_runner.recall import MAX_RECALLS_PER_ROUND
from agentstack_runner.step import AgentStep, BudgetSpentError, StepInput
from agentstack_runner.tools import MAX_CALLS_PER_ROUND, MAX_TOOL_ROUNDS, ListingCache, Toolbox
from tests.integration.support import FAST_RETRIES, STACK, openai_spec, publish

pytestmark = pytest.mark.asyncio
KEYS = StackKeys(STACK)
TICK = "team/demo/3"
WRITE = json.dumps(
    {
        "thought": "draft it",
        "actions": [{"type": "write_artifact", "name": "a.md", "content": "# A"}],
    }
)


@pytest.fixture(scope="module")
def tools(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ToolServer]:
    with ToolServer(tmp_path_factory.mktemp("mcp")) as running:
        yield running


@pytest_asyncio.fixture
async def registry() -> AsyncIterator[ProviderRegistry]:
    registry = ProviderRegistry()
    yield registry
    await registry.close()


class Steps:
    """Makes steps of the builder of a published stack, under the stack's lease."""

    def __init__(self, aredis: RedisClient, registry: ProviderRegistry, raw: dict[str, Any]):
        self.aredis, self.registry, self.raw = aredis, registry, raw
        self.spec = parse_spec(raw)
        self.store = TickStore(aredis, STACK)
        self.token = lease_token(TICK, "runner-a", "t1")

    async def begin(self) -> None:
        await publish(self.aredis, self.raw)
        start = await self.store.begin(TICK, self.token, ttl_seconds=60)
        assert start.holder is None

    def make(self, *, toolbox: Toolbox | None = None, **values: Any) -> AgentStep:
        (builder,) = [a for a in self.spec.agents if a.name == "builder"]
        providers = self.registry.for_stack(STACK.namespace, self.spec)
        step = StepInput(
            store=self.store,
            spec=self.spec,
            agent=builder,
            tick_id=TICK,
            token=self.token,
            deadline=values.pop("deadline", time.monotonic() + 60),
            max_output_tokens=values.pop("max_output_tokens", 512),
            toolbox=toolbox,
            embedder=embedder_for(providers, self.spec),
            **values,
        )
        return AgentStep(step, Router(policy=FAST_RETRIES), providers)

    def toolbox(self) -> Toolbox:
        (builder,) = [a for a in self.spec.agents if a.name == "builder"]
        return Toolbox(STACK.namespace, self.spec, builder, _NoSecrets(), ListingCache())


class _NoSecrets:
    async def secret_value(self, namespace: str, ref: Any) -> str:
        raise AssertionError("no header Secret is declared")

    def forget(self, namespace: str, name: str) -> None:
        pass  # nothing cached


def _with_tools(raw: dict[str, Any], url: str, **server: Any) -> dict[str, Any]:
    servers = [{"name": "kb", "url": url, "allowedTools": ["lookup"], **server}]
    return {**raw, "tools": {"servers": servers}}


async def test_ask_makes_one_call_and_charges_what_it_used(
    aredis: RedisClient, fake_llm: FakeLLMServer, registry: ProviderRegistry
) -> None:
    fake_llm.add_rule(Reply(WRITE, prompt_tokens=120, completion_tokens=30))
    step = Steps(aredis, registry, openai_spec(fake_llm)).make()
    step.request = ChatRequest(model="", messages=[{"role": "user", "content": "hi"}])
    assert await step.ask() == WRITE
    assert (step.bill.prompt_tokens, step.bill.completion_tokens) == (120, 30)
    assert step.bill.cost > 0  # gpt-4o-mini has a price
    assert step.model == "openai:gpt-4o-mini"
    assert [a.outcome for a in step.attempts] == [StepReason.SUCCEEDED]
    assert len(fake_llm.requests) == 1


async def test_ask_refuses_a_call_the_dollar_budget_cannot_afford(
    aredis: RedisClient, fake_llm: FakeLLMServer, registry: ProviderRegistry
) -> None:
    step = Steps(aredis, registry, openai_spec(fake_llm)).make(
        cost_left=1, prices=PriceTable.builtin()
    )
    step.request = ChatRequest(model="", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(BudgetSpentError) as refused:
        await step.ask()
    assert refused.value.needed > 1
    assert fake_llm.requests == []  # nothing was sent


async def test_answer_repairs_once_by_showing_the_model_its_error(
    aredis: RedisClient, fake_llm: FakeLLMServer, registry: ProviderRegistry
) -> None:
    fake_llm.add_rule(Reply("not json"), Reply(WRITE))
    step = Steps(aredis, registry, openai_spec(fake_llm)).make()
    step.request = ChatRequest(model="", messages=[{"role": "user", "content": "go"}])
    reply = await step.answer()
    assert reply is not None
    assert [a.type for a in reply.actions] == ["write_artifact"]
    first, repair = fake_llm.requests
    assert repair.body["messages"][-2] == {"role": "assistant", "content": "not json"}
    assert (
        "That reply was rejected: reply is not valid JSON" in repair.body["messages"][-1]["content"]
    )
    assert len(first.body["messages"]) == 1


async def test_answer_gives_up_after_an_invalid_repair(
    aredis: RedisClient, fake_llm: FakeLLMServer, registry: ProviderRegistry
) -> None:
    fake_llm.add_rule(Reply("not json"), Reply('{"actions": [{"type": "dance"}]}'))
    step = Steps(aredis, registry, openai_spec(fake_llm)).make()
    step.request = ChatRequest(model="", messages=[{"role": "user", "content": "go"}])
    assert await step.answer() is None
    assert step.reason is StepReason.INVALID_OUTPUT
    assert "invalid reply" in step.error
    assert len(fake_llm.requests) == 2  # one repair, no more


async def test_a_tool_round_calls_the_tools_and_shows_the_results(
    aredis: RedisClient, fake_llm: FakeLLMServer, registry: ProviderRegistry, tools: ToolServer
) -> None:
    steps = Steps(aredis, registry, _with_tools(openai_spec(fake_llm), tools.url))
    toolbox = steps.toolbox()
    await toolbox.offer()
    step = steps.make(toolbox=toolbox)
    step.request = ChatRequest(model="", messages=[{"role": "user", "content": "go"}])
    step.said = "calling"
    before = len(tools.calls("lookup"))
    calls = [
        CallTool(type="call_tool", tool="kb/lookup", arguments={"query": f"q{n}"})
        for n in range(MAX_CALLS_PER_ROUND + 1)
    ]
    assert await step.lookup_round(calls) is True
    assert len(tools.calls("lookup")) - before == MAX_CALLS_PER_ROUND  # the extra is refused
    assert step.refused == ["call_tool kb/lookup: too many calls in one round"]
    assert [use.outcome for use in step.uses] == ["ok"] * MAX_CALLS_PER_ROUND
    said, results = step.request.messages[-2:]
    assert said == {"role": "assistant", "content": "calling"}
    assert "Results of your tool calls" in results["content"]
    assert step.rounds == 1


async def test_no_tool_round_for_an_agent_without_tools(
    aredis: RedisClient, fake_llm: FakeLLMServer, registry: ProviderRegistry
) -> None:
    step = Steps(aredis, registry, openai_spec(fake_llm)).make()
    call = CallTool(type="call_tool", tool="kb/lookup", arguments={})
    assert await step.lookup_round([call]) is False
    assert step.refused == ["call_tool kb/lookup: no tools are offered to this agent"]
    assert step.rounds == 0


async def test_settling_runs_an_approved_call_once_and_reports_it(
    aredis: RedisClient, fake_llm: FakeLLMServer, registry: ProviderRegistry, tools: ToolServer
) -> None:
    steps = Steps(
        aredis, registry, _with_tools(openai_spec(fake_llm), tools.url, requireApproval=True)
    )
    await steps.begin()
    now = time.time()
    approved = Approval(
        id="a1",
        agent="builder",
        tool="kb/lookup",
        arguments='{"query":"streams"}',
        tick_id="team/demo/2",
        requested_at=now,
        expires_at=now + 600,
        state=ApprovalState.APPROVED,
    )
    await aredis.hset(KEYS.approvals, "a1", approved.to_json())  # type: ignore[misc]
    toolbox = steps.toolbox()
    await toolbox.offer()
    step = steps.make(toolbox=toolbox)
    before = len(tools.calls("lookup"))
    told, settled = await step.settle_approvals()
    assert [call["arguments"] for call in tools.calls("lookup")[before:]] == [{"query": "streams"}]
    assert [use.outcome for use in step.uses] == ["ok"]
    (record,) = settled
    assert (record.state, record.reported, record.run_tick) == (ApprovalState.EXECUTED, True, TICK)
    assert told[0]["state"] == ApprovalState.EXECUTED
    # Claimed in Redis before the call: a second settle finds it Running, never calls.
    (stored,) = await read_approvals(aredis, STACK)
    assert stored.state is ApprovalState.RUNNING


async def test_commit_writes_the_effects_trace_and_record_once(
    aredis: RedisClient, fake_llm: FakeLLMServer, registry: ProviderRegistry
) -> None:
    steps = Steps(aredis, registry, openai_spec(fake_llm))
    await steps.begin()
    fake_llm.add_rule(Reply(WRITE, prompt_tokens=50, completion_tokens=10))
    context = AgentContext(plan=(), artifacts={}, feed=[], memory={}, inbox=[])
    step = steps.make(context=context)
    record, _following = await step.run()
    assert (record.outcome, record.reason, record.tokens) == ("Succeeded", "Succeeded", 60)
    assert record.progressed
    artifact = await steps.store.context("reviewer")
    assert artifact.artifacts["a.md"].content == "# A"
    stored = await aredis.hget(KEYS.steps(TICK), "builder")  # type: ignore[misc]
    assert StepRecord.from_json(stored) == record
    ((_id, traced),) = await aredis.xrange(KEYS.trace)  # type: ignore[misc]
    assert TraceRecord.from_fields(traced).actions == ("wrote a.md v1",)

    # The same step committed again (a resumed tick) applies nothing more.
    fake_llm.add_rule(Reply(WRITE))
    await steps.make(context=context).run()
    assert len(await aredis.xrange(KEYS.trace)) == 1  # type: ignore[misc]
    assert (await steps.store.context("reviewer")).artifacts["a.md"].version == 1


async def test_a_failed_step_commits_its_trace_but_no_effects(
    aredis: RedisClient, fake_llm: FakeLLMServer, registry: ProviderRegistry
) -> None:
    steps = Steps(aredis, registry, openai_spec(fake_llm))
    await steps.begin()
    fake_llm.add_rule(Reply("nope"), Reply("still nope"))
    context = AgentContext(plan=(), artifacts={}, feed=[], memory={}, inbox=[])
    record, _ = await steps.make(context=context).run()
    assert (record.outcome, record.reason) == ("Failed", StepReason.INVALID_OUTPUT)
    assert record.message.startswith("reply is not valid JSON")
    assert await aredis.hlen(KEYS.artifacts) == 0  # type: ignore[misc]
    ((_id, traced),) = await aredis.xrange(KEYS.trace)  # type: ignore[misc]
    trace = TraceRecord.from_fields(traced)
    assert (trace.outcome, trace.reason, trace.error) == ("Failed", "InvalidOutput", record.message)


def _with_embeddings(raw: dict[str, Any], **embeddings: Any) -> dict[str, Any]:
    policy = {"provider": "openai", "model": "text-embedding-3-small", **embeddings}
    return {**raw, "memory": {"embeddings": policy}}


async def _archive(aredis: RedisClient, steps: Steps, *texts: str) -> None:
    """``texts`` in the stack's archive, as inputs people sent."""
    for text in texts:
        await send_input(
            aredis, STACK, agent="planner", sender="alice", content=text, per_minute=100
        )


async def test_a_recall_round_searches_the_archive_and_shows_what_it_found(
    aredis: RedisClient, fake_llm: FakeLLMServer, registry: ProviderRegistry
) -> None:
    steps = Steps(aredis, registry, openai_spec(fake_llm))
    await steps.begin()
    await _archive(aredis, steps, "The launch code is ZEBRA-42", "Lunch is at noon")
    step = steps.make()  # an agent without tools recalls all the same
    step.request = ChatRequest(model="", messages=[{"role": "user", "content": "go"}])
    step.said = "recalling"
    recalls = [
        Recall(type="recall", query=f"launch code {n}") for n in range(MAX_RECALLS_PER_ROUND + 1)
    ]
    assert await step.lookup_round(recalls) is True
    assert step.refused == ["recall 'launch code 3': too many recalls in one round"]
    assert [r.mode for r in step.recollections] == ["lexical"] * MAX_RECALLS_PER_ROUND
    first = step.recollections[0]
    assert [hit.record.text for hit in first.hits] == ["The launch code is ZEBRA-42"]
    said, found = step.request.messages[-2:]
    assert said == {"role": "assistant", "content": "recalling"}
    assert "What your recalls found in the stack's archive" in found["content"]
    assert "ZEBRA-42" in found["content"]
    assert step.rounds == 1


async def test_recalls_and_tool_calls_share_the_steps_rounds(
    aredis: RedisClient, fake_llm: FakeLLMServer, registry: ProviderRegistry
) -> None:
    step = Steps(aredis, registry, openai_spec(fake_llm)).make()
    step.rounds = MAX_TOOL_ROUNDS
    assert await step.lookup_round([Recall(type="recall", query="anything")]) is False
    assert step.refused == ["recall 'anything': no rounds left"]
    assert step.recollections == []


async def test_a_step_recalls_then_acts_and_the_trace_records_the_recall(
    aredis: RedisClient, fake_llm: FakeLLMServer, registry: ProviderRegistry
) -> None:
    steps = Steps(aredis, registry, openai_spec(fake_llm))
    await steps.begin()
    await _archive(aredis, steps, "The launch code is ZEBRA-42")
    recall = {"type": "recall", "query": "launch code", "limit": 2}
    fake_llm.add_rule(Reply(json.dumps({"actions": [recall]})), Reply(WRITE))
    context = AgentContext(plan=(), artifacts={}, feed=[], memory={}, inbox=[])
    record, _ = await steps.make(context=context).run()
    assert (record.outcome, record.progressed) == ("Succeeded", True)
    ((_id, traced),) = await aredis.xrange(KEYS.trace)  # type: ignore[misc]
    trace = TraceRecord.from_fields(traced)
    (recalled,) = trace.recalls
    (fact_id,) = [i for i, f in await aredis.xrange(KEYS.archive) if f["kind"] == "input"]
    assert (recalled.query, recalled.hits, recalled.mode) == ("launch code", (fact_id,), "lexical")
    assert trace.actions == ("wrote a.md v1",)  # a recall changes nothing itself


async def test_embeddings_give_archived_items_vectors_and_recall_ranks_by_meaning(
    aredis: RedisClient, fake_llm: FakeLLMServer, registry: ProviderRegistry
) -> None:
    steps = Steps(aredis, registry, _with_embeddings(openai_spec(fake_llm), dimensions=32))
    await steps.begin()
    context = AgentContext(plan=(), artifacts={}, feed=[], memory={}, inbox=[])
    write = {
        "type": "write_artifact",
        "name": "menu.md",
        "content": "soup salad bread cheese for the offsite lunch",
    }
    fake_llm.add_rule(
        Reply(json.dumps({"actions": [write]}), prompt_tokens=50, completion_tokens=10)
    )
    record, _ = await steps.make(context=context).run()
    (embedded,) = [r for r in fake_llm.requests if r.endpoint == "embeddings"]
    assert embedded.body["input"] == [write["content"]]
    assert embedded.body["dimensions"] == 32
    assert embedded.headers["x-agentstack-agent"] == "builder"
    assert record.tokens == 60 + max(1, len(write["content"]) // 4)  # charged, like chat
    ((_id, fields),) = await aredis.xrange(KEYS.archive)
    vector = decode_vector(ArchiveRecord.from_fields(fields).vector or "")
    assert len(vector) == 32
    assert abs(cosine(vector, vector) - 1) < 1e-5

    # "lunch menu" shares one word with the item; the recall's query is embedded too,
    # and the item's cosine counts beside its lexical rank.
    step = steps.make()
    step.request = ChatRequest(model="", messages=[{"role": "user", "content": "go"}])
    assert await step.lookup_round([Recall(type="recall", query="offsite lunch menu")])
    (found,) = step.recollections
    assert found.mode == "semantic"
    assert [hit.record.text for hit in found.hits] == [write["content"]]
    assert step.bill.tokens > 0  # the query's embedding


async def test_an_embeddings_failure_archives_without_vectors_and_says_so(
    aredis: RedisClient, fake_llm: FakeLLMServer, registry: ProviderRegistry
) -> None:
    steps = Steps(aredis, registry, _with_embeddings(openai_spec(fake_llm)))
    await steps.begin()
    fake_llm.add_rule(Fail(500), endpoint="embeddings", repeat_last=True)
    fake_llm.add_rule(Reply(WRITE))
    context = AgentContext(plan=(), artifacts={}, feed=[], memory={}, inbox=[])
    record, _ = await steps.make(context=context).run()
    assert (record.outcome, record.progressed) == ("Succeeded", True)
    ((_id, fields),) = await aredis.xrange(KEYS.archive)
    assert ArchiveRecord.from_fields(fields).vector is None
    ((_id, traced),) = await aredis.xrange(KEYS.trace)  # type: ignore[misc]
    (refused,) = TraceRecord.from_fields(traced).refused
    assert refused.startswith("embeddings failed: openai: HTTP 500")
    # a recall then ranks lexically, and still finds the item
    step = steps.make()
    step.request = ChatRequest(model="", messages=[{"role": "user", "content": "go"}])
    assert await step.lookup_round([Recall(type="recall", query="A")]) is True
    assert step.recollections[0].mode == "lexical"


async def test_no_embeddings_call_the_budget_could_not_pay(
    aredis: RedisClient, fake_llm: FakeLLMServer, registry: ProviderRegistry
) -> None:
    steps = Steps(aredis, registry, _with_embeddings(openai_spec(fake_llm)))
    step = steps.make(tokens_left=3)
    assert await step.embed(["a text longer than three bytes"]) is None
    assert step.refused == ["embeddings not made: the token budget has too little left"]
    priced = steps.make(cost_left=0)
    assert await priced.embed(["x"]) is None
    assert priced.refused == ["embeddings not made: the dollar budget has too little left"]
    late = steps.make(deadline=time.monotonic())
    assert await late.embed(["x"]) is None
    assert late.refused == ["embeddings not made: the tick's time is up"]
    assert [r for r in fake_llm.requests if r.endpoint == "embeddings"] == []
