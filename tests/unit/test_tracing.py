"""Tracing when no endpoint is set: nothing is made, nothing crosses the tick message."""

from __future__ import annotations

import time

import pytest
from opentelemetry import trace

from agentstack_core import tracing
from agentstack_core.keys import StackRef
from agentstack_core.messages import TickRequest
from agentstack_core.spec import Executor, ModelRef
from agentstack_operator.dispatching import traced
from agentstack_runner import spans
from agentstack_runner.llm.base import ChatRequest


def test_without_an_endpoint_tracing_stays_off(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in tracing.ENDPOINT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert tracing.configure("agentstack-test") is False
    assert not tracing.enabled()


def test_off_spans_are_the_non_recording_one_and_carry_no_context() -> None:
    assert not tracing.enabled()
    with tracing.span("tick", attributes={"a": 1}) as current:
        assert current is trace.INVALID_SPAN
        assert not current.is_recording()
        assert tracing.carrier() == ""


def test_off_dispatch_leaves_the_request_as_it_was() -> None:
    request = TickRequest(
        stack=StackRef("ns", "s"), generation=1, tick_id="ns/s/1", slot=1, deadline=time.time()
    )
    assert traced(request, Executor.POOL, lag=0.1) is request
    assert request.traceparent == ""


def test_prompts_stay_out_of_spans_unless_enabled() -> None:
    request = ChatRequest(
        model="m", messages=[{"role": "user", "content": "secret plans"}], max_tokens=10
    )
    attributes = spans.chat_attributes(ModelRef("groq", "m"), request)
    assert "gen_ai.input.messages" not in attributes
    assert "secret plans" not in repr(attributes)
    assert spans.tool_attributes("kb/lookup", {"q": "secret plans"}) == {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "kb/lookup",
        "gen_ai.tool.type": "extension",
    }
