"""Parsing a stack spec: defaults, and the problems a schema cannot catch."""

from __future__ import annotations

import pytest

from agentstack_core.spec import (
    DEFAULT_TEAM,
    EmbeddingsPolicy,
    ExecutionState,
    ModelRef,
    Priority,
    Schedule,
    SpecError,
    parse_spec,
)


def test_minimal_spec_gets_the_default_team_on_the_scripted_provider() -> None:
    spec = parse_spec({"goal": "Write a haiku"})
    assert [agent.name for agent in spec.agents] == list(DEFAULT_TEAM)
    assert all(agent.models == (ModelRef("scripted", "scripted-v1"),) for agent in spec.agents)
    assert spec.execution_state is ExecutionState.RUNNING
    assert spec.priority is Priority.NORMAL


def test_stack_model_and_fallbacks_apply_to_agents_without_their_own() -> None:
    spec = parse_spec(
        {
            "goal": "g",
            "llm": {
                "model": {"provider": "groq", "name": "llama-3.3-70b-versatile"},
                "fallbackModels": [{"provider": "openai", "name": "gpt-4o-mini"}],
                "providers": {"groq": {"secretRef": {"name": "keys", "key": "groq"}}},
            },
            "agents": [
                {"name": "lead", "role": "planner"},
                {"name": "solo", "role": "builder", "model": {"provider": "scripted"}},
            ],
        }
    )
    lead, solo = spec.agents
    assert [str(model) for model in lead.models] == [
        "groq:llama-3.3-70b-versatile",
        "openai:gpt-4o-mini",
    ]
    assert solo.models == (ModelRef("scripted", "scripted-v1"),)
    assert spec.providers["groq"].secret_ref is not None
    assert spec.providers_used == ("groq", "openai", "scripted")


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ({"goal": "  "}, "spec.goal"),
        (
            {"goal": "g", "agents": [{"name": "a", "role": "planner"}, {"name": "a"}]},
            "duplicate agent name 'a'",
        ),
        ({"goal": "g", "agents": [{"name": "poet", "role": "poet"}]}, "needs a systemPrompt"),
        (
            {"goal": "g", "llm": {"model": {"provider": "anthropic", "name": "x"}}},
            "unknown provider 'anthropic'",
        ),
        (
            {
                "goal": "g",
                "llm": {
                    "model": {"provider": "groq", "name": "m"},
                    "fallbackModels": [{"provider": "groq", "name": "m"}],
                },
            },
            "already in the chain",
        ),
        ({"goal": "g", "executionState": "Sleeping"}, "Sleeping"),
        (
            {"goal": "g", "memory": {"embeddings": {"provider": "scripted", "model": "m"}}},
            "spec.memory.embeddings.provider: one of openai, groq",
        ),
        (
            {"goal": "g", "memory": {"embeddings": {"provider": "openai"}}},
            "spec.memory.embeddings.model: required",
        ),
        (
            {"goal": "g", "tickIntervalSeconds": 5, "schedule": {"cron": "0 9 * * *"}},
            "set either tickIntervalSeconds or schedule, not both",
        ),
        (
            {"goal": "g", "schedule": {"cron": "0 25 * * *"}},
            "spec.schedule: '0 25 \\* \\* \\*': Bad hour",
        ),
        (
            {"goal": "g", "schedule": {"cron": "0 9 * * *", "timeZone": "Europe/Atlantis"}},
            "spec.schedule: unknown time zone 'Europe/Atlantis'",
        ),
    ],
)
def test_nonsense_is_reported_with_the_field(spec: dict[str, object], problem: str) -> None:
    with pytest.raises(SpecError, match=problem):
        parse_spec(spec)


def test_embeddings_are_off_unless_a_stack_configures_them() -> None:
    assert parse_spec({"goal": "g"}).memory.embeddings is None
    embeddings = {"provider": "openai", "model": "text-embedding-3-small", "dimensions": 256}
    spec = parse_spec({"goal": "g", "memory": {"embeddings": embeddings}})
    assert spec.memory.embeddings == EmbeddingsPolicy("openai", "text-embedding-3-small", 256)
    assert spec.memory.context_tokens == 4000


def test_a_schedule_replaces_the_interval() -> None:
    spec = parse_spec({"goal": "g", "schedule": {"cron": "0 9 * * MON-FRI"}})
    assert spec.schedule == Schedule(cron="0 9 * * MON-FRI", time_zone="UTC")
    assert parse_spec({"goal": "g"}).schedule is None
