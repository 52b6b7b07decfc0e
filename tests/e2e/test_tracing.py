"""A real tick's OpenTelemetry trace, as a real Jaeger received it.

Jaeger v2 is built from the Go module proxy like the control plane
(:mod:`agentstack_devkit.jaeger`); the operator and the runner export to its OTLP/HTTP
receiver because ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set, and the tests read the traces
back through its query API. What they assert is the span tree of real ticks — the
operator's dispatch span, the runner's tick span under it (the context crossed Redis in
the tick message), a span per agent step, per LLM call and per tool call — and that its
GenAI attributes say what Redis recorded of the same tick. The fleet runs with
``AGENTSTACK_TRACE_CONTENT=true``, so the prompts are in the spans; the provider's key,
which travels in a header, must be in none of them.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

import pytest
import redis
from kubernetes import client

from agentstack_core.keys import StackKeys, StackRef
from agentstack_core.spec import DEFAULT_TEAM
from agentstack_devkit.fakellm import Fail, FakeLLMServer, Reply
from agentstack_devkit.fleet import Fleet
from agentstack_devkit.jaeger import JaegerServer, Span, flatten, outline
from agentstack_devkit.mcpserver import ToolServer
from tests.e2e.stacks import Stacks
from tests.helpers import eventually

PROVIDER_KEY = "gsk-tracing-" + secrets.token_hex(8)
TEAM = list(DEFAULT_TEAM)
QUIET = '{"thought": "nothing to add", "actions": []}'


@dataclass(frozen=True)
class Traced:
    jaeger: JaegerServer
    namespace: str
    stacks: Stacks
    reader: redis.Redis

    def ref(self, name: str) -> str:
        return f"{self.namespace}/{name}"

    def wait_tree(self, name: str, outcome: str) -> list[Span]:
        """The spans of a traced tick of ``name`` that ended with ``outcome``, once its
        tick span arrived (it ends last, after every step's and call's span)."""
        tags = json.dumps({"agentstack.stack": self.ref(name)})

        def finished() -> list[Span] | None:
            for trace in self.jaeger.traces("agentstack-operator", tags=tags, limit=50):
                spans = flatten([trace])
                ticks = [s for s in spans if s.operation == "tick"]
                if ticks and ticks[0].attributes.get("agentstack.tick.outcome") == outcome:
                    return spans
            return None

        return eventually(finished, f"a traced {outcome} tick of {name}", timeout=90)


@pytest.fixture(scope="module")
def gateway() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as server:
        server.add_rule(Fail(400, "no such model"), model="broken-model", repeat_last=True)
        server.add_rule(Reply(QUIET, prompt_tokens=321, completion_tokens=45), repeat_last=True)
        yield server


@pytest.fixture(scope="module")
def traced(
    fleet: Fleet,
    k8s_api: client.ApiClient,
    redis_reader: redis.Redis,
    gateway: FakeLLMServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Traced]:
    namespace = f"trace-{secrets.token_hex(4)}"
    core = client.CoreV1Api(k8s_api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    with JaegerServer() as jaeger, ToolServer(tmp_path_factory.mktemp("mcp")) as tools:
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": jaeger.otlp_endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "200",  # export within a fraction of a second
            "AGENTSTACK_TRACE_CONTENT": "true",
            "AGENTSTACK_ALLOWED_BASE_URLS": gateway.groq_base_url,
        }
        fleet.operator(**env)
        fleet.runner(GROQ_API_KEY=PROVIDER_KEY, **env)
        stacks = Stacks(k8s_api, namespace, redis_reader)
        kb = {"name": "kb", "url": tools.url, "allowedTools": ["lookup"]}
        stacks.create("tooled", tickIntervalSeconds=5, tools={"servers": [kb]})
        providers = {"groq": {"baseURL": gateway.groq_base_url}}
        stacks.create(
            "on-groq",
            tickIntervalSeconds=5,
            llm={
                "model": {"provider": "groq", "name": "llama-3.1-8b-instant"},
                "providers": providers,
            },
        )
        stacks.create(
            "refused",
            tickIntervalSeconds=5,
            llm={"model": {"provider": "groq", "name": "broken-model"}, "providers": providers},
        )
        try:
            yield Traced(jaeger, namespace, stacks, redis_reader)
        finally:
            core.delete_namespace(namespace)


def _children(spans: list[Span], parent: Span) -> list[Span]:
    return sorted((s for s in spans if s.parent_id == parent.span_id), key=lambda s: s.start_us)


def _only(spans: list[Span], operation: str) -> Span:
    (found,) = [s for s in spans if s.operation == operation]
    return found


def test_a_tick_is_one_trace_from_the_operators_dispatch_to_each_call(traced: Traced) -> None:
    spans = traced.wait_tree("tooled", "Succeeded")

    assert len({s.trace_id for s in spans}) == 1
    dispatch = _only(spans, "dispatch tick")
    assert dispatch.parent_id is None
    assert dispatch.service == "agentstack-operator"
    assert dispatch.attributes["span.kind"] == "producer"
    (tick,) = _children(spans, dispatch)
    assert (tick.operation, tick.service) == ("tick", "agentstack-runner")
    assert tick.attributes["span.kind"] == "consumer"
    assert tick.attributes["agentstack.tick_id"] == dispatch.attributes["agentstack.tick_id"]
    # The MCP SDK's own spans (session set-up, listing, the call) hang under the step
    # that listed the tools and the tool call that used them; ours form the tree.
    ours = [s for s in spans if not s.operation.startswith("MCP ")]
    assert outline(ours) == [
        "dispatch tick",
        "  tick",
        "    invoke_agent planner",
        "      chat scripted-v1",
        "    invoke_agent builder",
        "      chat scripted-v1",
        "      execute_tool kb/lookup",
        "      chat scripted-v1",
        "    invoke_agent reviewer",
        "      chat scripted-v1",
        "    invoke_agent communicator",
        "      chat scripted-v1",
    ]
    by_id = {s.span_id: s for s in spans}
    for sdk_span in (s for s in spans if s.operation.startswith("MCP ")):
        parent = by_id[sdk_span.parent_id or ""]
        assert parent.operation.split()[0] in ("invoke_agent", "execute_tool"), sdk_span
    steps = _children(ours, tick)
    builder = _children(ours, steps[TEAM.index("builder")])
    (tool,) = [s for s in builder if s.operation.startswith("execute_tool")]
    assert tool.attributes["gen_ai.tool.name"] == "kb/lookup"
    assert tool.attributes["gen_ai.operation.name"] == "execute_tool"
    assert tool.attributes["agentstack.tool.outcome"] == "ok"
    # The builder read the tool's result in a second call, after the tool call.
    assert [s.operation for s in builder][-1] == "chat scripted-v1"
    assert builder[-1].start_us >= tool.start_us + tool.duration_us


def test_the_gen_ai_attributes_say_what_redis_recorded_of_the_tick(traced: Traced) -> None:
    spans = traced.wait_tree("on-groq", "Succeeded")
    tick = _only(spans, "tick")
    tick_id = tick.attributes["agentstack.tick_id"]
    keys = StackKeys(StackRef.parse(traced.ref("on-groq")))
    entries = cast(list[tuple[str, dict[str, str]]], traced.reader.xrange(keys.trace))
    recorded = {f["agent"]: f for _id, f in entries if f.get("tick_id") == tick_id}
    assert sorted(recorded) == sorted(TEAM)
    for step in _children(spans, tick):
        agent = step.attributes["gen_ai.agent.name"]
        (chat,) = _children(spans, step)
        assert chat.operation == "chat llama-3.1-8b-instant"
        assert chat.attributes["span.kind"] == "client"
        assert chat.attributes["gen_ai.operation.name"] == "chat"
        assert chat.attributes["gen_ai.system"] == "groq"
        assert chat.attributes["gen_ai.request.model"] == "llama-3.1-8b-instant"
        assert chat.attributes["gen_ai.response.model"] == "llama-3.1-8b-instant"
        assert json.loads(chat.attributes["gen_ai.response.finish_reasons"]) == ["stop"]
        assert chat.attributes["gen_ai.usage.input_tokens"] == 321
        assert chat.attributes["gen_ai.usage.output_tokens"] == 45
        fields = recorded[agent]
        assert int(fields["prompt_tokens"]) == chat.attributes["gen_ai.usage.input_tokens"]
        assert int(fields["completion_tokens"]) == chat.attributes["gen_ai.usage.output_tokens"]
        # Priced at the default table's $0.05/M in, $0.08/M out: 2.0650e-05 a step.
        assert step.attributes["agentstack.cost_usd"] == pytest.approx(321 * 0.05e-6 + 45 * 0.08e-6)
        # Content is recorded because the fleet enabled it: the prompt, not the key.
        prompt = json.loads(chat.attributes["gen_ai.input.messages"])
        assert [m["role"] for m in prompt] == ["system", "user"]
        assert json.loads(chat.attributes["gen_ai.output.messages"])[0]["content"] == QUIET
    assert tick.attributes["gen_ai.usage.total_tokens"] == 4 * (321 + 45)


def test_a_refused_call_is_an_error_span_with_its_reason(traced: Traced) -> None:
    spans = traced.wait_tree("refused", "Failed")
    chats = [s for s in spans if s.operation == "chat broken-model"]
    assert chats
    for chat in chats:
        assert chat.attributes["error.type"] == "Rejected"
        assert chat.attributes["otel.status_code"] == "ERROR"
    tick = _only(spans, "tick")
    assert tick.attributes["otel.status_code"] == "ERROR"
    assert tick.attributes["error.type"] == tick.attributes["agentstack.tick.reason"]


def test_no_span_holds_the_providers_key(traced: Traced) -> None:
    traced.wait_tree("on-groq", "Succeeded")
    everything: list[Any] = []
    for service in ("agentstack-operator", "agentstack-runner"):
        everything.extend(traced.jaeger.traces(service, limit=1000))
    dumped = json.dumps(everything)
    assert "gen_ai.input.messages" in dumped  # the prompts are there ...
    assert PROVIDER_KEY not in dumped  # ... the key is not
