"""The runner's spans of a tick, and their attributes after the GenAI semantic conventions.

:mod:`agentstack_core.tracing` makes spans (or hands out the non-recording one when
tracing is off); this module says what each of the runner's spans is called and which
attributes it carries, so the names live in one place:

- ``tick`` — the execution of one tick request, child of the operator's dispatch span;
- ``invoke_agent {agent}`` — one agent's step (``gen_ai.operation.name: invoke_agent``);
- ``chat {model}`` — one call to a provider (``gen_ai.operation.name: chat``; the
  provider as ``gen_ai.system`` and ``gen_ai.provider.name``, requested and answering
  model, token usage, finish reasons, ``error.type`` with the failure's reason);
- ``execute_tool {server/tool}`` — one tool call (``gen_ai.tool.name``).

Prompts, completions, tool arguments and results are added only when
:func:`~agentstack_core.tracing.record_content` allows it.
"""

from __future__ import annotations

import json
from typing import Any

from opentelemetry.trace import Span

from agentstack_core import tracing
from agentstack_core.messages import TickRequest, TickResult
from agentstack_core.pricing import usd
from agentstack_core.spec import AgentSpec, ModelRef
from agentstack_runner.llm.base import ChatRequest, Completion

CONTENT_CHARS = 16_000
"""Recorded prompts and completions are cut to this many characters (a span is not a log)."""


def tick_attributes(request: TickRequest, runner: str) -> dict[str, Any]:
    return {
        "agentstack.stack": str(request.stack),
        "agentstack.tick_id": request.tick_id,
        "agentstack.runner": runner,
        "messaging.operation.type": "process",
    }


def tick_done(span: Span, result: TickResult | None, *, duplicate: bool) -> None:
    """What the tick came to: its outcome, reason, tokens and cost."""
    if result is None or duplicate:
        span.set_attribute("agentstack.tick.duplicate", duplicate)
        return
    span.set_attributes(
        {
            "agentstack.tick.outcome": result.outcome.value,
            "agentstack.tick.reason": result.reason,
            "agentstack.tick.steps": result.steps,
            "gen_ai.usage.total_tokens": result.tokens,
            "agentstack.cost_usd": usd(result.cost),
            "agentstack.unpriced_calls": result.unpriced,
        }
    )
    if result.outcome.value == "Failed":
        tracing.failed(span, result.reason, result.message)


def step_attributes(agent: AgentSpec) -> dict[str, Any]:
    return {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.name": agent.name,
        "agentstack.agent.role": agent.role,
    }


def step_done(
    span: Span, *, outcome: str, reason: str, tokens: int, cost: int, unpriced: int
) -> None:
    span.set_attributes(
        {
            "agentstack.step.outcome": outcome,
            "agentstack.step.reason": reason,
            "gen_ai.usage.total_tokens": tokens,
            "agentstack.cost_usd": usd(cost),
            "agentstack.unpriced_calls": unpriced,
        }
    )
    if outcome != "Succeeded":
        tracing.failed(span, reason)


def chat_attributes(model: ModelRef, request: ChatRequest) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.system": model.provider,
        "gen_ai.provider.name": model.provider,
        "gen_ai.request.model": model.name,
        "gen_ai.request.max_tokens": request.max_tokens,
        "gen_ai.request.temperature": request.temperature,
    }
    if tracing.record_content():
        attributes["gen_ai.input.messages"] = _cut(json.dumps(request.messages))
    return attributes


def chat_done(span: Span, completion: Completion) -> None:
    span.set_attributes(
        {
            "gen_ai.response.model": completion.response_model,
            "gen_ai.usage.input_tokens": completion.prompt_tokens,
            "gen_ai.usage.output_tokens": completion.completion_tokens,
            "gen_ai.response.finish_reasons": [completion.finish_reason or "unknown"],
        }
    )
    if tracing.record_content():
        output = [{"role": "assistant", "content": completion.content}]
        span.set_attribute("gen_ai.output.messages", _cut(json.dumps(output)))


def tool_attributes(ref: str, arguments: dict[str, Any]) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": ref,
        "gen_ai.tool.type": "extension",
    }
    if tracing.record_content():
        attributes["gen_ai.tool.call.arguments"] = _cut(json.dumps(arguments, default=str))
    return attributes


def tool_done(span: Span, outcome: str, text: str) -> None:
    span.set_attribute("agentstack.tool.outcome", outcome)
    if tracing.record_content():
        span.set_attribute("gen_ai.tool.call.result", _cut(text))
    if outcome != "ok":
        tracing.failed(span, outcome)


def _cut(text: str) -> str:
    return text if len(text) <= CONTENT_CHARS else text[:CONTENT_CHARS] + "…"
